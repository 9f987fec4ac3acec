"""`tfpipe component --input` as users mistype it, against a real store: each mistake is one line naming the
valid input names or the artifact's actual type, and no run is recorded."""

import pytest

from pipeline.metadata import MetadataStore
from tests.conftest import tfpipe

pytestmark = pytest.mark.slow


def test_component_inputs_are_checked_before_a_run_is_recorded(tiny_run):
    assert tiny_run.done.returncode == 0, tiny_run.done.stderr[-3000:]
    store = MetadataStore(str(tiny_run.root / "metadata.sqlite"))
    runs = len(store.runs("tiny"))
    [examples] = [a.id for a in store.artifacts("Examples")]
    for given, says in (
        ("graph=4", "trainer has no input 'graph'; its inputs are transformed_examples, transform_graph, schema"),
        (
            f"transform_graph={examples}",
            f"artifact {examples} has type Examples; trainer's input transform_graph takes a TransformGraph",
        ),
        ("transform_graph=999", "no artifact with id 999"),
    ):
        done = tfpipe("component", "trainer", "--config", "pipeline.yaml", "--input", given, cwd=tiny_run.folder)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("tfpipe: error: ") and says in done.stderr
    assert len(store.runs("tiny")) == runs  # no empty run left behind
    # Tables with headers, within the terminal's width (80 columns off a terminal).
    listed = tfpipe("runs", "--config", "pipeline.yaml", cwd=tiny_run.folder)
    assert listed.returncode == 0 and listed.stdout.split()[:3] == ["run", "started", "components"]
    assert max(len(line) for line in listed.stdout.splitlines()) <= 100


def test_runs_artifacts_and_lineage_speak_json_and_the_listing_stays_short(tiny_run):
    """Scripts read --json (stable keys), not the tables; the artifacts listing is a short record per artifact
    with its whole URI, who made it and in which run, and no per-file hashes."""
    import json

    assert tiny_run.done.returncode == 0, tiny_run.done.stderr[-3000:]
    runs = json.loads(tfpipe("runs", "--config", "pipeline.yaml", "--json", cwd=tiny_run.folder).stdout)
    first = runs[0]
    assert first["run"].startswith("tiny/") and [e["component"] for e in first["executions"]] == [
        "ingest",
        "transform",
        "trainer",
        "evaluator",
        "pusher",
    ]
    listed = json.loads(tfpipe("artifacts", "--config", "pipeline.yaml", "--json", cwd=tiny_run.folder).stdout)
    model = next(a for a in listed if a["type"] == "Model")
    assert (
        model["component"] == "trainer" and model["run"] == first["run"] and model["uri"].endswith("/trainer/model/3")
    )
    assert "files" in model["properties"]  # everything is in the JSON
    text = tfpipe("artifacts", "--config", "pipeline.yaml", cwd=tiny_run.folder).stdout
    assert f"made by trainer in {first['run']}" in text and "root/trainer/model/3\n" in text
    assert "files=" not in text and "fingerprint=" not in text and len(text.splitlines()) <= 3 * len(listed)
    graph = json.loads(
        tfpipe("lineage", str(model["id"]), "--config", "pipeline.yaml", "--json", cwd=tiny_run.folder).stdout
    )
    keys = [n["key"] for n in graph["nodes"]]
    assert (
        graph["focus"] == f"artifact:{model['id']}"
        and keys[0].startswith("file:")
        and [keys.index(a) < keys.index(b) for a, b in graph["edges"]] == [True] * len(graph["edges"])
    )
