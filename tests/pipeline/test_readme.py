"""Every command the README shows, run as a user would type it, with its paths made to exist: the Titanic
example is a copy with the CSV's first 60 rows and 10 training steps, placeholders (RUN_ID, VERSION, ...) are
filled from the runs before, optional [...] parts are left out. Each must exit 0. Long-running services
(`prefect server start`, `prefect worker start`) are played by the test's own server; the test command and the
benchmarks are left to CI and bench/ (listed in SKIPPED, so a new README command is never silently skipped)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
SKIPPED = {
    "uv run --locked pytest": "this very test run",
    "uv run prefect server start": "the prefect_server fixture is that server",
    "export PREFECT_API_URL=http://127.0.0.1:4200/api": "the environment points at the fixture's server",
    "uv run prefect worker start --pool tfpipe": "runs until stopped; tests/pipeline/test_deployment.py runs one",
    "uv run python bench/run_all.py": "a benchmark of minutes; bench/ runs it",
    "uv run python bench/run_all.py --quick": "a benchmark of minutes; bench/ runs it",
}


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).replace("pip install uv && ", "").strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _project(tmp_path: Path) -> Path:
    """A checkout-like folder whose examples/titanic is small."""
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "examples" / "titanic",
        project / "examples" / "titanic",
        ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__"),
    )
    data = project / "examples" / "titanic" / "data" / "train.csv"
    data.write_text("\n".join(data.read_text().splitlines()[:61]) + "\n")
    config = project / "examples" / "titanic" / "pipeline.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["trainer"]["train_steps"] = 10
    doc["evaluator"] = {"slices": ["Sex"], "thresholds": {"accuracy": {"lower": 0.1}}}
    config.write_text(yaml.safe_dump(doc))
    return project


def _shell(command: str) -> str:
    while re.search(r"\s\[(?:--|[A-Z])[^\[\]]*\]", command):  # optional parts, innermost first
        command = re.sub(r"\s\[(?:--|[A-Z])[^\[\]]*\]", "", command)
    command = command.replace("uv run --locked --no-dev ", f"uv run --project {ROOT} --locked --no-dev ")
    return re.sub(r"^uv run (tfpipe|prefect) ", lambda m: f"{BIN / m.group(1)} ", command)


def test_every_readme_command_runs(tmp_path, prefect_server):
    project = _project(tmp_path)
    env = dict(prefect_server["env"])
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    store_root = project / "examples" / "titanic" / "tfpipe_root" / "titanic"
    ran = []

    def run(command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ran.append(command)
        return done

    for command in readme_commands():
        if command in SKIPPED:
            continue
        shell = _shell(command)
        if "tfpipe titanic" in shell and "--seed-program" not in shell:
            shell += f" --root {tmp_path / 'titanic_root'}"  # the whole Titanic run, out of the checkout
        if re.search(r"RUN_ID|RUN_A|RUN_B", shell):  # the runs so far, as `tfpipe runs` lists them
            runs = [
                r.split()[0]
                for r in run(f"{BIN / 'tfpipe'} runs --config examples/titanic/pipeline.yaml").stdout.splitlines()[2:]
                if r.strip() and not r.startswith(" ")
            ]
            assert len(runs) >= 2, runs
            shell = shell.replace("RUN_ID", runs[0]).replace("RUN_A", runs[0]).replace("RUN_B", runs[-1])
        if "VERSION" in shell:
            shell = shell.replace("VERSION", sorted(os.listdir(store_root / "serving"))[-1])
        run(shell)
    assert len(ran) >= 12, ran
    # As the issue had it: a dot graph piped into head ends quietly.
    version = sorted(os.listdir(store_root / "serving"))[-1]
    done = run(
        f"{BIN / 'tfpipe'} lineage {store_root / 'serving' / version} --config examples/titanic/pipeline.yaml "
        "--format dot | head -3"
    )
    assert done.stdout.startswith("digraph lineage {") and "Traceback" not in done.stderr
