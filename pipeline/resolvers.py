"""Resolvers: inputs the runner finds in MLMD instead of taking them from the wiring, as TFX's resolver
nodes do. A component names one on an input (`InputSpec(resolver=...)`); what it resolves to is recorded
as an INPUT event of the execution and enters the cache key through the inputs, like any other input."""

from __future__ import annotations

import logging
import os

from components.contract import BLOCKED
from pipeline.metadata import MetadataStore
from schemas.artifacts import EXAMPLES, STATISTICS, Artifact

log = logging.getLogger("tfpipe.pipeline")


def latest_pushed_model(store: MetadataStore, pipeline: str, inputs: dict[str, Artifact]) -> Artifact | None:
    """The newest model this pipeline pushed other than the candidate itself (comparing a model with itself
    says nothing), still in serving. Once the candidate is pushed, the baseline it was judged against stays
    its baseline, so an unchanged re-run keeps its cache key. None when the model was trained on rows split
    another way than the candidate's examples: some of today's eval rows may have trained it."""
    candidate = next((a for a in inputs.values() if a.type == "Model"), None)
    examples = next((a for a in inputs.values() if a.type == "Examples"), None)
    for pushed in store.live_of_type(pipeline, "PushedModel"):
        if not pushed.properties.get("pushed"):
            continue
        if candidate is not None and pushed.properties.get("model_uri") == candidate.uri:
            continue
        rule = examples.properties.get("split_rule") if examples is not None else None
        if rule is not None and store.upstream_property(pushed.id, "split_rule") != rule:
            log.warning(
                "the last pushed model was trained on splits made another way; change thresholds are "
                "not applied this time"
            )
            return None
        return pushed if os.path.isdir(pushed.properties.get("pushed_destination", "")) else None
    return None


def _made_from(store: MetadataStore, artifact_id: int, type_name: str) -> Artifact | None:
    """The input of that type of the execution that made the artifact."""
    for execution_id, kind, _ in store.artifact_events(artifact_id):
        if kind == "OUTPUT":
            found = [a for a in store.inputs_of(execution_id).values() if a.type == type_name]
            if found:
                return found[0]
    return None


def _stopped_a_run(store: MetadataStore, artifact_id: int, slot: str) -> bool:
    """Whether the newest verdict on these statistics (an output with a `blocked` property, of an execution
    that took them in the same input slot) stopped the run: a drop that was stopped is no baseline, until a
    later verdict on it (other thresholds, severity warn) lets it through."""
    judged = sorted(
        (e for e, kind, name in store.artifact_events(artifact_id) if kind == "INPUT" and name == slot), reverse=True
    )
    for execution_id in judged:
        verdicts = [a.properties[BLOCKED] for a in store.outputs_of(execution_id).values() if BLOCKED in a.properties]
        if verdicts:
            return any(verdicts)
    return False


def previous_statistics(store: MetadataStore, pipeline: str, inputs: dict[str, Artifact]) -> Artifact | None:
    """The previous data drop's statistics: the newest LIVE statistics (TFDV's format) this pipeline made from
    other examples (by content) than the current statistics', which did not stop a run. Reproductions are
    left out (MetadataStore.live_of_type). An unchanged re-run finds the same one, and keeps its cache key.
    None on the first drop."""
    slot, current = next(((n, a) for n, a in inputs.items() if a.type == STATISTICS), (None, None))
    if current is None or slot is None:
        return None
    examples = _made_from(store, current.id, EXAMPLES)
    data = examples.properties.get("fingerprint", examples.id) if examples is not None else None
    for candidate in store.live_of_type(pipeline, STATISTICS):
        if candidate.id == current.id or not candidate.properties.get("stats_file"):
            continue  # itself, or ingest's pooled statistics.json
        made_from = _made_from(store, candidate.id, EXAMPLES)
        if made_from is not None and made_from.properties.get("fingerprint", made_from.id) == data:
            continue  # the same data drop
        if _stopped_a_run(store, candidate.id, slot):
            continue
        return candidate
    return None


RESOLVERS = {"latest_pushed_model": latest_pushed_model, "previous_statistics": previous_statistics}
