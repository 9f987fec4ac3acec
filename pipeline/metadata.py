"""ML Metadata: the only module that imports ml_metadata. Types, contexts, executions, artifacts, events."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import wrappers_pb2
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from components._process import alive
from components.errors import ConfigError, StoreUnavailable
from schemas.artifacts import ARTIFACT_TYPES, Artifact

log = logging.getLogger("tfpipe.pipeline")
PIPELINE, PIPELINE_RUN, COMPONENT, CACHE_KEY = "pipeline", "pipeline_run", "component", "cache_key"
_EXEC_PROPS = ("cache_key", "config", "code_version", "library_versions", "pipeline", "run_id", "error")
STATES = {
    "RUNNING": pb.Execution.RUNNING,
    "COMPLETE": pb.Execution.COMPLETE,
    "FAILED": pb.Execution.FAILED,
    "CACHED": pb.Execution.CACHED,
}


PASSWORD_ENV = "TFPIPE_METADATA_PASSWORD"
PRODUCTION, REPRODUCE = "production", "reproduce"  # why an execution ran (custom property `purpose`)


def run_label(run_name: str) -> str:
    """A run as people see it, `<pipeline>/<run id>` (the console, the Prefect UI, `tfpipe runs`), from its
    pipeline_run context's name, `<pipeline>.<run id>` (a run id holds no dot; a pipeline's name may)."""
    pipeline, _, run_id = run_name.rpartition(".")
    return f"{pipeline}/{run_id}" if pipeline else run_name


def redact(url: str) -> str:
    """The URL with its password replaced by ***: what logs, artifacts and messages may show."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


def _server(url: str) -> tuple[str, str, int] | None:
    """(PostgreSQL or MySQL, host, port) of a shared store's URL, defaults filled in; None for SQLite."""
    parsed = urllib.parse.urlparse(url)
    kind = {"postgresql": "PostgreSQL", "postgres": "PostgreSQL", "mysql": "MySQL", "mariadb": "MySQL"}.get(
        parsed.scheme
    )
    if kind is None:
        return None
    return kind, parsed.hostname or "127.0.0.1", parsed.port or (5432 if kind == "PostgreSQL" else 3306)


def is_shared(url: str) -> bool:
    """Whether url names a shared store (PostgreSQL or MySQL/MariaDB), not a SQLite file."""
    return _server(url) is not None


def connection_config(url: str) -> pb.ConnectionConfig:
    """sqlite path (or sqlite:///path), postgresql://user[:pw]@host[:port]/db, mysql://user[:pw]@host[:port]/db."""
    config = pb.ConnectionConfig()
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "sqlite", "file"):
        path = parsed.path if parsed.scheme else url
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    elif parsed.scheme in ("postgresql", "postgres"):
        pg = config.postgresql
        pg.host = parsed.hostname or "127.0.0.1"
        pg.port = str(parsed.port or 5432)
        pg.user = urllib.parse.unquote(parsed.username or "postgres")
        password = parsed.password or os.environ.get(PASSWORD_ENV)
        if password:
            pg.password = urllib.parse.unquote(password)
        pg.dbname = parsed.path.lstrip("/") or "mlmd"
    elif parsed.scheme in ("mysql", "mariadb"):
        my = config.mysql
        my.host = parsed.hostname or "127.0.0.1"
        my.port = parsed.port or 3306
        my.user = urllib.parse.unquote(parsed.username or "root")
        password = parsed.password or os.environ.get(PASSWORD_ENV)
        if password:
            my.password = urllib.parse.unquote(password)
        my.database = parsed.path.lstrip("/") or "mlmd"
    else:
        raise ConfigError(f"metadata store {redact(url)!r}: use a SQLite path, postgresql://... or mysql://...")
    return config


def _artifact(proto, type_name: str) -> Artifact:
    return Artifact(
        proto.id,
        type_name,
        proto.uri,
        pb.Artifact.State.Name(proto.state),
        {k: _value(v) for k, v in proto.custom_properties.items()},
        proto.create_time_since_epoch,
    )


@dataclass
class Execution:
    """An execution as the runner and the CLI see it."""

    id: int
    component: str  # the component instance's id
    state: str  # RUNNING, COMPLETE, FAILED, CACHED
    properties: dict[str, Any]
    custom: dict[str, Any]
    created: int  # ms since the epoch

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.custom.get("manifest") or "{}")

    def __getitem__(self, key: str):
        """e["state"] reads like e.state: scripts written when executions were plain dicts keep working."""
        return getattr(self, key)


@dataclass
class Started:
    """A RUNNING execution with its PENDING outputs, as start() registered it; finish() completes it."""

    id: int
    outputs: dict[str, Artifact]  # output name -> Artifact (PENDING, at its final URI)
    _execution: Any  # pb.Execution (ml_metadata's protos read as Any)
    _artifacts: dict[str, Any]  # output name -> pb.Artifact
    _contexts: list[Any]  # pb.Context


