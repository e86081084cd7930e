"""The service under `cargo lambda watch` on a free loopback port, with a temporary SQLite
database, signing key and data key (AUTH_DATA_KEY, 32 random bytes: what TOTP secrets are sealed
under), shared by every conformance test of the session.

The OpenID Connect tests also run against a second watch on DynamoDB (a table on moto_server,
scripts/moto_atomic.py, on another free loopback port): `oidc_service` is each in turn. Only
those tests start it; the rest of the suite sees the SQLite service alone.

Both send their mail to one SMTP server on loopback (aiosmtpd, mail_support.py), started before
them and kept for the session: `mailbox` holds every message either sent. The token-expiry test
starts a short-lived watch of its own, whose tokens live a few seconds (`short_token_service`).

As in tests/e2e.rs, watch (and moto) run in their own process group, which is stopped (TERM,
then KILL) with everything it started when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "target" / "conformance"
AUDIENCE = "conformance-api"
# The first request to each function waits for its debug build.
STARTUP_LIMIT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """The running service: where it listens and what it was configured with."""

    base_url: str
    issuer: str
    audience: str
    log: Path
    # "sqlite" or "dynamodb", and the environment that reaches its store (AUTH_STORE, and the
    # AWS_* settings for DynamoDB): what auth-admin needs to register clients in it.
    store: str = "sqlite"
    store_env: dict[str, str] = field(default_factory=dict)
    # The SQLite database file (AUTH_STORE=sqlite:PATH), None on DynamoDB: the sealed-at-rest
    # test reads it, and its `-wal`, as bytes.
    sqlite_path: Path | None = None
    # The AUTH_DATA_KEY file (32 random bytes) TOTP secrets are sealed under.
    data_key: Path | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """target/conformance/: screenshots, the schemathesis report and the watch log."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _wait_until_ready(proc: subprocess.Popen, service: Service) -> None:
    """Calls each function once, so every build happens here, not inside a test."""
    probes = [
        ("GET", "/.well-known/jwks.json", 200),
        ("GET", "/openapi.json", 200),
        ("POST", "/register", 415),
        ("POST", "/login", 415),
        ("GET", "/me", 401),
        ("POST", "/logout", 400),
        ("PUT", "/me/password", 401),
        # An authorization request without client_id: the hosted page's error, never a redirect.
        ("GET", "/authorize", 400),
    ]
    deadline = time.monotonic() + STARTUP_LIMIT
    for method, path, expected in probes:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"cargo lambda watch exited ({proc.returncode}):\n{service.log_text()}"
                )
            try:
                r = requests.request(method, service.url(path), timeout=STARTUP_LIMIT)
                status = r.status_code
            except requests.ConnectionError:
                status = None
            if status == expected:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{method} {path} never answered {expected} (last: {status}):\n"
                    f"{service.log_text()[-5000:]}"
                )
            time.sleep(0.5)


DATA_KEY_BYTES = 32


def _data_key(work: Path) -> Path:
    """The service's AUTH_DATA_KEY file in `work`: 32 random bytes (mode 0600), unless one is
    there already (scripts/dev_key.py may make it beside the signing key)."""
    path = work / "data-key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(DATA_KEY_BYTES))
    assert path.stat().st_size == DATA_KEY_BYTES, path
    return path


def _sqlite_path(store_env: dict[str, str]) -> Path | None:
    store = store_env.get("AUTH_STORE", "")
    return Path(store.removeprefix("sqlite:")) if store.startswith("sqlite:") else None


