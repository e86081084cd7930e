"""The service under `cargo lambda watch` on a free loopback port, with a temporary SQLite
database and signing key, shared by every conformance test of the session.

As in tests/e2e.rs, watch runs in its own process group, which is stopped (TERM, then KILL)
with everything it started when the session ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
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
    """Calls each of the seven functions once, so every build happens here, not inside a test."""
    probes = [
        ("GET", "/.well-known/jwks.json", 200),
        ("GET", "/openapi.json", 200),
        ("POST", "/register", 415),
        ("POST", "/login", 415),
        ("GET", "/me", 401),
        ("POST", "/logout", 400),
        ("PUT", "/me/password", 401),
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


@pytest.fixture(scope="session")
def service(tmp_path_factory, artifacts) -> Service:
    assert shutil.which("cargo-lambda"), "cargo-lambda is on PATH (make conformance adds .venv/bin)"
    work = tmp_path_factory.mktemp("service")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev_key.py"), str(work)], check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    log = work / "watch.log"
    env = {
        **os.environ,
        "AUTH_STORE": f"sqlite:{work / 'users.db'}",
        "AUTH_SIGNING_KEY": f"file:{work / 'signing-key.pem'}",
        "AUTH_PUBLIC_KEY": f"file:{work / 'signing-key.pub.pem'}",
        "AUTH_ISSUER": issuer,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_BCRYPT_COST": "4",
        # Every request of the suite comes from loopback, and schemathesis alone sends hundreds
        # of failing logins: one address's hourly ceiling would stop the suite, not an attacker.
        "AUTH_SOURCE_FAILURES_PER_HOUR": "1000000",
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
    service = Service(base_url=issuer, issuer=issuer, audience=AUDIENCE, log=log)
    try:
        _wait_until_ready(proc, service)
        yield service
    finally:
        _stop_group(proc)
        shutil.copy(log, artifacts / "watch.log")


@pytest.fixture
def new_user(service: Service):
    """Registers a fresh account over HTTP and returns (username, password, full_name)."""

    def register(full_name: str = "Ada Lovelace") -> tuple[str, str, str]:
        username = f"user-{uuid.uuid4().hex[:12]}"
        password = f"orbit-{uuid.uuid4().hex[:8]}-lantern-quartz"
        r = requests.post(
            service.url("/register"),
            json={"username": username, "password": password, "full_name": full_name},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        return username, password, full_name

    return register