# PostgreSQL indexes string property values and refuses one over 2704 bytes (a manifest listing a step's
# source files, a model's file list): longer text goes in the value's proto field, which is not indexed.
_INDEXED_MAX = 2000


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "proto_value":
        text = wrappers_pb2.StringValue()
        v.proto_value.Unpack(text)
        return text.value
    return getattr(v, kind) if kind else None


def _set(props, key, value):
    if isinstance(value, bool):
        props[key].bool_value = value
    elif isinstance(value, int):
        props[key].int_value = value
    elif isinstance(value, float):
        props[key].double_value = value
    elif len(str(value).encode("utf-8")) > _INDEXED_MAX:
        props[key].proto_value.Pack(wrappers_pb2.StringValue(value=str(value)))
    else:
        props[key].string_value = str(value)


# The watcher behind _Deadline, a bare Python process: MLMD's client holds the GIL while it waits for the
# server, so no thread of ours could act. It holds copies of the store's sockets (sent over its stdin, a
# socket pair); "a<seconds>" arms it, "d" disarms it; past the deadline it shuts the sockets down (the
# blocked read returns) and answers "!". It ends when its link closes, with this process.
_WATCHER = r"""
import select, socket, time
link, fds, due = socket.socket(fileno=0), [], None
while True:
    ready, _, _ = select.select([link], [], [], None if due is None else max(0.0, due - time.monotonic()))
    if not ready:
        link.sendall(b"!")  # first: the call fails as soon as its socket is shut, and must find this there
        for fd in fds:
            try:
                socket.socket(fileno=socket.dup(fd)).shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        due = None
        continue
    try:
        data, new, _, _ = socket.recv_fds(link, 4096, 16)
    except OSError:
        break
    if not data:
        break
    fds += new
    last = [c for c in data.split(b"\n") if c[:1] in (b"a", b"d")]
    if last:
        due = time.monotonic() + float(last[-1][1:]) if last[-1][:1] == b"a" else None
"""


class _Deadline:
    """Bounds each call to a shared store: MLMD's client has no query timeout, and a server that accepted the
    login and then went silent (stuck, overloaded, a dropped link) would hold the run forever. A watcher
    process shuts this store's connections down when a call outlasts `seconds`, so the blocked read returns
    and the call fails; it is raised as StoreUnavailable, naming the store and the wait."""

    def __init__(self, url: str, seconds: float):
        server = _server(url)
        assert server is not None, f"a call deadline is for a shared store, not SQLite: {redact(url)}"
        _, host, self.port = server
        self.where, self.seconds = redact(url), seconds
        try:
            self.hosts = {a[4][0] for a in socket.getaddrinfo(host, self.port)}
        except OSError:
            self.hosts = set()
        self._start_watcher()
        self.failed: str | None = None  # once it has hung up, every later call fails at once: the connection is gone

    def _send(self, message: bytes) -> None:
        """To the watcher; one that has gone (killed, out of memory) is replaced, with the connections."""
        try:
            self.link.sendall(message)
        except OSError:
            log.warning("the watcher that bounds calls to the metadata store %s exited; starting another", self.where)
            self._start_watcher()
            self.watch()
            self.link.sendall(message)

    def _start_watcher(self) -> None:
        import subprocess
        import sys

        self.link, theirs = socket.socketpair()
        # A socket as stdin: Popen takes anything with a fileno(), though typeshed says a file or an int.
        subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHER], stdin=theirs, close_fds=True)  # type: ignore[call-overload]
        theirs.close()

    def watch(self) -> None:
        """Hands the watcher this process's connections to the store (made by the login)."""
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    continue
                with socket.socket(fileno=os.dup(int(fd))) as sock:
                    peer = sock.getpeername()
                if isinstance(peer, tuple) and peer[1] == self.port and peer[0] in self.hosts:
                    fds.append(int(fd))
            except OSError:
                continue
        if fds:
            socket.send_fds(self.link, [b"\n"], fds)

    def call(self, what: str, method, *args, **kwargs):
        if self.failed:
            raise StoreUnavailable(self.failed)
        self._send(b"a%g\n" % self.seconds)
        try:
            return method(*args, **kwargs)
        except Exception:
            try:
                fired = self.link.recv(1, socket.MSG_DONTWAIT) == b"!"
            except BlockingIOError:
                fired = False
            if not fired:
                raise
            self.failed = (
                f"the metadata store {self.where} did not answer {what} within {self.seconds:g} s; the "
                "server is stuck or overloaded, or the network dropped (metadata_query_timeout sets the "
                "wait). The next run recovers what this one left"
            )
            raise StoreUnavailable(self.failed) from None
        finally:
            self._send(b"d\n")


