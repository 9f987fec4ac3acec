"""Run as a process by the concurrency test: N ingest executions into a shared MLMD store.

    python -m tests.pipeline.concurrent_ingest CONFIG_YAML METADATA_URL RUN_PREFIX N
"""

import sys

from pipeline.config import load_config
from pipeline.metadata import MetadataStore
from pipeline.steps import run_step


def main():
    config, url, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = load_config(config, {"metadata": url})
    store = MetadataStore(cfg.metadata)
    for i in range(n):
        run_step(cfg, store, store.start_run(cfg.name, f"{prefix}-{i}"), "ingest", {}, use_cache=False)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
