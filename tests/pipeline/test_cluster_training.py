"""The trainer step on a real TF_CONFIG cluster (trainer.cluster, the local launcher): the shipped Titanic
example on ParameterServerStrategy with each task on a host of its own (network namespaces), and on
MultiWorkerMirroredStrategy; one MLMD execution, a fully cached re-run, the shape in the manifest and the
lineage, and `tfpipe reproduce` within tolerance."""

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.metadata import MetadataStore
from tests import netns
from tests.conftest import tfpipe

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
TITANIC = ["ingest", "statistics", "example_validator", "transform", "trainer", "evaluator", "pusher"]


def _titanic(tmp_path: Path, cluster: dict, steps: int = 300) -> Path:
    """A copy of the shipped example, train_steps shortened, with the trainer's cluster section."""
    folder = tmp_path / "titanic"
    shutil.copytree(ROOT / "examples" / "titanic", folder, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__"))
    doc = yaml.safe_load((folder / "pipeline.yaml").read_text())
    doc["trainer"].update(train_steps=steps, cluster=cluster)
    doc["root"] = "root"
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder / "pipeline.yaml"


def _run(config: Path, server: dict):
    done = tfpipe("run", config.name, cwd=config.parent, server=server)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _states(store: MetadataStore, last: int) -> dict:
    return {e.component: e.state for e in store.executions()[-last:]}


def test_titanic_on_a_parameter_server_cluster_each_task_on_a_host_of_its_own(prefect_server, tmp_path):
    with netns.hosts(5) as places:
        (chief, w0, w1, ps, ev) = ({"host": address, "netns": ns} for ns, address in places)
        shape = {"workers": 2, "ps": 1, "evaluator": True}
        config = _titanic(
            tmp_path, {**shape, "hosts": {"chief": [chief], "worker": [w0, w1], "ps": [ps], "evaluator": [ev]}}
        )
        done = _run(config, prefect_server)
        log = done.stderr
        # Every task ran, in its namespace at its own address (the others reached it there), its lines prefixed.
        for role, place in (("ps:0", ps), ("worker:0", w0), ("worker:1", w1)):
            assert f"[{role}] {role.replace(':', ' ')} serving at grpc://{place['host']}:" in log, log[-4000:]
        assert f"chief:0 at {chief['host']}:" in log and f"evaluator:0 at {ev['host']}:" in log
        assert "[chief:0] saved checkpoint" in log and "[evaluator:0] exported SavedModel" in log
        assert "evaluation: BLESSED" in done.stdout and "pushed model:" in done.stdout

        store = MetadataStore(str(config.parent / "root" / "metadata.sqlite"))
        assert _states(store, len(TITANIC)) == dict.fromkeys(TITANIC, "COMPLETE")
        [trainer] = store.executions("trainer")  # one execution, however many tasks
        outputs = store.outputs_of(trainer.id)
        assert sorted(a.type for a in outputs.values()) == ["Model", "ModelRun"]
        run = outputs["model_run"].properties
        assert run["cluster"] == "chief:1 worker:2 ps:1 evaluator:1" and run["strategy"] == "ParameterServerStrategy"
        assert run["launcher"] == "local" and run["restarts"] == 0 and run["bit_identical"] is False
        hardware = trainer.manifest["hardware"]
        assert hardware["tf_config_cluster"] == {"chief": 1, "worker": 2, "ps": 1, "evaluator": 1}
        assert trainer.manifest["determinism"]["exact"] is False
        assert (Path(outputs["model"].uri) / "saved_model.pb").is_file()

        # The same config again: everything cached, the cluster not started.
        again = _run(config, prefect_server)
        assert _states(store, len(TITANIC)) == dict.fromkeys(TITANIC, "CACHED")
        assert "cluster started" not in again.stderr

    pushed = next(line for line in done.stdout.splitlines() if line.startswith("pushed model:")).split()[2]
    lineage = tfpipe("lineage", pushed, "--config", config.name, cwd=config.parent)
    assert lineage.returncode == 0, lineage.stderr[-2000:]
    [line] = [x for x in lineage.stdout.splitlines() if x[2:].startswith(f"trainer #{trainer.id} ")]
    assert "on a cluster chief:1 worker:2 ps:1 evaluator:1 (ParameterServerStrategy)" in line, lineage.stdout


def test_titanic_on_multi_worker_mirrored_strategy_reproduces_within_tolerance(prefect_server, tmp_path):
    config = _titanic(tmp_path, {"workers": 2})
    done = _run(config, prefect_server)
    assert "[worker:0] saved checkpoint" in done.stderr and "[worker:1]" in done.stderr
    assert "evaluation: BLESSED" in done.stdout

    store = MetadataStore(str(config.parent / "root" / "metadata.sqlite"))
    [trainer] = store.executions("trainer")
    run = store.outputs_of(trainer.id)["model_run"].properties
    assert run["strategy"] == "MultiWorkerMirroredStrategy" and run["cluster"] == "worker:2" and run["replicas"] == 2
    assert run["bit_identical"] is False and "bit-identity is not promised" in run["determinism"]
    determinism = trainer.manifest["determinism"]
    assert determinism["exact"] is False and "multi-worker" in determinism["why"]

    [recorded] = store.runs("titanic")
    reproduced = tfpipe(
        "reproduce",
        "titanic/" + recorded["run"].split(".", 1)[1],
        "--config",
        config.name,
        cwd=config.parent,
        server=prefect_server,
    )
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr[-3000:]
    out = reproduced.stdout
    assert "tolerance: metrics within 0.02" in out, out
    verdict = out.strip().splitlines()[-1]
    assert verdict in ("verdict: identical", "verdict: within tolerance"), out
