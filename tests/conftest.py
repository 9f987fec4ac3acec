import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Prefect's temporary local API keeps its database here, not in the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="tfpipe_prefect_"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
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


def tfpipe(*args, cwd, timeout=900) -> subprocess.CompletedProcess:
    """The installed `tfpipe` command as a user runs it, stdout and stderr piped (not a terminal), with none of
    the test session's quieting in its environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFPIPE_LOG_LEVEL")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "tfpipe"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One whole `tfpipe run --no-cache` of the tiny Titanic pipeline, shared by the console and serving tests."""
    folder = tmp_path_factory.mktemp("tiny")
    config = tiny_titanic(folder)
    done = tfpipe("run", "--no-cache", "pipeline.yaml", cwd=folder)
    return SimpleNamespace(folder=folder, config=config, done=done, root=folder / "root")
