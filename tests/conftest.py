import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Prefect's temporary local API keeps its database here, not in the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="tfpipe_prefect_"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