def _stop_group(proc: subprocess.Popen) -> None:
    """TERM to the whole group, a grace period for the leader, then KILL to whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextlib.contextmanager
def _run_service(work: Path, artifacts: Path, store: str, store_env: dict[str, str],
                 log_name: str, mail_env: dict[str, str]):
    """Starts `cargo lambda watch` with a fresh signing key and data key in `work`, the store
    settings `store_env` and the mailer settings `mail_env` (mail_support.mail_env), waits until
    every function answers, yields the Service, and stops the whole process group afterwards
    (its log copied to artifacts/`log_name`)."""
    assert shutil.which("cargo-lambda"), "cargo-lambda is on PATH (make conformance adds .venv/bin)"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev_key.py"), str(work)], check=True,
        stdout=subprocess.DEVNULL,
    )
    data_key = _data_key(work)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    log = work / "watch.log"
    env = {
        **os.environ,
        **store_env,
        **mail_env,
        "AUTH_SIGNING_KEY": f"file:{work / 'signing-key.pem'}",
        "AUTH_PUBLIC_KEY": f"file:{work / 'signing-key.pub.pem'}",
        # What TOTP secrets are sealed under (without it the MFA endpoints answer 503).
        "AUTH_DATA_KEY": f"file:{data_key}",
        "AUTH_ISSUER": issuer,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_BCRYPT_COST": "4",
        # Every request of the suite comes from loopback, and schemathesis alone sends hundreds
        # of failing logins: one address's hourly ceiling would stop the suite, not an attacker.
        "AUTH_SOURCE_FAILURES_PER_HOUR": "1000000",
        # Likewise forgot-password requests (30 an hour from one address by default): beyond it
        # the answer is the same 202 and nothing is sent, which would look like a bug to the mail
        # tests and would follow from schemathesis' requests, not theirs. The per-account mail
        # throttle is left as it ships (test_email_recovery.py tests it).
        "AUTH_FORGOT_PER_SOURCE_HOUR": "1000000",
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            # --ignore-changes: an edit in the tree mid-run must not restart the functions
            # (a request in flight during a restart never gets an answer).
            ["cargo", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(base_url=issuer, issuer=issuer, audience=AUDIENCE, log=log, store=store,
                      store_env=dict(store_env), sqlite_path=_sqlite_path(store_env),
                      data_key=data_key)
    try:
        _wait_until_ready(proc, service)
        yield service
    finally:
        _stop_group(proc)
        shutil.copy(log, artifacts / log_name)


@pytest.fixture(scope="session")
def mailbox():
    """The SMTP server every watch service sends through (aiosmtpd on a free loopback port,
    requirements.txt), up before the first of them starts and stopped after the last: yields
    the mail_support.Mailbox of every message it accepted."""
    from mail_support import Mailbox, SmtpServer

    box = Mailbox()
    server = SmtpServer(box)
    server.start()
    try:
        yield box
    finally:
        server.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory, artifacts, mailbox) -> Service:
    """The service on SQLite: every test of the suite, and the OIDC tests' first store."""
    from mail_support import mail_env

    work = tmp_path_factory.mktemp("service")
    store_env = {"AUTH_STORE": f"sqlite:{work / 'users.db'}"}
    with _run_service(work, artifacts, "sqlite", store_env, "watch.log",
                      mail_env(mailbox)) as running:
        yield running


# What moto accepts, and nothing of the caller's own AWS settings: never a real account.
MOTO_REGION = "us-east-1"
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="session")
def moto(tmp_path_factory, artifacts) -> str:
    """moto_server taking one request at a time (scripts/moto_atomic.py, as scripts/with_moto.sh
    starts it) on a free loopback port; yields its endpoint URL."""
    work = tmp_path_factory.mktemp("moto")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = work / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "moto_atomic.py"), "127.0.0.1", str(port)],
            cwd=ROOT, env={**os.environ, **MOTO_CREDENTIALS}, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited ({proc.returncode}):\n"
                                   f"{log.read_text(errors='replace')}")
            try:
                if requests.get(f"{endpoint}/moto-api/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server never answered:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield endpoint
    finally:
        _stop_group(proc)
        shutil.copy(log, artifacts / "moto.log")


def create_table(endpoint: str, table: str) -> None:
    """The table as shared/src/store/dynamodb/mod.rs `create_table` makes it: one string hash
    key `username_key`, on demand, items expiring by their `expires_at`."""
    import boto3  # requirements-dev.txt (moto[server]); only the DynamoDB service needs it

    dynamodb = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name=MOTO_REGION,
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "username_key", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "username_key", "KeyType": "HASH"}],
    )
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )


