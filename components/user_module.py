"""Loading the user's module (preprocessing_fn, build_estimator) from a file path or a dotted name."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import sys

from components.errors import ConfigError

TFPIPE_PACKAGES = ("components", "schemas", "pipeline")  # tfpipe's own code, which is not the user's


def load_function(module: str, name: str):
    """`name` from `module`: a path to a .py file, or an importable dotted module name."""
    if module.endswith(".py") or os.sep in module:
        path = os.path.abspath(module)
        if not os.path.isfile(path):
            raise ConfigError(f"user module {module} does not exist")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        # A name per content: an edited module is loaded afresh, not served from sys.modules.
        mod_name = f"tfpipe_user_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
        folder = os.path.dirname(path)
        if folder not in sys.path:
            # A module beside it (helpers.py) imports as it would if the file were run as a script; appended,
            # so it cannot shadow an installed package of the same name.
            sys.path.append(folder)
        mod = sys.modules.get(mod_name)
        if mod is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:  # no importer for the file's suffix (model.txt, a bare name)
                raise ConfigError(f"user module {path} cannot be imported: a Python file's name ends in .py")
            mod = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(mod)
            except Exception as e:
                raise ConfigError(f"user module {path} failed to import: {type(e).__name__}: {e}") from e
            sys.modules[mod_name] = mod
    else:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"user module {module!r} cannot be imported: {e}") from e
        except Exception as e:  # its own code raised (a SyntaxError, a failing top-level line): the user's to fix
            raise ConfigError(f"user module {module!r} failed to import: {type(e).__name__}: {e}") from e
    fn = getattr(mod, name, None)
    if not callable(fn):
        defined = sorted(
            n
            for n, v in vars(mod).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
        )
        raise ConfigError(f"user module {module} has no function {name}(); it defines {defined or 'no functions'}")
    return fn


def where_in(module: str, error: BaseException) -> str:
    """`<file>:<line>` of the innermost frame of the user's module (or a helper beside it) in the error's
    traceback, through its causes, else the module as given: where to look first."""
    import traceback

    try:
        ours = {os.path.realpath(_origin(module)), *(os.path.realpath(p) for p in local_imports(module).values())}
    except ConfigError:
        return module
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            if os.path.realpath(frame.filename) in ours:
                return f"{frame.filename}:{frame.lineno}"
        e = e.__cause__ or e.__context__
    return module


def check_defines(module: str, name: str) -> None:
    """Fails early, without importing the module, if it is missing or has no top-level `name`."""
    source = module_source(module)
    try:
        tree = ast.parse(source, filename=module)
    except SyntaxError as e:
        raise ConfigError(f"user module {module}, line {e.lineno}: not valid Python ({e.msg})") from None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return
    defined = sorted(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))
    raise ConfigError(f"user module {module} has no function {name}(); it defines {defined or 'no functions'}")


def module_source(module: str) -> bytes:
    """The module's source (what check_defines reads)."""
    try:
        with open(_origin(module), "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"user module {module} does not exist") from None


def _origin(module: str) -> str:
    """The module's file: a path as given, or where a dotted name is found."""
    if module.endswith(".py") or os.sep in module:
        return os.path.abspath(module)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ConfigError(f"user module {module!r} cannot be found")
    return spec.origin


def local_imports(module: str) -> dict:
    """{module name: file} of the modules that `module` imports from its own folder (or, for a dotted name,
    its own package tree), and that those import in turn: the user's code, as opposed to libraries."""
    origin = _origin(module)
    roots = [os.path.dirname(origin)]
    if not (module.endswith(".py") or os.sep in module):  # a dotted name: its package tree's root too
        roots.append(os.path.abspath(os.path.join(roots[0], *[".."] * module.count("."))))
    found, todo = {}, [origin]
    while todo:
        path = todo.pop()
        try:
            tree = ast.parse(open(path, "rb").read(), filename=path)
        except (OSError, SyntaxError):
            continue
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        for name in sorted(n for n in names if n.split(".")[0] not in TFPIPE_PACKAGES):
            for root in roots:
                base = os.path.join(root, *name.split("."))
                hit = next((p for p in (base + ".py", os.path.join(base, "__init__.py")) if os.path.isfile(p)), None)
                if hit and hit != origin and name not in found:
                    found[name] = hit
                    todo.append(hit)
                    break
    return found


def module_files(module: str) -> dict:
    """{path: sha256} of the user module and the local modules it imports: for cache keys and manifests,
    since an edit to any of them must re-run what depends on them."""
    module_source(module)  # a missing module: the same error as everywhere else
    files = [_origin(module), *local_imports(module).values()]
    return {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in sorted(set(files))}