class _Retrying:
    """The MLMD client, with each call retried (backoff up to ~30 s) while SQLite says it is locked, and
    bounded in time (`deadline`) on a shared store.

    Several pipelines sharing one SQLite file take turns at its write lock; MLMD reports the wait
    as an error instead of waiting.
    """

    def __init__(self, client, deadline: _Deadline | None = None):
        self._client = client
        self._deadline = deadline
        # One connection, shared by the run's concurrent tasks: MLMD's client is not safe for two calls at once.
        self._lock = threading.RLock()

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if not callable(method):
            return method
        if self._deadline is not None:
            method = functools.partial(self._deadline.call, name, method)

        def call(*args, **kwargs):
            delay = 0.05
            for attempt in range(12):
                try:
                    with self._lock:
                        return method(*args, **kwargs)
                except Exception as e:
                    if ("locked" not in str(e).lower() and "busy" not in str(e).lower()) or attempt == 11:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)

        return call


def _raced(e: Exception) -> bool:
    """Another process created the same table or row at the same moment (PostgreSQL, MySQL/MariaDB)."""
    text = str(e).lower()
    return any(w in text for w in ("already exists", "duplicate key", "duplicate entry"))


def _open_racing(url: str, tries: int = 6):
    """MLMD's client on `url`. The first runs on a new shared store all create its tables at once: one wins,
    and the others, failing on its rows, find the tables complete when they try again."""
    for attempt in range(tries):
        try:
            return metadata_store.MetadataStore(connection_config(url))
        except Exception as e:
            if not _raced(e) or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _put_type(put, proto) -> int:
    """Registers a type, which another process may be registering at the same moment: then its row is
    there, and the second put finds it."""
    try:
        return put(proto)
    except Exception as e:
        if not _raced(e):
            raise
        return put(proto)


DEFAULT_TIMEOUT = 10.0  # seconds to reach a shared store and hear it answer
DEFAULT_QUERY_TIMEOUT = 60.0  # seconds for one call to a shared store, once logged in


def _sqlite_path(url: str) -> str | None:
    parsed = urllib.parse.urlparse(url)
    return (parsed.path if parsed.scheme else url) if parsed.scheme in ("", "sqlite", "file") else None


def _check_sqlite(url: str) -> None:
    """A SQLite store that cannot be opened, or whose file is damaged (`PRAGMA quick_check`, milliseconds at
    a pipeline's sizes), is one line saying how to recover, before anything runs or writes into it."""
    import sqlite3

    path = _sqlite_path(url)
    if path is None:
        return
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise ConfigError(
                f"the metadata store {path} cannot be created: {folder} is a file, not a folder; "
                "choose another root or --metadata path"
            )
        if not os.access(folder, os.W_OK):
            raise ConfigError(
                f"the metadata store {path} cannot be created: {folder} is not writable; choose "
                "another root or --metadata path"
            )
        return
    if os.path.isdir(path):
        raise ConfigError(f"the metadata store {path} is a folder, not a SQLite file; pass the file's path")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True)) as db:
            verdict = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        verdict = [str(e)]
    if verdict != ["ok"]:
        # quick_check's report runs over lines ("*** in database main ***", then one per problem): the first one.
        found = " ".join(str(row) for row in verdict).replace("*** in database main ***", "").split("\n")
        what = next((line.strip() for line in found if line.strip()), "unreadable")[:160]
        raise ConfigError(
            f"the metadata store {path} is damaged ({what}); nothing was written to it. Restore "
            "it from a backup, or move it aside to start a new store (the artifacts under the root "
            "stay, but a new store does not know them)"
        )


