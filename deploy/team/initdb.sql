-- The MLMD store's database, beside the Prefect server's (POSTGRES_DB); tfpipe creates its tables on first use.
CREATE DATABASE mlmd OWNER tfpipe;
