"""Fixtures and helpers for the black-box integration suite.

Everything here talks to the real `watchpost` binary over 127.0.0.1 only:
the server is started as a child process on a port the OS picks (we pass
`--listen 127.0.0.1:0` and read the bound address from the
`Watchpost is listening on http://ADDR` line), with a temporary data
directory and a workspace whose id and key the test knows.

The SharedKey signing below is written from the contract
(shared/spec/ingestion-api.md 1.3), not copied from any client package, so
that the raw-request tests check the server against the spec.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "2016-04-01"
STANDARD_COLUMNS = ["TenantId", "SourceSystem", "TimeGenerated", "_TimeReceived", "Type", "_ResourceId"]
STANDARD_TYPES = {
    "TenantId": "string",
    "SourceSystem": "string",
    "TimeGenerated": "datetime",
    "_TimeReceived": "datetime",
    "Type": "string",
    "_ResourceId": "string",
}
# Generous: the machine is small and often busy compiling.
HTTP_TIMEOUT = 60
START_TIMEOUT = 120
STOP_TIMEOUT = 120


def watchpost_bin() -> Path:
    configured = os.environ.get("WATCHPOST_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "watchpost"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


# ---------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_key() -> str:
    """A fresh base64 workspace key (64 random bytes, like Azure's)."""
    return base64.b64encode(secrets.token_bytes(64)).decode()


def new_workspace_id() -> str:
    return str(uuid.uuid4())


def unique_log_type(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rfc1123(when: dt.datetime | float | None = None) -> str:
    """`Mon, 04 Apr 2016 08:00:00 GMT`."""
    if when is None:
        when = time.time()
    if isinstance(when, dt.datetime):
        when = when.timestamp()
    return email.utils.formatdate(when, usegmt=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_z(when: dt.datetime) -> str:
    """ISO 8601 UTC with a `Z`, whole seconds (what clients send)."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def kusto_datetime(when: dt.datetime) -> str:
    """The query API's datetime cell form: 7 fractional digits and `Z`."""
    when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond:06d}0Z"


def parse_datetime(text: str) -> dt.datetime:
    """Parses a datetime cell (`2024-05-01T10:00:00.0000000Z` or without fraction)."""
    assert isinstance(text, str) and text.endswith("Z"), f"not a UTC datetime cell: {text!r}"
    body = text[:-1]
    if "." in body:
        head, frac = body.split(".", 1)
        frac = (frac + "000000")[:6]
        body = f"{head}.{frac}"
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return dt.datetime.strptime(body, fmt).replace(tzinfo=dt.timezone.utc)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(pct / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Polls `predicate` until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# SharedKey signing (spec 1.3)


def string_to_sign(content_length: int, content_type: str, date: str, method: str = "POST", resource: str = "/api/logs") -> str:
    return f"{method}\n{content_length}\n{content_type}\nx-ms-date:{date}\n{resource}"


def shared_key_authorization(workspace_id: str, key_b64: str, date: str, content_length: int, content_type: str = "application/json") -> str:
    message = string_to_sign(content_length, content_type, date).encode("utf-8")
    digest = hmac.new(base64.b64decode(key_b64), message, hashlib.sha256).digest()
    return f"SharedKey {workspace_id}:{base64.b64encode(digest).decode()}"


def encode_body(body: Any) -> bytes:
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


_OMIT = object()


def build_post(
    workspace_id: str,
    key: str,
    log_type: Any,
    body: Any,
    *,
    date: Any = None,
    content_type: Any = "application/json",
    time_generated_field: str | None = None,
    extra_headers: dict[str, str] | None = None,
    sign_length: int | None = None,
    sign_content_type: str | None = None,
    authorization: Any = None,
) -> tuple[bytes, dict[str, str]]:
    """Body bytes and headers of a signed Data Collector request.

    Pass `_OMIT` (conftest.OMIT) for `log_type`, `date`, `content_type` or
    `authorization` to leave that header out entirely.
    """
    data = encode_body(body)
    if date is None:
        date = rfc1123()
    headers: dict[str, str] = {}
    if content_type is not _OMIT:
        headers["Content-Type"] = content_type
    if log_type is not _OMIT:
        headers["Log-Type"] = log_type
    if date is not _OMIT:
        headers["x-ms-date"] = date
    if time_generated_field is not None:
        headers["time-generated-field"] = time_generated_field
    if authorization is None:
        signed_type = sign_content_type if sign_content_type is not None else (content_type if content_type is not _OMIT else "")
        signed_date = date if date is not _OMIT else ""
        authorization = shared_key_authorization(
            workspace_id, key, signed_date, len(data) if sign_length is None else sign_length, signed_type
        )
    if authorization is not _OMIT:
        headers["Authorization"] = authorization
    if extra_headers:
        headers.update(extra_headers)
    return data, headers


OMIT = _OMIT


@dataclass
class Receipt:
    rows: int
    columns: list[str]
    repeated: bool

    @staticmethod
    def parse(text: str | None) -> "Receipt":
        assert text, "success response has no x-watchpost-receipt header"
        parts = {}
        for part in text.split(";"):
            name, _, value = part.strip().partition("=")
            parts[name] = value
        assert set(parts) >= {"rows", "columns", "repeated"}, f"bad receipt {text!r}"
        columns = [c for c in parts["columns"].split(",") if c]
        assert parts["repeated"] in ("true", "false"), f"bad receipt {text!r}"
        return Receipt(int(parts["rows"]), columns, parts["repeated"] == "true")


@dataclass
class Table:
    name: str
    columns: list[str]
    types: dict[str, str]
    rows: list[list[Any]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def scalar(self) -> Any:
        assert len(self.rows) == 1 and len(self.rows[0]) == 1, f"expected one cell, got {self.columns} {self.rows}"
        return self.rows[0][0]


def table_from_json(payload: dict) -> Table:
    assert "tables" in payload, f"no tables in {payload}"
    table = payload["tables"][0]
    columns = [c["name"] for c in table["columns"]]
    types = {c["name"]: c["type"] for c in table["columns"]}
    return Table(table["name"], columns, types, table["rows"])


# ---------------------------------------------------------------------------
# the server process


_ALL_SERVERS: list["WatchpostServer"] = []


class WatchpostServer:
    """One `watchpost serve` child process over a data directory.

    The object survives restarts: `start()` again on the same data dir
    after `stop()`/`kill()`. The port may change between runs (the OS picks
    one each time), so always use `.url`.
    """

    def __init__(
        self,
        data_dir: Path,
        workspace_id: str | None = None,
        primary_key: str | None = None,
        *,
        config: dict | str | None = None,
        log_dir: Path | None = None,
        name: str = "watchpost",
    ):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.workspace_id = workspace_id
        self.primary_key = primary_key
        self.config = config
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.address: str | None = None
        self.stdout_lines: list[str] = []
        self.runs = 0
        self.started_at = 0.0
        self._secondary_key: str | None = None
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None
        # Extra `serve` flags (e.g. `--tls-self-signed`) and the scheme the
        # server announced.
        self.extra_args: list[str] = []
        self.scheme = "http"
        _ALL_SERVERS.append(self)

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.address, "server not started"
        return f"{self.scheme}://{self.address}"

    @property
    def verify(self) -> str | bool:
        """What `requests` should trust: the self-signed CA when serving https."""
        ca = self.data_dir / "tls" / "ca.pem"
        return str(ca) if self.scheme == "https" and ca.exists() else True

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.runs}.stderr.log"

    def _config_path(self) -> Path | None:
        if self.config is None:
            return None
        path = self.log_dir / f"{self.name}-{self.runs}.toml"
        text = self.config if isinstance(self.config, str) else toml_dumps(self.config)
        path.write_text(text)
        return path

    def command(self, workspace_flag: bool = True) -> list[str]:
        args = [str(watchpost_bin()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
        if workspace_flag and self.workspace_id and self.primary_key:
            args += ["--workspace", f"{self.workspace_id}={self.primary_key}"]
        config = self._config_path()
        if config is not None:
            args += ["--config", str(config)]
        return args + list(self.extra_args)

    def start(self, *, workspace_flag: bool = True, timeout: float = START_TIMEOUT) -> "WatchpostServer":
        assert not self.running, "already running"
        require_binary()
        self.runs += 1
        self.started_at = time.time()
        self.address = None
        self.stdout_lines = []
        self._listening = threading.Event()
        args = self.command(workspace_flag)
        stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("WATCHPOST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=str(self.log_dir)
        )
        stderr.close()
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"watchpost exited with {self.proc.returncode} before listening; "
                    f"stdout={self.stdout_lines!r}\nstderr:\n{self.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"watchpost did not print its listen line in {timeout}s\n{self.stderr_tail()}")
        # The listen line comes before the accept loop runs: poll /healthz.
        while True:
            try:
                response = requests.get(f"{self.url}/healthz", timeout=5, verify=self.verify)
                if response.status_code == 200:
                    assert response.text.strip() == "ok", f"/healthz body {response.text!r}"
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"watchpost exited with {self.proc.returncode}\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"/healthz not 200 within {timeout}s\n{self.stderr_tail()}")
            time.sleep(0.05)
        return self

    def _read_stdout(self, proc: subprocess.Popen):
        assert proc.stdout is not None
        with open(self.log_dir / f"{self.name}-{self.runs}.stdout.log", "w") as copy:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.stdout_lines.append(line)
                copy.write(line + "\n")
                copy.flush()
                marker = "Watchpost is listening on "
                if marker in line and "://" in line and not self._listening.is_set():
                    scheme, address = line.split(marker, 1)[1].strip().rstrip("/").split("://", 1)
                    self.scheme, self.address = scheme, address
                    self._listening.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Graceful stop; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                raise AssertionError(f"watchpost did not exit within {timeout}s of signal {sig}\n{self.stderr_tail()}")
        if self._reader is not None:
            self._reader.join(10)
        return self.proc.returncode

    def kill(self) -> None:
        """`kill -9`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)
        if self._reader is not None:
            self._reader.join(10)

    def restart(self, **kwargs) -> "WatchpostServer":
        code = self.stop()
        assert code == 0, f"graceful stop exited with {code}\n{self.stderr_tail()}"
        return self.start(**kwargs)

    def stderr_tail(self, lines: int = 60) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- workspace facts -----------------------------------------------------

    @property
    def secondary_key(self) -> str:
        if self._secondary_key is None:
            self._secondary_key = self.show_workspace()["secondaryKey"]
        return self._secondary_key

    def show_workspace(self, workspace_id: str | None = None) -> dict:
        result = run_cli("workspace", "show", "--data-dir", str(self.data_dir), workspace_id or self.workspace_id)
        assert result.returncode == 0, f"workspace show failed: {result.stderr}"
        return json.loads(result.stdout)

    # -- Data Collector API ------------------------------------------------------

    def post(
        self,
        log_type: Any,
        body: Any,
        *,
        workspace_id: str | None = None,
        key: str | None = None,
        path: str = "/api/logs",
        query: str | None = f"api-version={API_VERSION}",
        session: requests.Session | None = None,
        timeout: float = HTTP_TIMEOUT,
        **kwargs,
    ) -> requests.Response:
        data, headers = build_post(
            workspace_id or self.workspace_id, key or self.primary_key, log_type, body, **kwargs
        )
        url = f"{self.url}{path}" + (f"?{query}" if query is not None else "")
        return (session or requests).post(url, data=data, headers=headers, timeout=timeout)

    def ingest(self, log_type: str, records: Any, **kwargs) -> Receipt:
        """Posts and asserts 200 with an empty body; returns the receipt."""
        response = self.post(log_type, records, **kwargs)
        assert response.status_code == 200, f"ingest failed: {response.status_code} {response.text}"
        assert response.content == b"", f"200 must have an empty body, got {response.content[:200]!r}"
        return Receipt.parse(response.headers.get("x-watchpost-receipt"))

    # -- Query API ---------------------------------------------------------------

    def query_raw(
        self,
        kql: str | None,
        *,
        timespan: Any = _OMIT,
        key: Any = None,
        workspace_id: str | None = None,
        now: str | None = None,
        prefer: str | None = None,
        method: str = "POST",
        extra_headers: dict | None = None,
        timeout: float = HTTP_TIMEOUT,
    ) -> requests.Response:
        headers = {}
        if key is not _OMIT:
            headers["Authorization"] = f"Bearer {key or self.primary_key}"
        if now is not None:
            headers["x-watchpost-now"] = now
        if prefer is not None:
            headers["Prefer"] = prefer
        if extra_headers:
            headers.update(extra_headers)
        url = f"{self.url}/v1/workspaces/{workspace_id or self.workspace_id}/query"
        if method == "GET":
            params = {"query": kql}
            if timespan is not _OMIT and timespan is not None:
                params["timespan"] = timespan
            return requests.get(url, params=params, headers=headers, timeout=timeout)
        body: dict[str, Any] = {"query": kql}
        if timespan is not _OMIT:
            body["timespan"] = timespan
        return requests.post(url, json=body, headers=headers, timeout=timeout)

    def query(self, kql: str, **kwargs) -> Table:
        response = self.query_raw(kql, **kwargs)
        assert response.status_code == 200, f"query {kql!r} failed: {response.status_code} {response.text}"
        return table_from_json(response.json())

    def count(self, kql: str, **kwargs) -> int:
        return self.query(f"{kql} | count", **kwargs).scalar()


def toml_dumps(config: dict) -> str:
    """Just enough TOML for the server's config file."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(str(v))

    lines = []
    tables = []
    for k, v in config.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {value(v)}")
    for k, entries in tables:
        for entry in entries:
            lines.append(f"\n[[{k}]]")
            lines.extend(f"{ek} = {value(ev)}" for ek, ev in entry.items())
    return "\n".join(lines) + "\n"


def require_binary() -> Path:
    path = watchpost_bin()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"watchpost binary not found at {path}; build it (cargo build -p watchpost-cli) or set WATCHPOST_BIN",
            pytrace=False,
        )
    return path


def run_cli(*args: str, timeout: float = HTTP_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
    require_binary()
    return subprocess.run(
        [str(watchpost_bin()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def watchpost_binary() -> Path:
    return require_binary()


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory: `make_server(config=..., ...)` -> started WatchpostServer.

    Every server made is SIGKILLed at teardown if still running.
    """
    made: list[WatchpostServer] = []

    def factory(*, start: bool = True, config: dict | str | None = None, workspace_id=None, primary_key=None, **kwargs):
        base = tmp_path_factory.mktemp("wp")
        server = WatchpostServer(
            base / "data",
            workspace_id or new_workspace_id(),
            primary_key or new_key(),
            config=config,
            log_dir=base,
            **kwargs,
        )
        made.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in made:
        server.kill()


def _serve(tmp_path_factory, name: str, kind: type):
    base = tmp_path_factory.mktemp(name)
    srv = kind(base / "data", new_workspace_id(), new_key(), log_dir=base)
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server per test module (tests use unique Log-Types to stay apart)."""
    yield from _serve(tmp_path_factory, "wp-module", WatchpostServer)


# ---------------------------------------------------------------------------
# reporting: server logs on failure, metrics in the summary

METRICS: list[str] = []


@pytest.fixture
def report_metric():
    def add(text: str):
        METRICS.append(text)
        print(text)

    return add


def pytest_terminal_summary(terminalreporter):
    if METRICS:
        terminalreporter.section("watchpost metrics")
        for line in METRICS:
            terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._watchpost_started = time.time()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        began = getattr(item, "_watchpost_started", 0)
        for srv in _ALL_SERVERS:
            if srv.proc is None:
                continue
            if not srv.running and srv.started_at < began:
                continue
            state = "running" if srv.running else f"exited {srv.proc.returncode}"
            report.sections.append((f"{srv.name} {srv.data_dir} ({state}) stderr tail", srv.stderr_tail(40)))


class FixedPortServer(WatchpostServer):
    """A server that comes back on the same port after a stop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed_port = free_port()

    def command(self, workspace_flag: bool = True) -> list[str]:
        args = super().command(workspace_flag)
        return [f"127.0.0.1:{self.fixed_port}" if a == "127.0.0.1:0" else a for a in args]


@pytest.fixture
def fixed_server(tmp_path_factory):
    """A server of its own for one test, which may stop and restart it."""
    yield from _serve(tmp_path_factory, "wp-fixed", FixedPortServer)