def probe(url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Checks that a PostgreSQL or MySQL server is there and answers, within `timeout` seconds and in a way
    signals can interrupt (MLMD's own connect waits forever on a server that accepts and stays silent), and
    names the cause when it is not: unknown host, refused, timed out, silent, or what the server says."""
    import socket
    import struct

    server = _server(url)
    if server is None:
        _check_sqlite(url)
        return
    kind, host, port = server
    parsed = urllib.parse.urlparse(url)
    where = f"the metadata store {redact(url)}"
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except socket.gaierror as e:
        raise ConfigError(f"{where}: unknown host {host!r} ({e.strerror}); check the host name") from None
    try:
        # SOCK_STREAM to a host name: an AF_INET/AF_INET6 address, whose first two items are (host, port).
        sock = socket.create_connection(cast(tuple[str, int], address[:2]), timeout=timeout)
    except ConnectionRefusedError:
        raise ConfigError(
            f"{where}: connection refused: nothing listens on {host}:{port}; is {kind} running there, on that port?"
        ) from None
    except TimeoutError:
        raise ConfigError(
            f"{where}: timed out after {timeout:g} s connecting to {host}:{port} (a firewall, or a "
            "host that is down); metadata_timeout sets the wait"
        ) from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot connect to {host}:{port} ({e.strerror or e})") from None
    with sock:
        try:
            if kind == "PostgreSQL":
                user = urllib.parse.unquote(parsed.username or "postgres")
                db = parsed.path.lstrip("/") or "mlmd"
                params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
                sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)  # StartupMessage, v3.0
                reply = _pg_verdict(
                    sock, where, f"{kind} at {host}:{port}", bool(parsed.password or os.environ.get(PASSWORD_ENV))
                )
            else:
                reply = sock.recv(1 << 16)  # the server speaks first: its handshake
                if len(reply) > 4 and reply[4] == 0xFF:  # an error packet (too many connections, host not allowed)
                    raise ConfigError(
                        f"{where}: {kind} at {host}:{port} refused the connection: "
                        f"{reply[7:].decode('utf-8', 'replace')}"
                    )
        except TimeoutError:
            raise ConfigError(
                f"{where}: {host}:{port} accepted the connection but did not answer in {timeout:g} s; "
                f"is it a {kind} server, and is it overloaded? (metadata_timeout sets the wait)"
            ) from None
        if not reply:
            raise ConfigError(f"{where}: {host}:{port} closed the connection without a word; is it a {kind} server?")


def _pg_verdict(sock, where: str, server: str, have_password: bool) -> bytes:
    """Reads PostgreSQL's answer to a StartupMessage up to the verdict: an error is raised as the
    server words it (no such role or database, no pg_hba entry); a password request without a password
    is named; anything else is fine. Returns what was read (empty when the server hung up)."""
    import struct

    data = b""
    while True:
        while len(data) < 5 or len(data) < 1 + struct.unpack("!i", data[1:5])[0]:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return data
            data += chunk
        kind, size = data[:1], struct.unpack("!i", data[1:5])[0]
        body, data = data[5 : 1 + size], data[1 + size :]
        if kind == b"E":  # ErrorResponse: fields of a type byte and a NUL-ended text
            fields = {f[:1]: f[1:].decode("utf-8", "replace") for f in body.split(b"\0") if f}
            raise ConfigError(f"{where}: {server} refused the connection: {fields.get(b'M')}")
        if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:  # it wants a password (or SASL)
            if not have_password:
                raise ConfigError(
                    f"{where}: {server} asks for a password; put it in the URL or in "
                    f"{PASSWORD_ENV} (or metadata_secret)"
                )
            return b"R"
        if kind != b"R":  # ParameterStatus, BackendKeyData, ReadyForQuery: logged in
            return b"ok"


class MetadataStore:
    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, query_timeout: float = DEFAULT_QUERY_TIMEOUT):
        self.url = url
        probe(url, timeout)
        deadline = _Deadline(url, query_timeout) if _server(url) else None
        try:
            self.store = _Retrying(_open_racing(url), deadline)
            if deadline:
                deadline.watch()
        except Exception as e:
            message = str(e).replace(urllib.parse.urlparse(url).password or "\0", "***")
            parsed = urllib.parse.urlparse(url)
            if deadline is not None:  # a server (not SQLite, nor a scheme connection_config refused)
                # It answered the probe: what is left is who may log in, and to what.
                user = parsed.username or ("postgres" if parsed.scheme.startswith("postgres") else "root")
                message = (
                    f"the server refused user {user!r} for database {parsed.path.lstrip('/') or 'mlmd'!r}: a "
                    f"wrong or missing password (TFPIPE_METADATA_PASSWORD), or no such user or database "
                    f"({message.strip() or 'no detail given'})"
                )
            raise ConfigError(f"cannot open the metadata store {redact(url)}: {message}") from e
        self._types: dict[tuple[str, str], int] = {}  # (kind, name) -> type id
        for name in (PIPELINE, PIPELINE_RUN, COMPONENT, CACHE_KEY):
            self._types[("ctx", name)] = _put_type(self.store.put_context_type, pb.ContextType(name=name))
        self._type_names: dict[int, str] = {}  # artifact type id -> name
        for name in ARTIFACT_TYPES:
            self._art_type(name)
        self._exec_names: dict[int, str] = {}  # execution type id -> component, filled on first need

    def _art_type(self, name: str) -> int:
        """The artifact type's id, registered on first use (a user's component may declare its own types)."""
        key = ("art", name)
        if key not in self._types:
            self._types[key] = _put_type(self.store.put_artifact_type, pb.ArtifactType(name=name))
            self._type_names[self._types[key]] = name
        return self._types[key]

    def _type_name(self, type_id: int) -> str:
        if type_id not in self._type_names:  # registered by another process (another pipeline's own type)
            self._type_names.update({t.id: t.name for t in self.store.get_artifact_types()})
        return self._type_names.get(type_id, "?")

    def _artifacts_of(self, protos) -> list[Artifact]:
        return [_artifact(p, self._type_name(p.type_id)) for p in protos]

    def _execution(self, e) -> Execution:
        if e.type_id not in self._exec_names:
            self._exec_names = {t.id: t.name.removeprefix("tfpipe.") for t in self.store.get_execution_types()}
        return Execution(
            e.id,
            self._exec_names[e.type_id],
            pb.Execution.State.Name(e.last_known_state),
            {k: _value(v) for k, v in e.properties.items()},
            {k: _value(v) for k, v in e.custom_properties.items()},
            e.create_time_since_epoch,
        )

    # ---- contexts -----------------------------------------------------------------------------------------------

    def _context(self, type_name: str, name: str) -> pb.Context:
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        ctx = pb.Context(type_id=self._types[("ctx", type_name)], name=name)
        try:
            [ctx.id] = self.store.put_contexts([ctx])
        except Exception:  # another process made it first
            return self.store.get_context_by_type_and_name(type_name, name)
        return ctx

    def start_run(self, pipeline: str, run_id: str) -> dict:
        """The pipeline and pipeline_run contexts (the run a child of the pipeline)."""
        pipe = self._context(PIPELINE, pipeline)
        run = self._context(PIPELINE_RUN, f"{pipeline}.{run_id}")
        try:
            self.store.put_parent_contexts([pb.ParentContext(child_id=run.id, parent_id=pipe.id)])
        except Exception:
            pass  # already linked
        return {"pipeline": pipe, "run": run, "name": pipeline}

    def _exec_type(self, component: str) -> int:
        key = ("exec", component)
        if key not in self._types:
            etype = pb.ExecutionType(name=f"tfpipe.{component}")
            for prop in _EXEC_PROPS:
                etype.properties[prop] = pb.STRING
            self._types[key] = _put_type(self.store.put_execution_type, etype)
        return self._types[key]

    def _contexts(self, run: dict, component: str, cache_key: str | None = None) -> list:
        # The cache_key context finds an execution by its key in one lookup, however many the store holds. Only
        # executions that compute are in it (CACHED ones reuse theirs): hourly cached re-runs do not grow it.
        contexts = [run["pipeline"], run["run"], self._context(COMPONENT, f"{run['name']}.{component}")]
        return contexts + ([self._context(CACHE_KEY, cache_key)] if cache_key else [])

    # ---- executions ---------------------------------------------------------------------------------------------

    def _component_executions(self, pipeline: str, component: str) -> list:
        ctx = self.store.get_context_by_type_and_name(COMPONENT, f"{pipeline}.{component}")
        return self.store.get_executions_by_context(ctx.id) if ctx is not None else []

    def recover_dead(self, component: str, pipeline: str) -> list[tuple[Execution, dict]]:
        """Marks FAILED this pipeline's RUNNING executions of `component` whose process (on this host) is gone.

        A process killed with SIGKILL cannot record its own failure; the next run of the same pipeline
        does it (another pipeline's are left to its own runs: their outputs live under its root). Returns
        the recovered executions with their outputs (now ABANDONED).
        """
        recovered = []
        for execution in self._component_executions(pipeline, component):
            if execution.last_known_state != pb.Execution.RUNNING:
                continue
            host = execution.custom_properties["host"].string_value
            pid = execution.custom_properties["pid"].int_value
            if host != socket.gethostname() or not pid or alive(pid):
                continue
            outputs = self._event_protos(execution.id, pb.Event.OUTPUT)
            execution.last_known_state = pb.Execution.FAILED
            execution.properties["error"].string_value = f"the process running it (pid {pid} on {host}) died"
            for artifact in outputs.values():
                artifact.state = pb.Artifact.ABANDONED
            self.store.put_execution(execution, [(a, None) for a in outputs.values()], [])
            recovered.append(
                (self._execution(execution), {n: _artifact(a, self._type_name(a.type_id)) for n, a in outputs.items()})
            )
        return recovered

    def stopped(self, component: str, pipeline: str) -> list[Execution]:
        """This pipeline's executions of `component` stopped by a signal whose kept outputs no run adopted yet."""
        return [
            self._execution(e)
            for e in self._component_executions(pipeline, component)
            if e.custom_properties["stopped"].string_value and e.custom_properties["adopted"].string_value != "yes"
        ]

    def mark_adopted(self, staging: str) -> None:
        """The stopped execution whose output's staging folder a new run took over: not adoptable twice."""
        uri = staging.removesuffix(".staging")
        for artifact in self.store.get_artifacts_by_uri(uri):
            for event in self.store.get_events_by_artifact_ids([artifact.id]):
                [execution] = self.store.get_executions_by_id([event.execution_id])
                execution.custom_properties["adopted"].string_value = "yes"
                self.store.put_executions([execution])

    def _event_protos(self, execution_id: int, kind) -> dict:
        """{event name: artifact proto} for the execution's INPUT or OUTPUT events."""
        events = [e for e in self.store.get_events_by_execution_ids([execution_id]) if e.type == kind]
        protos = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])}
        return {e.path.steps[0].key: protos[e.artifact_id] for e in events}

    def start(self, run: dict, component: str, inputs: dict, outputs: dict, props: dict, uri_of) -> Started:
        """Registers a RUNNING execution with PENDING outputs, input events and contexts, in one put_execution.

        `outputs` maps output names to artifact types; `uri_of(name, execution_id)` gives each URI, so the
        execution id comes first (an execution registered alone), then everything else at once.
        """
        execution = pb.Execution(type_id=self._exec_type(component), last_known_state=pb.Execution.RUNNING)
        _set_props(execution, props)
        # Who runs it: a later run can tell a dead process's RUNNING execution from a live one.
        execution.custom_properties["host"].string_value = socket.gethostname()
        execution.custom_properties["pid"].int_value = os.getpid()
        [execution.id] = self.store.put_executions([execution])
        artifacts = {}
        for name, type_name in outputs.items():
            artifacts[name] = pb.Artifact(
                type_id=self._art_type(type_name), uri=uri_of(name, execution.id), state=pb.Artifact.PENDING
            )
            artifacts[name].custom_properties["name"].string_value = name
        pairs = self._events(inputs, pb.Event.INPUT) + [
            (a, _event(pb.Event.OUTPUT, name)) for name, a in artifacts.items()
        ]
        contexts = self._contexts(run, component, props["cache_key"])
        _, ids, _ = self.store.put_execution(execution, pairs, contexts, reuse_context_if_already_exist=True)
        for (artifact, _), artifact_id in zip(pairs[len(pairs) - len(artifacts) :], ids[len(pairs) - len(artifacts) :]):
            artifact.id = artifact_id
        return Started(
            execution.id, {n: _artifact(a, outputs[n]) for n, a in artifacts.items()}, execution, artifacts, contexts
        )

    def _events(self, inputs: dict, kind) -> list:
        protos = {p.id: p for p in self.store.get_artifacts_by_id([a.id for a in inputs.values()])} if inputs else {}
        return [(protos[artifact.id], _event(kind, name)) for name, artifact in inputs.items()]

    def finish(
        self,
        started: Started,
        state: str,
        error: str | None = None,
        artifact_props: dict | None = None,
        stopped: str | None = None,
    ) -> dict[str, Artifact]:
        """Marks the execution COMPLETE (outputs LIVE) or FAILED (outputs ABANDONED), in one put_execution.

        `stopped`: the signal that stopped it; its kept checkpoints are for the next run to adopt."""
        execution, artifacts = started._execution, started._artifacts
        execution.last_known_state = STATES[state]
        if stopped:
            execution.custom_properties["stopped"].string_value = stopped
        if error:
            execution.properties["error"].string_value = error[:_INDEXED_MAX]
        live = state == "COMPLETE"
        for name, artifact in artifacts.items():
            artifact.state = pb.Artifact.LIVE if live else pb.Artifact.ABANDONED
            for k, v in (artifact_props or {}).get(name, {}).items():
                _set(artifact.custom_properties, k, v)
        self.store.put_execution(
            execution,
            [(a, None) for a in artifacts.values()],
            started._contexts,
            reuse_context_if_already_exist=True,
            reuse_artifact_if_already_exist_by_external_id=False,
        )
        return {name: _artifact(a, self._type_name(a.type_id)) for name, a in artifacts.items()}

    def record_cached(self, run: dict, component: str, inputs: dict, outputs: dict, props: dict) -> None:
        """A CACHED execution: it read `inputs` and reused the LIVE `outputs`, registered in one call."""
        execution = pb.Execution(type_id=self._exec_type(component), last_known_state=pb.Execution.CACHED)
        _set_props(execution, props)
        protos = self.store.get_artifacts_by_id([a.id for a in outputs.values()])
        pairs = self._events(inputs, pb.Event.INPUT) + [
            (p, _event(pb.Event.OUTPUT, name)) for name, p in zip(outputs, protos)
        ]
        self.store.put_execution(execution, pairs, self._contexts(run, component), reuse_context_if_already_exist=True)

    # ---- queries ------------------------------------------------------------------------------------------------

    def outputs_of(self, execution_id: int) -> dict[str, Artifact]:
        return {
            name: _artifact(p, self._type_name(p.type_id))
            for name, p in self._event_protos(execution_id, pb.Event.OUTPUT).items()
        }

    def inputs_of(self, execution_id: int) -> dict[str, Artifact]:
        return {
            name: _artifact(p, self._type_name(p.type_id))
            for name, p in self._event_protos(execution_id, pb.Event.INPUT).items()
        }

    def find_cached(self, component: str, cache_key: str, damage=lambda artifact: None):
        """The newest COMPLETE execution with this cache key whose outputs are LIVE and intact, as
        (Execution, {output: Artifact}); None when there is none.

        Found through the key's own context, without scanning the component's executions. `damage(artifact)`
        says what of an output no longer matches what was published (or None); such outputs are marked
        DELETED, with the reason, and the next candidate is tried.
        """
        ctx = self.store.get_context_by_type_and_name(CACHE_KEY, cache_key)
        if ctx is None:
            return None
        candidates = [
            e
            for e in self.store.get_executions_by_context(ctx.id)
            if e.last_known_state == pb.Execution.COMPLETE and e.properties["cache_key"].string_value == cache_key
        ]
        for execution in sorted(candidates, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True):
            outputs = self.outputs_of(execution.id)
            if not outputs or not all(a.state == "LIVE" for a in outputs.values()):
                continue
            damaged = {name: reason for name, a in outputs.items() if (reason := damage(a))}
            if not damaged:
                return self._execution(execution), outputs
            self.mark_damaged([outputs[name] for name in damaged], "; ".join(damaged.values()))
            log.warning(
                "%s: the cached outputs of execution %d no longer match what it made (%s); running again",
                component,
                execution.id,
                "; ".join(f"{n}: {r}" for n, r in damaged.items()),
            )
        return None

    def mark_damaged(self, artifacts: list, reason: str) -> None:
        """Outputs whose files changed after publishing: DELETED, with why, so nothing reuses them."""
        protos = self.store.get_artifacts_by_id([a.id for a in artifacts])
        for proto in protos:
            proto.state = pb.Artifact.DELETED
            proto.custom_properties["damaged"].string_value = reason[:1000]
        self.store.put_artifacts(protos)

    def latest_live(self, pipeline: str, component: str) -> dict[str, Artifact]:
        """The outputs of the newest COMPLETE (or CACHED) execution of `component` in this pipeline."""
        return next(self.live_outputs(pipeline, component), {})

    def _done(self, executions) -> list:
        # A reproduction's outputs are evidence, never a production run's inputs or baseline.
        done = [
            e
            for e in executions
            if e.last_known_state in (pb.Execution.COMPLETE, pb.Execution.CACHED)
            and e.custom_properties["purpose"].string_value != REPRODUCE
        ]
        return sorted(done, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True)

    def live_outputs(self, pipeline: str, component: str):
        """The LIVE outputs of `component`'s executions in this pipeline, newest first."""
        for execution in self._done(self._component_executions(pipeline, component)):
            outputs = self.outputs_of(execution.id)
            if outputs and all(a.state == "LIVE" for a in outputs.values()):
                yield outputs

    def live_of_type(self, pipeline: str, type_name: str):
        """The LIVE artifacts of this type that this pipeline's (production) executions output, newest first."""
        ctx = self.store.get_context_by_type_and_name(PIPELINE, pipeline)
        if ctx is None:
            return
        seen = set()
        for execution in self._done(self.store.get_executions_by_context(ctx.id)):
            for artifact in self.outputs_of(execution.id).values():
                if artifact.type == type_name and artifact.state == "LIVE" and artifact.id not in seen:
                    seen.add(artifact.id)
                    yield artifact

    def upstream_property(self, artifact_id: int, key: str):
        """The property `key` of the nearest artifact upstream of this one (through the executions that made
        each) that has it, or None: e.g. the split rule of the examples a model was trained on."""
        todo, seen = [artifact_id], set()
        while todo:
            current = todo.pop(0)
            if current in seen:
                continue
            seen.add(current)
            for execution_id, kind, _ in self.artifact_events(current):
                if kind != "OUTPUT":
                    continue
                for artifact in self.inputs_of(execution_id).values():
                    if key in artifact.properties:
                        return artifact.properties[key]
                    todo.append(artifact.id)
        return None

    def artifact(self, artifact_id: int) -> Artifact:
        found = self.store.get_artifacts_by_id([artifact_id])
        if not found:
            raise ConfigError(f"no artifact with id {artifact_id} in {redact(self.url)}")
        return _artifact(found[0], self._type_name(found[0].type_id))

    def resolve(self, ref) -> int:
        """An artifact id from an id or a URI (the newest LIVE artifact at that URI)."""
        if isinstance(ref, int) or str(ref).isdigit():
            return self.artifact(int(ref)).id
        found = [a for a in self.store.get_artifacts_by_uri(os.path.abspath(str(ref))) if a.state == pb.Artifact.LIVE]
        if not found:
            raise ConfigError(f"no LIVE artifact at {ref} in {redact(self.url)}")
        return max(found, key=lambda a: a.id).id

    def artifacts(self, type_name: str | None = None, state: str | None = None) -> list[Artifact]:
        protos = self.store.get_artifacts_by_type(type_name) if type_name else self.store.get_artifacts()
        return [a for a in self._artifacts_of(protos) if state is None or a.state == state]

    def find_run(self, ref: str) -> str:
        """A pipeline_run's context name from the run as the console and the Prefect UI spell it
        (`titanic/20261207T060513-4dcccf`), as MLMD names it (`titanic.20261207T...`), or its run id alone."""
        pipeline, slash, run_id = ref.rpartition("/")
        ref = f"{pipeline}.{run_id}" if slash else ref
        names = [c.name for c in self.store.get_contexts_by_type(PIPELINE_RUN)]
        found = [n for n in names if n == ref or n.endswith(f".{ref}")]
        if len(found) != 1:
            known = ", ".join(run_label(n) for n in sorted(names)[-5:]) or "none"
            raise ConfigError(
                f"{'no' if not found else 'more than one'} run {ref!r} in {redact(self.url)} "
                f"(latest runs: {known}; `tfpipe runs` lists them all)"
            )
        return found[0]

    def run_executions(self, run_name: str) -> list[Execution]:
        """The executions of one run, oldest first."""
        ctx = self.store.get_context_by_type_and_name(PIPELINE_RUN, run_name)
        execs = self.store.get_executions_by_context(ctx.id) if ctx else []
        return [self._execution(e) for e in sorted(execs, key=lambda e: e.id)]

    def execution(self, execution_id: int) -> Execution:
        [proto] = self.store.get_executions_by_id([execution_id])
        return self._execution(proto)

    def executions(self, component: str | None = None) -> list[Execution]:
        protos = (
            self.store.get_executions()
            if component is None
            else self.store.get_executions_by_type(f"tfpipe.{component}")
        )
        return [self._execution(e) for e in protos]

    def artifact_events(self, artifact_id: int) -> list[tuple[int, str, str]]:
        """(execution id, INPUT or OUTPUT, the event's name) for each event on the artifact."""
        return [
            (e.execution_id, pb.Event.Type.Name(e.type), e.path.steps[0].key if e.path.steps else "")
            for e in self.store.get_events_by_artifact_ids([artifact_id])
        ]

    def made_by(self, artifact_ids: list[int]) -> dict[int, Execution]:
        """{artifact id: the execution that made it} (the first with it as an OUTPUT; later CACHED ones reused it)."""
        first: dict[int, int] = {}
        for event in self.store.get_events_by_artifact_ids(artifact_ids) if artifact_ids else []:
            if event.type == pb.Event.OUTPUT:
                first[event.artifact_id] = min(first.get(event.artifact_id, event.execution_id), event.execution_id)
        protos = self.store.get_executions_by_id(sorted(set(first.values()))) if first else []
        executions = {e.id: self._execution(e) for e in protos}
        return {a: executions[e] for a, e in first.items() if e in executions}

    def artifacts_by_uri(self, uri: str) -> list[Artifact]:
        return self._artifacts_of(self.store.get_artifacts_by_uri(uri))

    def runs(self, pipeline: str | None = None) -> list[dict]:
        """Each pipeline_run context with its executions' components and states."""
        out = []
        for ctx in self.store.get_contexts_by_type(PIPELINE_RUN):
            if pipeline and not ctx.name.startswith(f"{pipeline}."):
                continue
            execs = [self._execution(e) for e in self.store.get_executions_by_context(ctx.id)]
            out.append(
                {
                    "run": ctx.name,
                    "created": ctx.create_time_since_epoch,
                    "executions": [(e.component, e.state, e.id) for e in sorted(execs, key=lambda e: e.id)],
                }
            )
        return sorted(out, key=lambda r: r["created"])


def _set_props(execution, props: dict) -> None:
    """The declared properties as such; anything else (the run manifest) as a custom property."""
    for k, v in props.items():
        if k in _EXEC_PROPS:  # declared STRING properties: short by design
            execution.properties[k].string_value = str(v)[:_INDEXED_MAX]
        else:
            _set(execution.custom_properties, k, v)


def _event(kind, name: str) -> pb.Event:
    event = pb.Event(type=kind)
    event.path.steps.add().key = name
    event.milliseconds_since_epoch = int(time.time() * 1000)
    return event
