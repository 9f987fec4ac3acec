"""`tfpipe`: the command line. Heavy imports (TensorFlow, Beam, Prefect) happen inside commands, so --help is instant."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

TITANIC_YAML = Path(__file__).resolve().parents[1] / "examples" / "titanic" / "pipeline.yaml"


def _overrides(args) -> dict:
    out = {}
    if getattr(args, "root", None):
        out["root"] = os.path.abspath(args.root)
    if getattr(args, "metadata", None):
        out["metadata"] = args.metadata if "://" in args.metadata else os.path.abspath(args.metadata)
        out["metadata"] = _password_to_env(out["metadata"])
    return out


def _password_to_env(url: str) -> str:
    """A password in --metadata moves to the environment, so flow parameters (shown in the UI) never hold it."""
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    if not parsed.password:
        return url
    os.environ["TFPIPE_METADATA_PASSWORD"] = urllib.parse.unquote(parsed.password)
    return urllib.parse.urlunparse(parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", "@", 1)))


def _no_cache(args):
    if args.no_cache is None:
        return False
    return True if args.no_cache == [] else list(args.no_cache)


def _short(path) -> str:
    """A path relative to the working directory when it lies below it, else as given."""
    path = str(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") or "://" in path else relative


def _summary(result: dict) -> None:
    """What the run did, in at most 100 columns: each step's state and time, the metrics against their
    thresholds (overall and per slice), and where the model, the metrics and the store are."""
    from pipeline.ui import metrics_rows, outputs_of_type, slice_rows

    # The run as the Prefect UI names it, and as `runs`, `diff` and `reproduce` take it.
    print(f"run {result['pipeline']}/{result['run_id']}")
    comps = result["components"]
    width = max([10, *map(len, comps)])
    for name, info in comps.items():
        seconds = info.get("wall_seconds")
        print(f"  {name:<{width}} {info['state']:<9} {'' if seconds is None else f'{seconds:6.1f} s'}")
    for _, uri in outputs_of_type(comps, "ModelEvaluation"):
        path = Path(uri) / "metrics.json"
        doc = json.loads(path.read_text())
        verdict = "BLESSED" if doc["blessed"] else "NOT BLESSED: " + "; ".join(doc["reasons"])
        print(f"evaluation: {verdict}")
        baseline = doc.get("baseline") is not None
        print(f"  {'metric':<24} {'value':>10}" + (f" {'baseline':>10}" if baseline else "") + "  thresholds")
        for row in metrics_rows(doc):
            checks = "; ".join(f"{bound}: {verdict}" for bound, verdict in row["checks"])
            was = (f" {row['baseline']:>10.4g}" if row["baseline"] != "-" else f" {'-':>10}") if baseline else ""
            # The evaluator's AUC is exact (by rank); the trainer's log line has tf.estimator's 200-threshold one.
            name = "auc (exact)" if row["metric"] == "auc" else row["metric"]
            print(f"  {name:<24} {row['value']:>10.4g}{was}  {checks}".rstrip()[:100])
        rows = slice_rows(doc)
        if rows:
            # The same columns for every slice, aligned; as many metrics as fit in 100 columns.
            shown = list(dict.fromkeys(k for r in rows for k in r if isinstance(r[k], float)))
            width = max(len(r["slice"]) for r in rows)
            while shown and 4 + width + 8 + sum(max(9, len(k) + 1) for k in shown) > 100:
                shown.pop()
            print(f"  per slice:\n    {'':<{width}} {'n':>6}" + "".join(f" {k:>{max(8, len(k))}}" for k in shown))
            for row in rows:
                cells = "".join(f" {row.get(k, float('nan')):>{max(8, len(k))}.3g}" for k in shown)
                flag = f"  below {row['below']}" if row["below"] != "-" else ""
                print(f"    {row['slice']:<{width}} {row['examples']:>6}{cells}{flag}")
        print(f"metrics:      {_short(path)}")
    for _, uri in outputs_of_type(comps, "PushedModel"):
        push = json.loads((Path(uri) / "push.json").read_text())
        print(
            f"pushed model: {_short(push['path'])}"
            + (" (already in serving)" if push.get("already_in_serving") else "")
            if push["pushed"]
            else "pushed model: none (not blessed)"
        )
    print(f"MLMD store:   {_short(result['metadata'])}")


def _run(config_path: str, args, components=None, inputs=None) -> int:
    from pipeline.config import load_config

    cfg = load_config(config_path, _overrides(args))  # a bad config fails in a second, before TensorFlow loads
    for name in [
        *(components or []),
        *(args.no_cache or [] if isinstance(getattr(args, "no_cache", None), list) else []),
    ]:
        cfg.node(name)  # an instance the pipeline does not have: one line naming the ones it has
    from pipeline.metadata import probe

    probe(cfg.metadata, cfg.metadata_timeout)  # and so does a store that is not there or does not answer
    if inputs and not cfg.metadata_secret:
        # A typo, a missing id or an artifact of the wrong type: one line, before any run is recorded, and before
        # Prefect loads (seconds). A store whose password is a Prefect Secret is read once Prefect is there.
        from pipeline.runner import check_inputs

        store = _existing_store(cfg.metadata, cfg.metadata_timeout, cfg.metadata_query_timeout)
        inputs = check_inputs(store, cfg, components[0], inputs)
    from components.progress import doing

    with doing(logging.getLogger("tfpipe.cli"), "tfpipe: loading Prefect and starting the flow run"):
        from pipeline.flow import check_inputs, check_prefect_api, open_store, pipeline_flow

        check_prefect_api(cfg.metadata_timeout)

        if inputs and cfg.metadata_secret:
            inputs = check_inputs(open_store(cfg), cfg, components[0], inputs)
        result = pipeline_flow(
            config_path, overrides=_overrides(args), no_cache=_no_cache(args), components=components, inputs=inputs
        )
    _summary(result)
    return 0


def _cmd_run(args) -> int:
    return _run(args.config, args)


def _cmd_titanic(args) -> int:
    if args.seed_program:
        from examples.titanic import seed_estimator

        seed_estimator.main(["--steps", str(args.steps)] + (["--workdir", args.root] if args.root else []))
        return 0
    # The config's own root (examples/titanic/tfpipe_root/titanic), so `tfpipe titanic`, `tfpipe run
    # examples/titanic/pipeline.yaml` and `tfpipe runs --config examples/titanic/pipeline.yaml` share one store.
    return _run(str(TITANIC_YAML), args)


def _cmd_component(args) -> int:
    inputs = {}
    for item in args.input or []:
        name, _, ref = item.partition("=")
        if not name or not ref:
            raise SystemExit(f"--input takes NAME=ARTIFACT_ID or NAME=URI, got {item!r}")
        inputs[name] = ref
    return _run(args.config, args, components=[args.name], inputs=inputs)


def _cmd_deploy(args) -> int:
    import urllib.parse

    from pipeline.config import load_config

    if args.metadata and urllib.parse.urlparse(args.metadata).password:
        raise SystemExit(
            "tfpipe: error: a deployment's parameters are shown in the Prefect UI: keep the password "
            "out of --metadata (set metadata_secret: <Secret block> in the config, or "
            "TFPIPE_METADATA_PASSWORD in the worker's environment)"
        )
    overrides = _overrides(args)
    cfg = load_config(args.config, overrides)  # a deployment of a broken config would fail at 3 a.m.
    from pipeline.metadata import MetadataStore, is_shared

    if is_shared(cfg.metadata) and not cfg.metadata_secret:
        # A shared store is opened here, once: it answers now rather than at 3 a.m., and its tables exist before
        # the first scheduled runs, which would otherwise all create them at the same moment. (A sqlite:/// URL
        # is a file of this machine's: nothing to open early, and no file made by a deploy.)
        MetadataStore(cfg.metadata, cfg.metadata_timeout, cfg.metadata_query_timeout)
    from pipeline.deploy import deploy

    name = args.name or cfg.name
    deployment_id = deploy(args.config, name, args.pool, args.cron, overrides, _no_cache(args), args.timezone)
    print(
        f"deployment tfpipe/{name} ({deployment_id}) on work pool {args.pool!r}"
        + (f", schedule {args.cron!r} {args.timezone}" if args.cron else ", no schedule")
    )
    print(f"start a worker:  uv run prefect worker start --pool {args.pool}")
    print(f"run it now:      uv run prefect deployment run 'tfpipe/{name}' [--param no_cache=true]")
    return 0


def _existing_store(url: str, *timeouts: float):
    """The MLMD store at url, for reading: a SQLite file that is not there is an error, never a new store."""
    from pipeline.metadata import MetadataStore

    if "://" not in url and not os.path.isfile(url):
        from components.errors import ConfigError

        raise ConfigError(
            f"no MLMD store at {_short(url)}: nothing has run with this store yet (or pass the store with --metadata)"
        )
    return MetadataStore(url, *timeouts)  # (connect, query) timeouts: the config's, else the defaults


def _store(args):
    from pipeline.config import load_config

    cfg = load_config(args.config, _overrides(args))
    if cfg.metadata_secret:
        from pipeline.flow import open_store

        return cfg, open_store(cfg)
    return cfg, _existing_store(cfg.metadata, cfg.metadata_timeout, cfg.metadata_query_timeout)


def _table(headers: list, rows: list) -> None:
    """A table with headers, as wide as the terminal (long cells fold rather than overflow)."""
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    width = shutil.get_terminal_size((100, 24)).columns
    Console(width=width, highlight=False, soft_wrap=False, no_color=not sys.stdout.isatty()).print(table)


def _when(ms: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _cmd_runs(args) -> int:
    from pipeline.metadata import run_label

    cfg, store = _store(args)
    runs = store.runs(cfg.name)
    if args.json:  # for scripts: stable keys, whatever the table shows
        print(
            json.dumps(
                [
                    {
                        "run": run_label(r["run"]),
                        "started_ms": r["created"],
                        "executions": [{"component": c, "state": s, "id": i} for c, s, i in r["executions"]],
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return 0
    if not runs:
        from pipeline.metadata import redact

        print(f"no runs of {cfg.name} in {_short(redact(cfg.metadata))}")
        return 0
    _table(
        ["run", "started", "components"],
        [
            (run_label(r["run"]), _when(r["created"]), ", ".join(f"{c} {s}" for c, s, _ in r["executions"]))
            for r in runs
        ],
    )
    return 0


# Properties that are for tfpipe's own checks (per-file hashes, content fingerprints), not for reading.
_BOOKKEEPING = ("fingerprint", "files", "destination_files", "name")


def _cmd_artifacts(args) -> int:
    from pipeline.metadata import run_label

    _, store = _store(args)
    found = store.artifacts(args.type, args.state)
    made = store.made_by([a.id for a in found])

    def run_of(a) -> str:
        e = made.get(a.id)
        return run_label(str(e.properties.get("run_id", ""))) if e else ""

    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "type": a.type,
                        "state": a.state,
                        "uri": a.uri,
                        "created_ms": a.created,
                        "run": run_of(a),
                        "component": made[a.id].component if a.id in made else None,
                        "properties": a.properties,
                    }
                    for a in found
                ],
                indent=2,
                default=str,
            )
        )
        return 0
    if not found:
        print(
            "no artifacts"
            + (f" of type {args.type}" if args.type else "")
            + (f" in state {args.state}" if args.state else "")
        )
        return 0
    # A record per artifact, its URI whole on a line of its own; properties on one line, clipped to the
    # terminal (all of them, with tfpipe's own bookkeeping, are in --json).
    import shutil

    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    for a in found:
        maker = f"made by {made[a.id].component} in {run_of(a)}" if a.id in made else "made by -"
        print(f"#{a.id} {a.type} {a.state}  {maker}, {_when(a.created)}")
        print(f"    {_short(a.uri)}")
        props = " ".join(f"{k}={v}" for k, v in sorted(a.properties.items()) if k not in _BOOKKEEPING)
        if props:
            print(f"    {props if len(props) <= width - 4 else props[: width - 5] + '…'}")
    return 0


def _metadata_store(args):
    """The MLMD store named by --metadata, else the one the --config file names."""
    if args.metadata:
        return _existing_store(_overrides(args)["metadata"])
    if not args.config:
        raise SystemExit("tfpipe: error: say which MLMD store: --config PIPELINE.yaml or --metadata PATH|URL")
    return _store(args)[1]


def _cmd_lineage(args) -> int:
    from pipeline import lineage

    store = _metadata_store(args)
    graph = lineage.build(store, lineage.resolve(store, args.artifact))
    if args.json:
        print(
            json.dumps(
                {
                    "focus": graph.focus,
                    "nodes": [{"key": k, **graph.nodes[k]} for k in graph.order()],
                    "edges": sorted([a, b] for a, b in graph.edges),
                },
                indent=2,
            )
        )
        return 0
    rendered = {"text": lineage.text, "dot": lineage.dot, "svg": lineage.svg}[args.format](graph)
    if args.output:
        Path(args.output).write_text(rendered, encoding="utf-8")
        print(f"lineage of {graph.nodes[graph.focus]['label']} written to {args.output}")
    else:
        print(rendered)
    return 0


def _cmd_stats(args) -> int:
    """Statistics per split, with the anomalies judged on them: of an artifact (id or folder) or of a run."""
    from pipeline.ui import data_validation_pairs, statistics_rows

    folder = Path(args.target)
    baselines: dict[str, str] = {}
    if folder.is_dir() and list(folder.glob("Split-*/FeatureStats.pb")):
        pairs = [(str(folder), None)]  # a statistics folder: no store needed
    else:
        store = _metadata_store(args)
        ref = args.target
        if ref.isdigit() or os.path.isdir(ref):
            artifact = store.artifact(store.resolve(ref))
            artifacts = [artifact]
            if artifact.type == "ExampleStatistics":  # and the newest verdict on them, if any
                artifacts += [
                    a
                    for e, kind, _ in store.artifact_events(artifact.id)
                    if kind == "INPUT"
                    for a in store.outputs_of(e).values()
                    if a.type == "ExampleAnomalies"
                ]
            found = data_validation_pairs(store, artifacts)
            judged = [p for p in found if p[1] is not None and p[0].id == artifact.id]
            found = judged[-1:] if judged else [p for p in found if p[0].id == artifact.id or p[1] == artifact]
        else:
            run = store.find_run(ref)
            artifacts = [a for e in store.run_executions(run) for a in store.outputs_of(e.id).values()]
            found = data_validation_pairs(store, artifacts)
        if not found:
            from components.errors import ConfigError

            raise ConfigError(f"{ref}: no statistics in TFDV's format (a statistics component's output) there")
        pairs = [(s.uri, a.uri if a is not None else None) for s, a in found]
        # the validator's drift baseline: the previous drop's statistics it compared with
        baselines = {
            s.uri: store.artifact(int(a.properties["baseline_statistics"])).uri
            for s, a in found
            if a is not None and int(a.properties.get("baseline_statistics") or 0)
        }
    from components.example_validator import load_anomalies
    from components.statistics import by_split, load_statistics

    if args.html:
        return _stats_html(args, pairs, baselines)
    for stats_uri, anomalies_uri in pairs:
        anomalies: dict = load_anomalies(anomalies_uri) if anomalies_uri else {}
        for split, dataset in by_split(load_statistics(stats_uri)).items():
            print(f"split {split}: {dataset.num_examples} examples ({_short(stats_uri)})")
            rows = statistics_rows(dataset, anomalies.get(split))
            headers = list(dict.fromkeys(k for row in rows for k in row))
            _table(headers, [[row.get(h, "-") for h in headers] for row in rows])
    return 0


def _stats_html(args, pairs: list, baselines: dict) -> int:
    """`tfpipe stats ... --html FILE`: one self-contained page (pipeline/stats_html.py), written atomically."""
    from components.example_validator import load_anomalies
    from components.statistics import load_statistics
    from pipeline.stats_html import render

    drops = [
        {
            "title": f"Statistics {_short(stats_uri)}"
            + (f", judged in {_short(anomalies_uri)}" if anomalies_uri else "")
            + (f", against the previous drop {_short(baselines[stats_uri])}" if stats_uri in baselines else ""),
            "statistics": load_statistics(stats_uri),
            "anomalies": load_anomalies(anomalies_uri) if anomalies_uri else {},
            "previous": load_statistics(baselines[stats_uri]) if stats_uri in baselines else None,
        }
        for stats_uri, anomalies_uri in pairs
    ]
    out = Path(args.html)
    staging = out.with_name(f".{out.name}.tmp")
    staging.write_text(render(drops, f"tfpipe stats {args.target}"), encoding="utf-8")
    staging.replace(out)
    print(f"statistics of {args.target} written to {args.html} ({len(drops)} statistics artifact(s))")
    return 0


def _cmd_schema(args) -> int:
    """The schema ingest infers (domains, presence, value counts), in pbtxt, to edit and pin with ingest.schema."""
    import tempfile
    from datetime import UTC, datetime

    from google.protobuf import text_format

    from components.errors import ConfigError
    from pipeline.config import load_config

    cfg = load_config(args.config, _overrides(args))
    ingests = [n for n in cfg.nodes.values() if n.component.name == "ingest"]
    if args.component:
        ingests = [n for n in ingests if n.id == args.component]
        if not ingests:
            raise ConfigError(f"{args.config}: no ingest instance with id {args.component!r}")
    if len(ingests) > 1 and not args.statistics:
        raise ConfigError(
            f"{args.config} has {len(ingests)} ingest instances ({', '.join(n.id for n in ingests)}); "
            "name one with --component ID"
        )
    train_split = ingests[0].params.train_split if ingests else "train"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.statistics:
        from components.statistics import load_statistics
        from schemas.schema import infer_schema

        folder = args.statistics
        if not os.path.isdir(folder) and not folder.isdigit():
            raise ConfigError(f"--statistics {folder}: neither a folder nor an artifact id")
        if not os.path.isdir(folder):
            store = _store(args)[1]
            folder = store.artifact(store.resolve(args.statistics)).uri
        schema = infer_schema(load_statistics(folder), train_split)
        source = f"the statistics in {_short(folder)}"
    else:
        if not ingests:
            raise ConfigError(f"{args.config} has no ingest instance to infer a schema from; pass --statistics")
        from components.ingest import ingest
        from schemas.schema import load_schema

        node = ingests[0]
        params = node.params.model_copy(update={"schema_file": None})  # infer, even where one is pinned
        with tempfile.TemporaryDirectory(prefix="tfpipe-schema-") as tmp:
            result = ingest(params, Path(tmp) / "examples", tmp, tmp)
            schema = load_schema(result.schema_path)
        rows = ", ".join(f"{k} {v}" for k, v in result.counts.items())
        source = f"the input of {node.id} as it is now ({rows} rows)"
    text = (
        f"# tensorflow-metadata Schema of pipeline {cfg.name}, inferred by `tfpipe schema` from {source}, {when}.\n"
        f"# String domains come from split {train_split}. Edit it, then pin it: ingest's `schema: <this file>`.\n"
        + text_format.MessageToString(schema)
    )
    if args.out:
        out = Path(args.out)
        staging = out.with_name(f".{out.name}.tmp")
        staging.write_text(text, encoding="utf-8")
        staging.replace(out)
        print(
            f"schema written to {args.out} ({len(schema.feature)} features); pin it with ingest.schema", file=sys.stderr
        )
    else:
        sys.stdout.write(text)
    return 0


def _cmd_reproduce(args) -> int:
    from components.progress import doing
    from pipeline.metadata import run_label
    from pipeline.reproduce import DIFFERENT, reproduce

    with doing(logging.getLogger("tfpipe.cli"), f"tfpipe reproduce: reading run {args.run} from the store"):
        report = reproduce(_metadata_store(args), args.run)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"reproduced {run_label(report['original'])} as {run_label(report['reproduction'])} "
            f"({'bit-identical expected' if report['exact_expected'] else 'tolerance: metrics within 0.02'})"
        )
        number = {change: i for i, change in enumerate(report["changes"], 1)}
        for row in report["outputs"]:
            causes = ", ".join(f"[{number[c]}]" for c in row["likely_cause"]) or "no recorded change (nondeterminism?)"
            print(
                f"  {row['component']:<10} {row['output']:<21} {row['verdict']}"
                + (f"   likely cause: {causes}" if row["verdict"] == DIFFERENT else "")
            )
        if report["changes"]:
            print("changed since the original run:")
        for change, i in number.items():
            print(f"  [{i}] {change}")
        print(f"verdict: {report['verdict']}")
    return 1 if report["verdict"] == DIFFERENT else 0


def _cmd_diff(args) -> int:
    from pipeline.metadata import run_label
    from pipeline.reproduce import diff

    report = diff(_metadata_store(args), args.run_a, args.run_b)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"a: {run_label(report['a'])}\nb: {run_label(report['b'])}")
    _table(
        ["component", "state a", "state b"],
        [(c, x or "-", y or "-") for c, (x, y) in report["states"].items() if x or y],
    )
    print("changes:")
    for change in report["changes"] or ["no difference in config, inputs, modules, code or versions"]:
        print(f"  {change}")
    if report["metrics"]:
        _table(["metric", "a", "b"], [(k, v.get("a", "-"), v.get("b", "-")) for k, v in report["metrics"].items()])
    return 0


def _cmd_version(args) -> int:
    from importlib.metadata import version

    for dist in ("tfpipe", "tensorflow", "tf-keras", "tensorflow-transform", "apache-beam", "prefect", "ml-metadata"):
        print(f"{dist} {version(dist)}")
    return 0


def _store_args(p, root=True):
    if root:
        p.add_argument("--root", help="pipeline root for artifacts (default: the config's root)")
    p.add_argument(
        "--metadata", help="MLMD store: a SQLite path, postgresql://... or mysql://... (default: the config's)"
    )


_EXAMPLES = {
    "run": [
        "tfpipe run examples/titanic/pipeline.yaml",
        "tfpipe run examples/penguin/pipeline.yaml --no-cache trainer     # re-run the trainer and what reads it",
        "tfpipe run pipeline.yaml --metadata postgresql://mlmd@db:5432/mlmd --root /shared/tfpipe",
    ],
    "titanic": ["tfpipe titanic", "tfpipe titanic --root /tmp/titanic", "tfpipe titanic --seed-program --steps 200"],
    "component": [
        "tfpipe component trainer --config examples/titanic/pipeline.yaml",
        "tfpipe component card --config examples/penguin/pipeline.yaml     # a user component, by its id",
        "tfpipe component evaluator --config pipeline.yaml --input model=42 --no-cache",
    ],
    "deploy": ["tfpipe deploy examples/titanic/pipeline.yaml --cron '0 3 * * *'     # needs PREFECT_API_URL"],
    "runs": ["tfpipe runs --config examples/titanic/pipeline.yaml", "tfpipe runs --config pipeline.yaml --json"],
    "artifacts": [
        "tfpipe artifacts --config examples/titanic/pipeline.yaml --type Model --state LIVE",
        "tfpipe artifacts --config pipeline.yaml --json",
    ],
    "lineage": [
        "tfpipe lineage examples/titanic/tfpipe_root/titanic/serving/1765000000 --config "
        "examples/titanic/pipeline.yaml",
        "tfpipe lineage 12 --config pipeline.yaml --format svg -o lineage.svg",
    ],
    "stats": [
        "tfpipe stats titanic/20261207T060513-4dcccf --config examples/titanic/pipeline.yaml",
        "tfpipe stats 7 --config examples/titanic/pipeline.yaml     # a statistics or anomalies artifact",
        "tfpipe stats titanic/20261207T060513-4dcccf --config examples/titanic/pipeline.yaml --html stats.html",
    ],
    "schema": [
        "tfpipe schema examples/titanic/pipeline.yaml --out schema.pbtxt     # then edit it, and pin it: ingest.schema",
        "tfpipe schema examples/penguin/pipeline.yaml | less",
        "tfpipe schema pipeline.yaml --statistics 12 --out schema.pbtxt     # from a statistics artifact, no reading",
    ],
    "reproduce": ["tfpipe reproduce titanic/20261207T060513-4dcccf --config examples/titanic/pipeline.yaml"],
    "diff": [
        "tfpipe diff titanic/20261207T060513-4dcccf titanic/20261208T030000-9a1b2c --config "
        "examples/titanic/pipeline.yaml"
    ],
}


def _component_slots() -> str:
    """The standard components' inputs (name: type, and how each is filled) and outputs, as `component --help`
    lists them; a user component's are in its own declaration."""
    from components.registry import STANDARD, standard

    lines = ["", "standard components (--input NAME takes an artifact of the input's type):"]
    for name in STANDARD:
        comp = standard(name)
        inputs = [
            f"{i}: {spec.type}"
            + (" (optional)" if spec.optional else "")
            + (f" (found: {spec.resolver})" if spec.resolver else "")
            for i, spec in comp.inputs.items()
        ]
        lines.append(f"  {name}")
        lines.append(f"    inputs:  {', '.join(inputs) or '-'}")
        lines.append(f"    outputs: {', '.join(f'{o}: {t}' for o, t in comp.outputs.items())}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfpipe",
        description="TensorFlow training pipelines: graphs of components (ingest -> transform -> trainer -> "
        "evaluator -> pusher, and your own), on Prefect, with lineage in ML Metadata.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also show the libraries' own messages (TensorFlow's start-up, deprecations); "
        "-vv adds tfpipe's debug lines. Same as TFPIPE_LOG_LEVEL=DEBUG",
    )
    # -v is accepted after the command too; SUPPRESS keeps a subcommand from resetting the count given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        examples = "\n".join(f"  {line}" for line in _EXAMPLES.get(name, ()))
        return sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("run", "run a whole pipeline from its YAML config")
    # nargs="?": `tfpipe run --no-cache CONFIG` must not lose CONFIG to --no-cache (see _fix_no_cache)
    p.add_argument("config", nargs="?", help="the pipeline YAML (see examples/titanic/pipeline.yaml)")
    p.add_argument(
        "--no-cache",
        nargs="*",
        metavar="COMPONENT",
        help="re-run everything (no names) or only these components instead of reusing cached outputs",
    )
    _store_args(p)
    p.set_defaults(func=_cmd_run)

    p = add(
        "titanic",
        "run the bundled Titanic pipeline with embedded defaults "
        "(SQLite MLMD, local Prefect API, Beam DirectRunner, CPU)",
    )
    p.add_argument(
        "--root",
        help="where artifacts, the MLMD store and the served models go "
        "(default: the example's own, examples/titanic/tfpipe_root/titanic)",
    )
    p.add_argument("--no-cache", nargs="*", metavar="COMPONENT", help="as for `run`")
    p.add_argument(
        "--seed-program", action="store_true", help="instead, run the seed guide's four-step LinearClassifier program"
    )
    p.add_argument("--steps", type=int, default=100, help="training steps of --seed-program (default 100)")
    p.set_defaults(func=_cmd_titanic, metadata=None)

    p = add(
        "component",
        "run one component instance (standard or your own) by its id; its inputs default to "
        "the upstream instances' latest LIVE outputs in MLMD",
    )
    p.add_argument("name", help="the instance's id in the pipeline (ingest, trainer, ... or your own)")
    p.add_argument("--config", required=True, help="the pipeline YAML")
    p.add_argument(
        "--input",
        action="append",
        metavar="NAME=ID|URI",
        help="use this artifact (MLMD id or URI) as input NAME; repeatable",
    )
    p.add_argument("--no-cache", nargs="*", metavar="COMPONENT", help="as for `run`")
    _store_args(p)
    p.set_defaults(func=_cmd_component)
    # Each standard component's inputs and outputs, for --input NAME: read from their declarations only when
    # the help is asked for (it imports every component module).
    plain_help = p.format_help
    p.format_help = lambda: plain_help() + _component_slots()  # type: ignore[method-assign]

    p = add(
        "deploy",
        "create or update a Prefect deployment of a pipeline, with a schedule, on a "
        "process work pool (needs a Prefect server: PREFECT_API_URL)",
    )
    p.add_argument("config", nargs="?", help="the pipeline YAML")
    p.add_argument("--name", help="deployment name (default: the pipeline's name); runs as tfpipe/NAME")
    p.add_argument("--pool", default="tfpipe", help="work pool, created as a process pool if missing (default tfpipe)")
    p.add_argument("--cron", help='schedule, e.g. "0 3 * * *" for 03:00 every day (default: none, run on demand)')
    p.add_argument("--timezone", default="UTC", help="time zone of --cron (default UTC)")
    p.add_argument(
        "--no-cache",
        nargs="*",
        metavar="COMPONENT",
        help="this deployment's runs re-run everything (no names) or these components",
    )
    _store_args(p)
    p.set_defaults(func=_cmd_deploy)

    p = add("runs", "list a pipeline's runs and the state of each component")
    p.add_argument("--config", required=True, help="the pipeline YAML")
    p.add_argument("--json", action="store_true", help="print JSON (stable keys) instead of a table")
    _store_args(p)
    p.set_defaults(func=_cmd_runs)

    p = add("artifacts", "list artifacts in MLMD, optionally filtered")
    p.add_argument("--config", required=True, help="the pipeline YAML")
    p.add_argument("--type", help="an artifact type, e.g. Model, Examples, PushedModel")
    p.add_argument("--state", choices=("PENDING", "LIVE", "ABANDONED", "DELETED"), help="only artifacts in this state")
    p.add_argument("--json", action="store_true", help="print JSON (all properties, stable keys) instead of a table")
    _store_args(p)
    p.set_defaults(func=_cmd_artifacts)

    p = add("lineage", "where an artifact came from (back to the raw input files) and what was made from it")
    p.add_argument("artifact", help="an artifact id, an artifact's path, or a pushed model's serving folder")
    p.add_argument(
        "--format",
        choices=("text", "dot", "svg"),
        default="text",
        help="text (default), graphviz dot, or svg (drawn by graphviz's dot)",
    )
    p.add_argument("--output", "-o", help="write to this file instead of printing")
    p.add_argument("--json", action="store_true", help="print the graph as JSON (nodes in order, edges)")
    p.add_argument("--config", help="the pipeline YAML whose MLMD store to read")
    _store_args(p)
    p.set_defaults(func=_cmd_lineage)

    p = add("stats", "statistics per split (and anomalies) of a statistics artifact, its folder, or a run")
    p.add_argument("target", help="an artifact id or path (ExampleStatistics or ExampleAnomalies), or a run id")
    p.add_argument("--config", help="the pipeline YAML whose MLMD store to read")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write a self-contained HTML page instead: per feature, histograms comparing the splits and the "
        "previous drop (the drift baseline), drifted and anomalous features marked",
    )
    _store_args(p)
    p.set_defaults(func=_cmd_stats)

    p = add(
        "schema",
        "the schema ingest infers from the pipeline's input (types, presence, value counts, string domains from the "
        "train split), as a tensorflow-metadata Schema in text format, to edit and pin (ingest.schema); read from the "
        "input files as they are now, into a temporary folder, nothing recorded",
    )
    p.add_argument("config", help="the pipeline YAML")
    p.add_argument("--out", "-o", help="write to this file (atomically) instead of printing")
    p.add_argument("--component", help="the ingest instance's id, where the pipeline has several")
    p.add_argument(
        "--statistics",
        metavar="ARTIFACT",
        help="infer from this statistics artifact (an id in the pipeline's store, or its folder) instead of reading "
        "the input: instant on a big input",
    )
    _store_args(p)
    p.set_defaults(func=_cmd_schema)

    p = add(
        "reproduce",
        "re-run a recorded run from its manifest (config, inputs), nothing "
        "cached, and compare every output: identical, within tolerance or "
        "different, with the likely cause; exits 1 when different",
    )
    p.add_argument("run", help="a run id (as `tfpipe runs` prints it)")
    p.add_argument("--config", help="the pipeline YAML whose MLMD store to read")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _store_args(p)
    p.set_defaults(func=_cmd_reproduce)

    p = add("diff", "what differs between two runs: config, input files, modules, code, library versions, metrics")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--config", help="the pipeline YAML whose MLMD store to read")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    _store_args(p)
    p.set_defaults(func=_cmd_diff)

    p = add("version", "print the versions of tfpipe and the libraries it runs on")
    p.set_defaults(func=_cmd_version)
    return parser


