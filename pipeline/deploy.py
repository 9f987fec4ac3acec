"""`tfpipe deploy`: the pipeline flow as a Prefect deployment with a schedule, on a process work pool."""

from __future__ import annotations

from pathlib import Path

from components.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = "pipeline/flow.py:pipeline_flow"


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "a deployment lives on a Prefect server, and none is configured: start one "
            "(`uv run prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from pipeline.flow import check_prefect_api

    check_prefect_api()
    return url


def ensure_pool(name: str) -> None:
    """A process work pool of that name (made if missing): its workers run flows as local processes."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            except ObjectAlreadyExists:
                pass


def deploy(
    config_path: str, name: str, pool: str, cron: str | None, overrides: dict, no_cache, timezone: str = "UTC"
) -> str:
    """Registers (or updates) deployment `tfpipe/<name>`; returns its id."""
    from prefect.schedules import Cron

    from pipeline.flow import pipeline_flow

    api_url()
    ensure_pool(pool)
    source = pipeline_flow.from_source(source=str(REPO), entrypoint=ENTRYPOINT)
    # from_source is sync here (no event loop), though typed as sync or async.
    deployment_id = source.deploy(  # type: ignore[union-attr]
        name=name,
        work_pool_name=pool,
        build=False,
        push=False,
        schedules=[Cron(cron, timezone=timezone)] if cron else [],
        parameters={"config_path": str(Path(config_path).resolve()), "overrides": overrides, "no_cache": no_cache},
        tags=[name],
        description=f"tfpipe pipeline {config_path}",
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)
