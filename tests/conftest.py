import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Prefect's temporary local API keeps its database here, not in the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="tfpipe_prefect_"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


import contextlib  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
_TITANIC = _ROOT / "examples" / "titanic"


def tiny_titanic(folder: Path, name: str = "tiny", drop_label: bool = False, **evaluator) -> Path:
    """A user's pipeline folder: the Titanic modules, the CSV's first 60 rows, 10 training steps."""
    import csv

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for module in ("preprocessing.py", "model.py"):
        shutil.copy(_TITANIC / module, folder / module)
    lines = (_TITANIC / "data" / "train.csv").read_text().splitlines()[:61]
    if drop_label:
        rows = list(csv.reader(lines))
        i = rows[0].index("Survived")
        with open(folder / "data.csv", "w", newline="") as f:
            csv.writer(f).writerows(r[:i] + r[i + 1 :] for r in rows)
    else:
        (folder / "data.csv").write_text("\n".join(lines) + "\n")
    (folder / "pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "root": "root",
                "ingest": {"input": "data.csv"},
                "transform": {"module": "preprocessing.py"},
                "trainer": {"module": "model.py", "label": "survived", "raw_label": "Survived", "train_steps": 10},
                "evaluator": evaluator or {"slices": ["Sex"], "thresholds": {"accuracy": {"lower": 0.1}}},
            }
        )
    )
    return folder / "pipeline.yaml"