def _fix_no_cache(parser, args) -> None:
    """`--no-cache` takes component ids, and nothing else: a word after it that names a file is the config
    path it swallowed (`tfpipe run --no-cache pipeline.yaml`). The ids are checked against the pipeline once
    it is read."""
    if getattr(args, "no_cache", None):
        names = []
        for value in args.no_cache:
            if (
                "config" in vars(args)
                and args.config is None
                and (value.endswith((".yaml", ".yml")) or os.path.isfile(value))
            ):
                args.config = value
            else:
                names.append(value)
        args.no_cache = names
    if "config" in vars(args) and args.config is None and args.command in ("run", "deploy"):
        parser.error(f"{args.command}: the pipeline YAML is required")


def _parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """parse_args, except that an unknown option is refused by its command, with the likeliest one meant
    (`tfpipe run --no-cahce`: did you mean --no-cache?) rather than the top-level usage."""
    import difflib

    args, extras = parser.parse_known_args(argv)
    if extras:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        commands: dict[str, argparse.ArgumentParser] = getattr(action, "choices", None) or {}
        command = commands.get(args.command or "")
        target = command or parser
        options = [o for action in target._actions for o in action.option_strings]
        unknown = extras[0]
        close = difflib.get_close_matches(unknown, options, n=1, cutoff=0.6) if unknown.startswith("-") else []
        target.error(f"unrecognized argument {unknown}" + (f" (did you mean {close[0]}?)" if close else ""))
    return args


