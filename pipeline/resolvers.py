"""Resolvers: inputs the runner finds in MLMD instead of taking them from the wiring, as TFX's resolver
nodes do. A component names one on an input (`InputSpec(resolver=...)`); what it resolves to is recorded
as an INPUT event of the execution and enters the cache key through the inputs, like any other input."""

from __future__ import annotations

import logging
import os

from pipeline.metadata import MetadataStore
from schemas.artifacts import Artifact

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


RESOLVERS = {"latest_pushed_model": latest_pushed_model}