def tfpipe(*args, cwd, timeout=900, server: dict | None = None) -> subprocess.CompletedProcess:
    """The installed `tfpipe` command as a user runs it, stdout and stderr piped (not a terminal), with none of
    the test session's quieting in its environment. With `server` (the `prefect_server` fixture), it talks to
    that server, as a team's runs do, instead of starting Prefect's temporary one (6 s a run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFPIPE_LOG_LEVEL")}
    if server is not None:
        env.update(api_env(server))
    return subprocess.run(
        [str(Path(sys.executable).parent / "tfpipe"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def api_env(server: dict) -> dict[str, str]:
    """The variables that point a process at the `prefect_server` fixture's server."""
    return {k: server["env"][k] for k in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_UI_API_URL")}


def shared_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this pytest run sees (the parent of the workers' own base temps); the
    base temp itself when the run has no workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def locked(path: Path, shared: bool = False):
    """An flock on `path` (created if need be), held for the block: exclusive, or shared with other holders."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_once(tmp_path_factory, name: str, make: Callable[[Path], Path], *args: str) -> Path:
    """`tfpipe run ARGS CONFIG` of the pipeline folder `make(folder)` writes, once per pytest run: the first xdist
    worker to ask runs it under a lock, the others wait and reuse it. The master folder (its `done.json` holds
    the command's result, `times.json` its start and end); tests copy it (`copy_of`) and never write into it."""
    master = shared_dir(tmp_path_factory) / name
    with locked(shared_dir(tmp_path_factory) / f"{name}.lock"):
        if not (master / "done.json").exists():
            shutil.rmtree(master, ignore_errors=True)
            config = make(master / "folder")
            started = time.time()
            done = tfpipe("run", *args, config.name, cwd=config.parent)
            (master / "done.json").write_text(
                json.dumps(
                    {"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
                )
            )
            (master / "times.json").write_text(json.dumps({"started": started, "ended": time.time()}))
    return master


def copy_of(master: Path, folder: Path) -> Path:
    """A copy of a `run_once` pipeline folder at `folder`, its run checked to have succeeded. The copied store
    names the master's artifacts (URIs are absolute), and the copied YAML names the master's data and modules
    (cache keys hold their absolute paths): a re-run there finds the steps it does not change CACHED, reading,
    never writing, the master's outputs and files."""
    import yaml

    done = json.loads((master / "done.json").read_text())
    assert done["returncode"] == 0, done["stderr"][-3000:]
    shutil.copytree(master / "folder", folder)
    config = folder / "pipeline.yaml"
    doc = yaml.safe_load(config.read_text())
    for section in doc.values():
        for key, value in section.items() if isinstance(section, dict) else ():
            if isinstance(value, str) and not os.path.isabs(value) and (master / "folder" / value).is_file():
                section[key] = str(master / "folder" / value)
    config.write_text(yaml.safe_dump(doc))
    return folder


@pytest.fixture(scope="session")
def tiny_master(tmp_path_factory) -> Path:
    """The master folder of the tiny pipeline's one `tfpipe run --no-cache`, which `tiny_run` copies, and tests that
    change a step copy (`copy_of`): they find the steps before it cached. Not tied to one xdist worker as
    `tiny_run`'s tests are."""
    return run_once(tmp_path_factory, "tiny_run", tiny_titanic, "--no-cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_master):
    """One whole `tfpipe run --no-cache` of the tiny Titanic pipeline, shared by the console, CLI-input and serving
    tests, which only read it: it runs once per pytest run, and each worker gets its own copy of the folder."""
    master = tiny_master
    folder = tmp_path_factory.mktemp("tiny") / "folder"
    shutil.copytree(master / "folder", folder)
    done = subprocess.CompletedProcess(**json.loads((master / "done.json").read_text()))
    times = json.loads((master / "times.json").read_text())
    return SimpleNamespace(folder=folder, config=folder / "pipeline.yaml", done=done, root=folder / "root", **times)


def _sql_name(request) -> str:
    """A database name of the test module's, unique to this xdist worker and this pytest run."""
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    return f"tfpipe_{module}_{os.environ.get('PYTEST_XDIST_WORKER', 'gw')}_{uuid.uuid4().hex[:8]}"[:63].lower()


def _psql(sql: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )


def mariadb(sql: str) -> None:
    subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql], check=True, timeout=60)


@pytest.fixture(scope="module")
def pg_url(request):
    """A PostgreSQL database of the module's own (127.0.0.1:5432, trust auth, user postgres), dropped after it:
    modules on other xdist workers never share an MLMD store's tables."""
    name = _sql_name(request)
    _psql(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def mysql_db(request):
    """The name of a MariaDB database of the module's own (127.0.0.1:3306, root), dropped after it."""
    name = _sql_name(request)
    mariadb(f"CREATE DATABASE `{name}`")
    yield name
    mariadb(f"DROP DATABASE IF EXISTS `{name}`")


# Tests that time something or kill processes at a moment: `@pytest.mark.quiet` runs them in one xdist group
# (one worker, one after another) and, while one runs, the other workers start no test (an flock each test
# takes shared, a quiet one exclusive; a turnstile lock keeps a waiting quiet test from being starved).
def pytest_configure(config):
    config.addinivalue_line(
        "markers", "quiet: times something or needs the machine to itself; under xdist no other test runs beside it"
    )


def _own_module_fixture(item) -> str | None:
    """`module::fixture` of the first module-scoped fixture the item uses that its own module defines."""
    info = getattr(item, "_fixtureinfo", None)
    module = getattr(item, "module", None)
    if info is None or module is None:
        return None
    return next(
        (
            f"{module.__name__}::{name}"
            for name in info.names_closure
            for d in info.name2fixturedefs.get(name, ())
            if d.scope == "module" and getattr(d.func, "__module__", None) == module.__name__
        ),
        None,
    )


@pytest.hookimpl(wrapper=True)  # before any other plugin's hook: xdist reads the groups in its own
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("quiet"):
            item.add_marker(pytest.mark.xdist_group("quiet"))
        elif "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_run"))  # one worker runs it; no other waits for it
        elif _own_module_fixture(item):
            # A module whose tests share an expensive module-scoped fixture of its own (a trained pipeline, a
            # fitted model): one worker runs them all, so the fixture is made once, not once per worker.
            item.add_marker(pytest.mark.xdist_group(_own_module_fixture(item)))
    # The long tests first, so that xdist's workers end together instead of one finishing a long test alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    result = yield
    if config.getoption("dist", default=None) == "loadgroup" or config.getoption("loadgroup", default=False):
        for item in items:
            _group_suffix(item)
    return result


def _group_suffix(item) -> None:
    """xdist's loadgroup sends the tests whose node id ends in `@<group>` to one worker; xdist 3.8 appends it by
    setting `item._nodeid`, which pytest 9.2 no longer reads (the node id is `item._id`), so no group is
    kept together. Appended here where xdist's own did not take."""
    groups = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if not groups or "@" in item.nodeid:
        return
    nodeid = f"{item.nodeid}@{'_'.join(groups)}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)
    else:
        item._nodeid = nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """The controller's terminal size variables, for the workers (see below)."""
    node.workerinput["tfpipe_env"] = {k: os.environ.get(k) for k in ("COLUMNS", "LINES")}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    # An xdist worker's environment has COLUMNS=80 and LINES=24 the controller's had not: the commands the tests
    # run would lay out tables 80 columns wide instead of as off a terminal. The controller's values, as they were.
    for key, value in getattr(item.config, "workerinput", {}).get("tfpipe_env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    folder = shared_dir(item.config._tmp_path_factory)
    quiet = item.get_closest_marker("quiet") is not None
    with open(folder / "machine.turnstile", "a") as turnstile, open(folder / "machine.lock", "a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        fcntl.flock(machine, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        if not quiet:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        item._tfpipe_machine = None if quiet else (turnstile, machine)
        try:
            yield  # setup (module and session fixtures included), call, teardown
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture
def machine_to_itself(request):
    """For a test of which only a part is timed: `with machine_to_itself():` around that part, and under xdist
    no other test runs beside it for that while (as beside a whole `quiet` test); a no-op without xdist."""

    @contextlib.contextmanager
    def exclusive():
        files = getattr(request.node, "_tfpipe_machine", None)
        if files is None:
            yield
            return
        turnstile, machine = files
        fcntl.flock(machine, fcntl.LOCK_UN)  # let go first: a quiet test may be waiting for the machine
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(machine, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)

    return exclusive