def main(argv=None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _fix_no_cache(parser, args)
    from pipeline import console

    console.configure(args.verbose)
    from components.errors import Stopped, TfpipeError
    from pipeline.config import ConfigFileError

    try:
        return args.func(args)
    except ConfigFileError as e:
        # The pipeline file is wrong: nothing ran and nothing was recorded. A usage error, as argparse's.
        print(f"tfpipe: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"tfpipe: stopped: {e}; run it again to resume", file=sys.stderr)
        return 143
    except TfpipeError as e:
        # Config and input errors are the user's to fix: say what, not a traceback (a bug keeps its traceback).
        print(f"tfpipe: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a pipe of tfpipe's own broke: not the reader of its output going away
        # `tfpipe lineage ... | head`: the reader has all it wants. Quiet, and no second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:
        from components.errors import disk_full, no_space

        full = no_space(e)
        if full is None:
            # Not an expected error: the traceback, and a line that says whose code raised it.
            import traceback

            traceback.print_exc()
            where = _user_frame(e)
            if where:
                print(f"tfpipe: error: your code raised {type(e).__name__} at {where}: {e}", file=sys.stderr)
                return 1
            print(
                f"tfpipe: internal error: {type(e).__name__}: {e}\nThis is a bug in tfpipe: please report it "
                "with the traceback above. A step that failed is FAILED in MLMD and published nothing.",
                file=sys.stderr,
            )
            return 70  # EX_SOFTWARE
        # A full disk outside a step (a step's own says so itself): the operator's to fix.
        print(f"tfpipe: error: {disk_full(full)}", file=sys.stderr)
        return 1


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (its write end then polls as an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def _user_frame(e: BaseException | None) -> str | None:
    """`file:line` of the innermost frame of the user's own code (a preprocessing_fn, a model_fn) in the
    exception's traceback, if it passed through one: neither tfpipe's source, a library, nor Python's."""
    import sysconfig
    import traceback

    from components.user_module import TFPIPE_PACKAGES

    repo = Path(__file__).resolve().parents[1]
    ours = [repo / package for package in TFPIPE_PACKAGES]
    libraries = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "purelib", "platlib")}
    seen = set()
    while e is not None and id(e) not in seen:  # Beam and Prefect re-raise: the user's frame may be in a cause
        seen.add(id(e))
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            path = Path(frame.filename).resolve() if not frame.filename.startswith("<") else None
            if path and not any(path.is_relative_to(p) for p in [*ours, *libraries]):
                return f"{frame.filename}:{frame.lineno}"
        e = e.__cause__ or e.__context__
    return None


def entry() -> None:
    """The `tfpipe` command: main(), then an exit that skips the interpreter's teardown of thousands of modules
    and their C++ libraries (3 to 4 s of silence after the summary, seen here); at-exit handlers (Prefect's
    server and log flushing) and the streams' flushes still run first."""
    import atexit
    import logging

    code = main()
    if "prefect.logging.handlers" in sys.modules:
        # The run's last log records reach the Prefect API while its temporary server still runs (the at-exit
        # handlers stop it first, and a flush after that prints "--- Error logging to API ---").
        from prefect.logging.handlers import APILogWorker

        try:
            APILogWorker.drain_all(timeout=5)
        except Exception:
            pass  # an API that is gone: the run's outcome is already said and recorded
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away (`| head`) or a closed stream: nothing left to say
    os._exit(code)


if __name__ == "__main__":
    entry()
