"""A shared MLMD store whose password lives in a Prefect Secret block: MariaDB checks it for real."""

import os
import subprocess
import uuid

import pytest
import yaml

from components.errors import ConfigError
from pipeline import flow  # noqa: F401  Prefect sets up its log handlers now, on the session's streams
from pipeline.flow import pipeline_flow
from pipeline.metadata import PASSWORD_ENV, MetadataStore
from tests.pipeline.test_reliability import _small_titanic

USER = "tfpipe_secret"


def _mariadb(sql: str) -> None:
    subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql], check=True, timeout=60)


@pytest.fixture
def password():
    """A MariaDB user that can only log in with a fresh password."""
    pw = f"pw-{uuid.uuid4().hex}"
    for host in ("%", "localhost"):
        _mariadb(f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{pw}'; "
                 f"ALTER USER '{USER}'@'{host}' IDENTIFIED BY '{pw}'; "
                 f"GRANT ALL PRIVILEGES ON {USER}.* TO '{USER}'@'{host}';")
    saved = os.environ.pop(PASSWORD_ENV, None)
    yield pw
    os.environ.pop(PASSWORD_ENV, None)
    if saved is not None:
        os.environ[PASSWORD_ENV] = saved


def test_store_password_from_a_prefect_secret_block(tmp_path, password):
    from prefect.blocks.system import Secret

    block = f"mlmd-{uuid.uuid4().hex[:8]}"
    url = f"mysql://{USER}@127.0.0.1:3306/{USER}"
    config = _small_titanic(tmp_path, rows=40)
    doc = yaml.safe_load(config.read_text())
    doc.update(metadata=url, metadata_secret=block)
    config.write_text(yaml.safe_dump(doc))

    with pytest.raises(ConfigError, match=f"no Prefect Secret block '{block}'.*Secret\\(value=...\\).save"):
        pipeline_flow(str(config), components=["ingest"])
    with pytest.raises(ConfigError, match="cannot open the metadata store"):
        MetadataStore(url)  # the server really wants the password

    Secret(value=password).save(block)
    result = pipeline_flow(str(config), components=["ingest"])
    assert result["components"]["ingest"]["state"] == "COMPLETE"
    assert password not in result["metadata"]

    store = MetadataStore(url)  # the block's password is in this process's environment now
    [execution] = store.run_executions(store.find_run(result["run_id"]))
    assert execution["state"] == "COMPLETE"
    everything = [*store.store.get_executions(), *store.store.get_artifacts(), *store.store.get_contexts()]
    assert not [r for r in everything if password in str(r)]
