"""The standard components, by type name, in the order of the standard chain.

Adding a standard component is its module (with a `COMPONENT` declaration) and one line here; nothing in
`pipeline/` changes. A pipeline file in the standard form (one section per component, no `components:`
list) runs the standard chain, wired by `STANDARD_WIRING`: the REQUIRED_SECTIONS, the OPTIONAL_SECTIONS whose
section it has (and those whose output a component run needs), and the others always (with their defaults
when their section is left out). An edge from an optional component left out is dropped: the input it would
fill is optional.
"""

from __future__ import annotations

import importlib

from components.contract import Component

STANDARD = {
    "ingest": "components.ingest",
    "statistics": "components.statistics",
    "example_validator": "components.example_validator",
    "transform": "components.transform",
    "trainer": "components.trainer",
    "evaluator": "components.evaluator",
    "pusher": "components.pusher",
}

# The standard chain's edges: "<instance>.<input>" <- "<instance>.<output>".
STANDARD_WIRING = {
    "statistics": {"examples": "ingest.examples"},
    "example_validator": {"statistics": "statistics.statistics", "schema": "ingest.schema"},
    # The transform, and so everything after it, waits for the validator's verdict (a gate input).
    "transform": {"examples": "ingest.examples", "schema": "ingest.schema", "anomalies": "example_validator.anomalies"},
    "trainer": {
        "transformed_examples": "transform.transformed_examples",
        "transform_graph": "transform.transform_graph",
        "schema": "ingest.schema",
    },
    "evaluator": {
        "model": "trainer.model",
        "examples": "ingest.examples",
        "schema": "ingest.schema",
        "transform_graph": "transform.transform_graph",
    },
    "pusher": {"model": "trainer.model", "blessing": "evaluator.blessing"},
}
# Sections the standard form must have; the others default to {} (an evaluator without thresholds, a
# pusher to <root>/serving).
REQUIRED_SECTIONS = ("ingest", "transform", "trainer")
# Sections that add their component only when given (or when a component given needs its output).
OPTIONAL_SECTIONS = ("statistics", "example_validator")


def standard(name: str) -> Component:
    """A standard component's declaration (importing its module: the executor's heavy imports stay lazy)."""
    return importlib.import_module(STANDARD[name]).COMPONENT
