"""Every file under deploy/ is parsed by what would consume it, so a broken one cannot land."""

import importlib.util
import inspect
import json
import re
import shlex
from pathlib import Path

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_prefect_yaml_names_the_flow_and_valid_pipelines():
    from prefect.client.schemas.schedules import CronSchedule

    from pipeline.config import load_config
    from pipeline.flow import pipeline_flow

    doc = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    params = set(inspect.signature(pipeline_flow.fn).parameters)
    assert doc["deployments"]
    for deployment in doc["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file() and name == "pipeline_flow"
        assert set(deployment["parameters"]) <= params
        load_config(ROOT / deployment["parameters"]["config_path"], deployment["parameters"]["overrides"])
        for schedule in deployment["schedules"]:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


def test_dockerfile_copies_what_exists():
    lines = [
        line
        for line in (DEPLOY / "docker" / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11")
    copies = [shlex.split(line)[1:-1] for line in lines if line.startswith("COPY")]
    assert copies and all((ROOT / src).exists() for sources in copies for src in sources)
    cmd = next(line for line in lines if line.startswith("CMD"))
    assert json.loads(cmd[3:]) == ["prefect", "worker", "start", "--pool", "tfpipe", "--type", "process"]


def test_k8s_job_is_rendered_and_every_pod_agrees_on_the_cluster():
    spec = importlib.util.spec_from_file_location("render", DEPLOY / "k8s" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    render = module.render

    committed = list(yaml.safe_load_all((DEPLOY / "k8s" / "training-job.yaml").read_text()))
    assert committed == render("tfpipe-titanic", "tfpipe-worker:latest", 2, 1, 2000)
    services = {d["metadata"]["name"] for d in committed if d["kind"] == "Service"}
    jobs = [d for d in committed if d["kind"] == "Job"]
    configs = [json.loads(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]) for d in jobs]
    clusters = {json.dumps(c["cluster"], sort_keys=True) for c in configs}
    assert len(clusters) == 1
    cluster = configs[0]["cluster"]
    assert {r: len(v) for r, v in cluster.items()} == {"chief": 1, "worker": 2, "ps": 1, "evaluator": 1}
    assert sorted((c["task"]["type"], c["task"]["index"]) for c in configs) == sorted(
        (r, i) for r, hosts in cluster.items() for i in range(len(hosts))
    )
    assert {h.split(":")[0] for hosts in cluster.values() for h in hosts} == services
    for job, config in zip(jobs, configs):
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert (labels["tf-role"], int(labels["tf-index"])) == (config["task"]["type"], config["task"]["index"])
        assert "examples.titanic.distributed" in job["spec"]["template"]["spec"]["containers"][0]["command"]


def test_beam_runner_options_parse():
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    for name, runner in (("flink", "FlinkRunner"), ("spark", "SparkRunner"), ("dataflow", "DataflowRunner")):
        args = yaml.safe_load((DEPLOY / "beam" / f"{name}.yaml").read_text())["transform"]["beam_args"]
        options = PipelineOptions(args)
        assert options.view_as(StandardOptions).runner == runner
        known = options.get_all_options()
        for arg in args:
            key = arg[2:].split("=")[0]
            assert known.get(key) is not None, f"{name}.yaml: Beam does not know --{key}"


def _model_server_config():
    """TF Serving's ModelServerConfig, the fields models.config may use (text_format rejects others)."""
    f = descriptor_pb2.FileDescriptorProto(
        name="tfpipe_serving_config.proto", package="tensorflow.serving", syntax="proto3"
    )

    def message(name, *fields):
        m = f.message_type.add(name=name)
        for number, (field, kind, type_name, repeated) in enumerate(fields, 1):
            m.field.add(name=field, number=number, type=kind, type_name=type_name or None, label=3 if repeated else 1)

    T = descriptor_pb2.FieldDescriptorProto
    message("Latest", ("num_versions", T.TYPE_UINT32, "", False))
    message("Policy", ("latest", T.TYPE_MESSAGE, ".tensorflow.serving.Latest", False))
    message(
        "ModelConfig",
        ("name", T.TYPE_STRING, "", False),
        ("base_path", T.TYPE_STRING, "", False),
        ("model_platform", T.TYPE_STRING, "", False),
        ("model_version_policy", T.TYPE_MESSAGE, ".tensorflow.serving.Policy", False),
    )
    message("ModelConfigList", ("config", T.TYPE_MESSAGE, ".tensorflow.serving.ModelConfig", True))
    message("ModelServerConfig", ("model_config_list", T.TYPE_MESSAGE, ".tensorflow.serving.ModelConfigList", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.ModelServerConfig"))


def test_serving_config_parses_as_a_model_server_config():
    text = (DEPLOY / "serving" / "models.config").read_text()
    config = text_format.Parse(text, _model_server_config()())
    [model] = config.model_config_list.config
    assert model.name == "titanic" and model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1
    mount = re.search(r"-v (\S+):/models/titanic", text).group(1)
    assert mount.endswith("/serving") and model.base_path == "/models/titanic"


def test_team_compose_file_has_a_postgres_server_two_workers_and_the_trainers_limit():
    """deploy/team/compose.yaml: the Prefect server on PostgreSQL, two workers on one pool sharing the artifacts
    volume, the concurrency limit on the very tag the trainer's task runs carry, and an MLMD URL tfpipe opens."""
    from components.trainer import COMPONENT as TRAINER
    from pipeline.flow import slot_tags
    from pipeline.metadata import connection_config

    doc = yaml.safe_load((DEPLOY / "team" / "compose.yaml").read_text())
    services = doc["services"]
    server = services["prefect"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["command"][:3] == ["prefect", "server", "start"]
    workers = {name: s for name, s in services.items() if s.get("command", [])[:3] == ["prefect", "worker", "start"]}
    assert len(workers) == 2
    pools = {s["command"][s["command"].index("--pool") + 1] for s in workers.values()}
    assert pools == {"tfpipe"}
    for worker in workers.values():
        assert "artifacts:/var/lib/tfpipe" in worker["volumes"]
        assert worker["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    setup = services["setup"]["command"][0]
    [training] = slot_tags(TRAINER)
    assert f"prefect concurrency-limit create {training} 1" in setup
    assert "prefect work-pool create tfpipe --type process" in setup
    metadata = re.search(r"--metadata ([^\s;]+)", setup).group(1)
    assert connection_config(metadata).postgresql.dbname == "mlmd"
    assert "CREATE DATABASE mlmd" in (DEPLOY / "team" / "initdb.sql").read_text()