def dynamo_store_env(endpoint: str) -> dict[str, str]:
    """A fresh table on moto at `endpoint`, and the environment that reaches it."""
    table = f"conformance-{uuid.uuid4().hex[:8]}"
    create_table(endpoint, table)
    return {
        "AUTH_STORE": f"dynamodb:{table}",
        "AWS_ENDPOINT_URL": endpoint,
        **MOTO_CREDENTIALS,
        "AWS_REGION": MOTO_REGION,
        "AWS_DEFAULT_REGION": MOTO_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def dynamo_service(tmp_path_factory, artifacts, moto, mailbox) -> Service:
    """The service on DynamoDB (a fresh table on moto): the OIDC tests' second store."""
    from mail_support import mail_env

    work = tmp_path_factory.mktemp("dynamo-service")
    with _run_service(work, artifacts, "dynamodb", dynamo_store_env(moto), "watch-dynamodb.log",
                      mail_env(mailbox)) as running:
        yield running


@pytest.fixture(scope="session", params=["sqlite", "dynamodb"])
def oidc_service(request) -> Service:
    """The service on each store in turn, for the OpenID Connect tests (session-scoped, so
    pytest runs every OIDC test on SQLite before it starts the DynamoDB service)."""
    return request.getfixturevalue({"sqlite": "service", "dynamodb": "dynamo_service"}[
        request.param])


@pytest.fixture(scope="session")
def store_service(oidc_service) -> Service:
    """The service on each store in turn, for the mail tests: `oidc_service` under another
    name, so its parametrisation (and pytest's grouping of each store's tests) is shared."""
    return oidc_service


@pytest.fixture(params=["sqlite", "dynamodb"])
def short_token_service(request, tmp_path_factory, artifacts, mailbox) -> Service:
    """A watch of its own, on each store, whose reset and verification tokens live
    mail_support.SHORT_TOKEN_SECONDS: the expiry test's, started for it and stopped after it (the
    shared services keep their tokens long, see mail_support.RESET_TOKEN_SECONDS). Its functions
    are the ones a shared watch has built by then, so it costs a start, not a build."""
    from mail_support import SHORT_TOKEN_SECONDS, mail_env

    store = request.param
    work = tmp_path_factory.mktemp(f"short-tokens-{store}")
    if store == "sqlite":
        store_env = {"AUTH_STORE": f"sqlite:{work / 'users.db'}"}
    else:
        store_env = dynamo_store_env(request.getfixturevalue("moto"))
    env = {**mail_env(mailbox, reset_token_seconds=SHORT_TOKEN_SECONDS),
           "AUTH_VERIFY_TOKEN_SECONDS": str(SHORT_TOKEN_SECONDS)}
    with _run_service(work, artifacts, store, store_env, f"watch-short-tokens-{store}.log",
                      env) as running:
        yield running


def register_user(service: Service, full_name: str = "Ada Lovelace") -> tuple[str, str, str]:
    """Registers a fresh account over HTTP and returns (username, password, full_name)."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    password = f"orbit-{uuid.uuid4().hex[:8]}-lantern-quartz"
    r = requests.post(
        service.url("/register"),
        json={"username": username, "password": password, "full_name": full_name},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return username, password, full_name


@pytest.fixture
def new_user(service: Service):
    """Registers a fresh account over HTTP and returns (username, password, full_name)."""

    def register(full_name: str = "Ada Lovelace") -> tuple[str, str, str]:
        return register_user(service, full_name)

    return register


@pytest.fixture
def oidc_user(oidc_service: Service):
    """`new_user` on the OIDC test's store."""

    def register(full_name: str = "Ada Lovelace") -> tuple[str, str, str]:
        return register_user(oidc_service, full_name)

    return register


# --- The OpenID Connect tests: a client's callback, registered clients, a browser -------------


class CallbackServer:
    """The relying party's side of the redirects: a loopback HTTP server answering every GET
    with a small HTML page ("signed in" on /callback, "signed out" on /signed-out) and keeping
    the path and query of each request it got."""

    def __init__(self):
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hits.append(self.path)
                title = "signed out" if self.path.startswith("/signed-out") else "signed in"
                body = (f"<!doctype html><html><head><title>{title}</title></head>"
                        f"<body><h1>{title}</h1></body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    @property
    def localhost_redirect_uri(self) -> str:
        return f"http://localhost:{self.port}/callback"

    @property
    def post_logout_redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/signed-out"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def callback() -> CallbackServer:
    server = CallbackServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oidc_clients(oidc_service: Service, callback: CallbackServer):
    """Registers, with the operator's CLI (`auth-admin client add`, built by the first call),
    two public clients (`spa`, `mobile`) and a confidential one (`webapp`) in the store of
    `oidc_service`, all coming back to the callback server."""
    from oidc_support import Clients, auth_admin

    uris = ["--redirect-uri", callback.redirect_uri,
            "--post-logout-redirect-uri", callback.post_logout_redirect_uri]
    spa = auth_admin(oidc_service, ROOT, "client", "add", "--id", "spa", *uris,
                     "--redirect-uri", callback.localhost_redirect_uri)
    mobile = auth_admin(oidc_service, ROOT, "client", "add", "--id", "mobile", *uris)
    webapp = auth_admin(oidc_service, ROOT, "client", "add", "--id", "webapp", *uris,
                        "--confidential")
    assert spa == {"client_id": "spa"}, spa
    assert mobile == {"client_id": "mobile"}, mobile
    assert webapp["client_id"] == "webapp" and webapp["client_secret"], webapp
    return Clients(spa="spa", mobile="mobile", webapp="webapp",
                   webapp_secret=webapp["client_secret"], redirect_uri=callback.redirect_uri,
                   localhost_redirect_uri=callback.localhost_redirect_uri,
                   post_logout_redirect_uri=callback.post_logout_redirect_uri)


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# As test_swagger_ui.py starts it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
]


@pytest.fixture
def chromium(monkeypatch):
    """Headless Chromium with a fresh profile (no cookies), its console logged (where it reports
    what a Content-Security-Policy blocked)."""
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    for tool in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), f"{tool} is installed (make conformance apt-gets it)"
    # Never let Selenium Manager look for (or download) a browser or driver.
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
