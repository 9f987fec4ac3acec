"""Mistakes in the user's own module are the user's to fix: one line naming their file and line (or the key),
exit 1, no traceback, and the step FAILED in MLMD (issue 29, items 10 and 14)."""

import pytest

from pipeline.metadata import MetadataStore
from tests.conftest import tfpipe, tiny_titanic

pytestmark = pytest.mark.slow


def _fails(config, *words) -> str:
    done = tfpipe("run", "pipeline.yaml", cwd=config.parent)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("tfpipe: ")]
    assert len(errors) == 1 and errors[0].startswith("tfpipe: error: "), done.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    store = MetadataStore(str(config.parent / "root" / "metadata.sqlite"))
    assert [e.state for e in store.executions("transform")] == ["FAILED"]
    return errors[0]


def test_a_preprocessing_fn_returning_a_python_list_names_the_key(tmp_path):
    config = tiny_titanic(tmp_path)
    module = config.parent / "preprocessing.py"
    module.write_text(module.read_text().replace("    return {\n", '    return {\n        "weights": [1.0, 2.0],\n', 1))
    assert '"weights"' in module.read_text()
    _fails(config, str(module), "returned list [1.0, 2.0] for 'weights'", "must be a tensor")


def test_an_error_in_the_preprocessing_fn_names_its_line(tmp_path):
    config = tiny_titanic(tmp_path)
    module = config.parent / "preprocessing.py"
    lines = module.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("def preprocessing_fn")) + 1
    lines.insert(at, '    inputs["NoSuchColumn"]')
    module.write_text("\n".join(lines) + "\n")
    _fails(config, f"preprocessing_fn at {module}:{at + 1} failed: KeyError: 'NoSuchColumn'")
