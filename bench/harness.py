#!/usr/bin/env python3
"""Benchmarks the release `bootstrap` binaries as Lambda would run them, and prints what Lambda's
REPORT lines would show.

For each function it serves the Lambda Runtime API (2018-06-01) on loopback, starts
target/release/<name> with AWS_LAMBDA_RUNTIME_API pointing at it and the environment Lambda
sets, and feeds it API Gateway HTTP API (v2) events one at a time:

  init      process start to its first GET /runtime/invocation/next (median of --cold-starts
            starts; Lambda's "Init Duration")
  first     the first invocation after init (what the request that caused a cold start pays on
            top of init)
  p50..p99  the following warm invocations, event handed over to response received (Lambda's
            "Duration")
  max RSS   VmHWM of the process, read just before it is stopped ("Max Memory Used", minus the
            sandbox's own overhead)
  zip       the binary deflated into a zip as `bootstrap`, as Lambda receives it

register and login do one bcrypt each, so they get fewer invocations; the time of the service's
hash alone at the same cost (shared/examples/bcrypt_time.rs) is printed beside them. login's
refresh grant ("login (refresh)", no bcrypt) is a chain of --invocations refreshes in the same
process, each presenting the refresh token the previous one answered, as a client must under
rotation. `me` is run with the access token of the last refresh (a valid token of an open session)
and without a token (the floor: no signature check, no store read), alternating in one series so
both paths see the same machine.

Users are created in a throwaway SQLite file with a throwaway key pair (scripts/dev_key.py).
With --backend aws the same runs use the deployed configuration instead, AUTH_STORE=dynamodb:TABLE
and AUTH_SIGNING_KEY=kms:KEY (no AUTH_PUBLIC_KEY, so me and jwks fetch the public key from KMS at
init, as the SAM template deploys them), against moto_server at $MOTO_ENDPOINT (scripts/with_moto.sh
starts one); the table and key are created here through the services' JSON APIs.
Output: a table, then one JSON line with every figure. Standard library only (the key script
needs the `cryptography` package of .venv/).

usage: python3 bench/harness.py [--backend sqlite|aws] [--signing kms|ssm] [--invocations N]
                                [--bcrypt-invocations N] [--cold-starts N] [--bcrypt-cost N] ... 
"""

import argparse
import base64
import hashlib
import hmac
import html
import json
import os
import re
import pathlib
import platform
import selectors
import shutil
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import zipfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import generate as fixtures  # noqa: E402  the one builder of API Gateway events

ROOT = pathlib.Path(__file__).resolve().parent.parent
API = "/2018-06-01/runtime"
PASSWORD = "velvet-tundra-marmalade-42"
HOST = "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com"
ISSUER = "https://auth.bench.example"
AUDIENCE = "bench-api"


class FunctionGone(Exception):
    """The process exited, or stopped answering, before the call completed."""


class RuntimeApi:
    """A single-threaded Runtime API server for one function process.

    The function drives it: it long-polls GET /invocation/next, then POSTs the result. Everything
    runs on the caller's thread with `select`, so nothing but the socket work sits between the
    timestamps and the bytes (no thread hand-offs, no HTTP framework).
    """

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.buffers = {}  # connection -> bytes received and not yet parsed
        self.waiting = None  # the connection parked on GET /next
        self.requests = []  # parsed (connection, method, path, body, time) not yet consumed
        self.proc = None
        self.init_error = None

    def close(self):
        for conn in list(self.buffers):
            conn.close()
        self.selector.close()
        self.listener.close()

    # -- HTTP plumbing ------------------------------------------------------------------------

    @staticmethod
    def _send(conn, status, body=b"", headers=()):
        reason = {200: "OK", 202: "Accepted", 404: "Not Found"}.get(status, "Error")
        head = ["HTTP/1.1 %d %s" % (status, reason), "Content-Length: %d" % len(body)]
        head += ["%s: %s" % kv for kv in headers]
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _pump(self, timeout):
        """Waits up to `timeout` for socket activity and parses every complete request."""
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                conn, _ = self.listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffers[conn] = b""
                self.selector.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                chunk = conn.recv(262144)
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(conn)
                self.buffers.pop(conn, None)
                if self.waiting is conn:
                    self.waiting = None
                conn.close()
                continue
            self.buffers[conn] += chunk
            self._parse(conn)

    def _parse(self, conn):
        buf = self.buffers[conn]
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            lines = buf[:end].decode("latin-1").split("\r\n")
            length, chunked = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                parsed = self._dechunk(buf, end + 4)
                if parsed is None:
                    break
                body, rest = parsed
                buf = buf[rest:]
            else:
                if len(buf) < end + 4 + length:
                    break
                body = buf[end + 4:end + 4 + length]
                buf = buf[end + 4 + length:]
            method, path = lines[0].split(" ")[:2]
            self.requests.append((conn, method, path, body, time.perf_counter()))
        self.buffers[conn] = buf

    @staticmethod
    def _dechunk(buf, pos):
        """(body, end offset) of a complete chunked body starting at `pos`, or None."""
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if buf[eol:eol + 4] == b"\r\n\r\n":
                    return body, eol + 4
                return None if trailer_end < 0 else (body, trailer_end + 4)
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2

    def _handle(self):
        """Answers what needs no decision (init errors, unknown paths); keeps the rest."""
        keep = []
        for conn, method, path, body, t in self.requests:
            if method == "GET" and path == API + "/invocation/next":
                self.waiting = conn
                keep.append(("next", None, None, t))
            elif method == "POST" and path == API + "/init/error":
                self.init_error = body.decode(errors="replace")
                self._send(conn, 202, b'{"status":"OK"}')
            elif method == "POST" and path.startswith(API + "/invocation/"):
                parts = path[len(API) + 1:].split("/")
                if len(parts) == 3 and parts[2] in ("response", "error"):
                    self._send(conn, 202, b'{"status":"OK"}')
                    keep.append((parts[2], parts[1], body, t))
                else:
                    self._send(conn, 404)
            else:
                self._send(conn, 404)
        self.requests = []
        return keep

    def _wait_for(self, want, timeout):
        """Pumps until an item of kind `want` (and request id, when given) arrives."""
        deadline = time.perf_counter() + timeout
        while True:
            for kind, rid, body, t in self._handle():
                if kind in want[0] and (want[1] is None or rid == want[1]):
                    return kind, body, t
            if self.proc.poll() is not None:
                raise FunctionGone("exited with status %s" % self.proc.returncode)
            if self.init_error is not None:
                raise FunctionGone("init error: %s" % self.init_error)
            left = deadline - time.perf_counter()
            if left <= 0:
                raise FunctionGone("no answer within %.0f s" % timeout)
            self._pump(min(left, 0.2))

    # -- The two things a benchmark does ------------------------------------------------------

    def wait_first_next(self, timeout):
        """Time at which the function, freshly started, first asked for an event."""
        return self._wait_for((("next",), None), timeout)[2]

    def invoke(self, event, timeout):
        """Hands `event` to the parked /next and returns (kind, response body, duration ms)."""
        if self.waiting is None:
            self._wait_for((("next",), None), timeout)
        rid = str(uuid.uuid4())
        payload = json.dumps(event).encode()
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        conn, self.waiting = self.waiting, None
        start = time.perf_counter()
        self._send(conn, 200, payload, (
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", rid),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn",
             "arn:aws:lambda:us-east-1:123456789012:function:bench"),
            ("Lambda-Runtime-Trace-Id",
             "Root=1-6745f3a1-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0"),
        ))
        kind, body, done = self._wait_for((("response", "error"), rid), timeout)
        return kind, body, (done - start) * 1000


# -- Events -----------------------------------------------------------------------------------

def http_api_event(method, path, headers=None, body=None, base64_body=False):
    """An API Gateway HTTP API (payload format 2.0) event for `method path`, built as the test
    fixtures are (tests/fixtures/generate.py), with a fresh request id and time."""
    headers = dict(headers or {})
    ctype = headers.pop("content-type", None)
    return fixtures.v2(method, path, ctype, body, headers, base64_body, host=HOST, fresh=True)


def register_event(username):
    body = json.dumps({"username": username, "password": PASSWORD, "full_name": "Bench User"})
    return http_api_event("POST", "/register", {"content-type": "application/json"}, body)


def token_request(body):
    # An OAuth2 token request is a form; HTTP APIs hand form bodies over base64-encoded.
    return http_api_event("POST", "/login", {"content-type": "application/x-www-form-urlencoded"},
                          body, base64_body=True)


def login_event(username, password=PASSWORD):
    return token_request("grant_type=password&username=%s&password=%s&scope="
                         % (username, password))


def refresh_event(previous):
    """The refresh grant presenting the refresh token of `previous`, the token response before it
    (a refresh token is URL-safe: it goes into the form as it is)."""
    refresh_token = json.loads(previous["body"])["refresh_token"]
    return token_request("grant_type=refresh_token&refresh_token=" + refresh_token)


def me_event(token):
    headers = {"authorization": "Bearer " + token} if token else {}
    return http_api_event("GET", "/me", headers)


def jwks_event():
    return http_api_event("GET", "/.well-known/jwks.json")


# -- Second factors: bench users with TOTP on, their password step, then the mfa-otp grant -------

# One secret for every bench user with TOTP: steps are recorded per account, so each of them
# may use the current step once.
TOTP_SECRET = bytes(range(20))
MFA_OTP = "urn%3Ajwt-auth%3Agrant-type%3Amfa-otp"


def totp_code(secret, t):
    """RFC 6238 (HMAC-SHA-1, 6 digits, 30 s), independently of the service's implementation."""
    mac = hmac.new(secret, struct.pack(">Q", int(t) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000)


def mfa_otp_event(previous):
    """The mfa-otp grant with the mfa_token of `previous` (the password step's 403)."""
    token = json.loads(previous["body"])["mfa_token"]
    return token_request("grant_type=%s&mfa_token=%s&otp=%s"
                         % (MFA_OTP, token, totp_code(TOTP_SECRET, time.time())))


def forgot_event(body):
    return http_api_event("POST", "/password/forgot", {"content-type": "application/json"},
                          json.dumps(body))


def verify_emails(env, users):
    """Gives `users` verified addresses behind the service's back (SQLite only)."""
    db = sqlite3.connect(env["AUTH_STORE"][len("sqlite:"):])
    for user in users:
        db.execute("UPDATE users SET email = ?, email_verified = 1 WHERE username_key = ?",
                   ("%s@bench.example" % user, user))
    db.commit()
    db.close()


def enable_totp(env, users):
    """Turns TOTP on for `users` behind the service's back (as confirming an enrolment would):
    the secret sealed as the service seals it, under the functions' AUTH_DATA_KEY."""
    store, key = env["AUTH_STORE"], env["AUTH_DATA_KEY"]
    endpoint = env.get("AWS_ENDPOINT_URL")
    if store.startswith("sqlite:"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        aes = AESGCM(pathlib.Path(key[len("file:"):]).read_bytes())
        db = sqlite3.connect(store[len("sqlite:"):])
        for user in users:
            (user_id,) = db.execute("SELECT user_id FROM users WHERE username_key = ?",
                                    (user,)).fetchone()
            nonce = os.urandom(12)
            sealed = "a1." + base64.b64encode(
                nonce + aes.encrypt(nonce, TOTP_SECRET, user_id.encode())).decode()
            db.execute("UPDATE users SET totp_secret = ?, totp_enabled = 1, totp_last_step = 0 "
                       "WHERE user_id = ?", (sealed, user_id))
        db.commit()
        db.close()
        return
    table = store[len("dynamodb:"):]
    ddb = "application/x-amz-json-1.0"
    for user in users:
        item = aws_call(endpoint, "dynamodb", "DynamoDB_20120810.GetItem",
                        {"TableName": table, "Key": {"username_key": {"S": user}},
                         "ConsistentRead": True}, ddb)["Item"]
        user_id = item["user_id"]["S"]
        blob = aws_call(endpoint, "kms", "TrentService.Encrypt",
                        {"KeyId": key[len("kms:"):],
                         "Plaintext": base64.b64encode(TOTP_SECRET).decode(),
                         "EncryptionContext": {"user_id": user_id}},
                        "application/x-amz-json-1.1")["CiphertextBlob"]
        aws_call(endpoint, "dynamodb", "DynamoDB_20120810.UpdateItem", {
            "TableName": table, "Key": {"username_key": {"S": user}},
            "UpdateExpression": "SET totp_secret = :s, totp_enabled = :t, totp_last_step = :z",
            "ExpressionAttributeValues": {":s": {"S": "k1." + blob}, ":t": {"BOOL": True},
                                          ":z": {"N": "0"}},
        }, ddb)


# -- The OpenID Connect provider: a public client, the hosted page, SSO codes, the exchange ------

CLIENT_ID = "bench-spa"
CALLBACK = "https://app.bench.example/callback"
# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
AUTHORIZATION = urllib.parse.urlencode({
    "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK,
    "scope": "openid profile", "state": "bench-state", "nonce": "bench-nonce",
    "code_challenge": CHALLENGE, "code_challenge_method": "S256",
})


def authorize_event(cookies=None):
    """GET /authorize of the client's request, with the browser's `cookies` (name=value)."""
    event = http_api_event("GET", "/authorize")
    event["rawQueryString"] = AUTHORIZATION
    if cookies:
        event["cookies"] = cookies
    return event


def cookie_pairs(payload):
    """The name=value of every cookie a response sets (HTTP API payload 2.0: `cookies`)."""
    return [c.split(";", 1)[0] for c in payload.get("cookies") or []]


def sign_in_event(username):
    """The hosted sign-in form posted by the browser that got the page `previous`."""
    def event(previous):
        body = previous["body"]
        fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body)
        form = [(n, html.unescape(v)) for n, v in fields]
        form += [("username", username), ("password", PASSWORD)]
        e = http_api_event("POST", "/authorize",
                           {"content-type": "application/x-www-form-urlencoded"},
                           urllib.parse.urlencode(form), base64_body=True)
        e["cookies"] = cookie_pairs(previous)
        return e
    return event


def sso_event(jar):
    """GET /authorize from the browser whose cookies are `jar`, after keeping the ones the
    previous response set (the sign-in's session cookie)."""
    def event(previous):
        for pair in cookie_pairs(previous):
            name, _, value = pair.partition("=")
            jar[name] = value
        return authorize_event(["%s=%s" % kv for kv in jar.items()])
    return event


def code_of(payload):
    location = payload["headers"]["location"]
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


def code_event(code):
    return token_request(urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER, "client_id": CLIENT_ID}))


def userinfo_event(token):
    return http_api_event("GET", "/userinfo", {"authorization": "Bearer " + token})


def register_client(target, env):
    """Registers the benchmark's public client with the operator CLI, on the functions' store."""
    full = dict(os.environ)
    full.update(env)
    full.update({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"})
    subprocess.run([str(target / "auth-admin"), "client", "add", "--id", CLIENT_ID,
                    "--redirect-uri", CALLBACK], env=full, check=True, stdout=subprocess.DEVNULL)


# -- AWS backends on moto -----------------------------------------------------------------------

def aws_call(endpoint, service, target, payload, content_type):
    """One JSON-protocol call (DynamoDB, KMS) to moto, which routes on the credential scope's
    service name and does not check signatures."""
    auth = ("AWS4-HMAC-SHA256 Credential=bench/20261126/us-east-1/%s/aws4_request, "
            "SignedHeaders=host, Signature=0" % service)
    req = urllib.request.Request(endpoint, data=json.dumps(payload).encode(), method="POST",
                                 headers={"X-Amz-Target": target, "Content-Type": content_type,
                                          "Authorization": auth})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def aws_backend(endpoint):
    """Creates the users table and the RSA signing key `template.yaml` declares; returns the
    functions' environment for them."""
    table = "bench-users-" + uuid.uuid4().hex[:8]
    aws_call(endpoint, "dynamodb", "DynamoDB_20120810.CreateTable", {
        "TableName": table, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "username_key", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "username_key", "KeyType": "HASH"}],
    }, "application/x-amz-json-1.0")
    key = aws_call(endpoint, "kms", "TrentService.CreateKey",
                   {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"},
                   "application/x-amz-json-1.1")["KeyMetadata"]["KeyId"]
    data_key = aws_call(endpoint, "kms", "TrentService.CreateKey",
                        {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"},
                        "application/x-amz-json-1.1")["KeyMetadata"]["KeyId"]
    return {
        "AUTH_STORE": "dynamodb:" + table,
        "AUTH_SIGNING_KEY": "kms:" + key,
        "AUTH_DATA_KEY": "kms:" + data_key,
        "AWS_ENDPOINT_URL": endpoint,
        # What Lambda hands a function for its role: temporary credentials in the environment.
        "AWS_ACCESS_KEY_ID": "ASIABENCHBENCHBENCH0",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_SESSION_TOKEN": "bench-session-token",
    }


def ssm_signing(endpoint, keys):
    """The signing mode for scale: the PEM private key stored as a SecureString under a
    symmetric KMS key, as the README's runbook puts it; returns the settings that name it, and
    the public key inline for the verifying functions."""
    key = aws_call(endpoint, "kms", "TrentService.CreateKey",
                   {"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"},
                   "application/x-amz-json-1.1")["KeyMetadata"]["KeyId"]
    name = "/bench-%s/signing-key" % uuid.uuid4().hex[:8]
    aws_call(endpoint, "ssm", "AmazonSSM.PutParameter", {
        "Name": name, "Type": "SecureString", "KeyId": key,
        "Value": (keys / "signing-key.pem").read_text(),
    }, "application/x-amz-json-1.1")
    pem = (keys / "signing-key.pub.pem").read_text()
    spki = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return {"AUTH_SIGNING_KEY": "ssm:" + name, "AUTH_PUBLIC_KEY": "spki:" + spki}


# -- Measuring ----------------------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
    return ordered[int(rank) - 1]


def peak_rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Function:
    """One started `bootstrap` process and its Runtime API."""

    def __init__(self, binary, name, env, log, timeout):
        self.api = RuntimeApi()
        self.timeout = timeout
        full_env = dict(env)
        full_env.update(lambda_env(name, binary, self.api.address, env))
        start = time.perf_counter()
        self.proc = subprocess.Popen([str(binary)], env=full_env, cwd=str(binary.parent),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.api.proc = self.proc
        try:
            self.init_ms = (self.api.wait_first_next(timeout) - start) * 1000
        except FunctionGone:
            self.stop()
            raise

    def invoke(self, event):
        kind, body, ms = self.api.invoke(event, self.timeout)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body.decode(errors="replace")
        return kind, payload, ms

    def stop(self):
        """Reads the peak RSS, then kills the process as Lambda does when it retires a sandbox."""
        rss = peak_rss_mb(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        self.api.close()
        return rss


def lambda_env(name, binary, api_address, env):
    """What Lambda's provided.al2023 runtime puts in a function's environment."""
    return {
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_FUNCTION_NAME": "auth-" + name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/auth-" + name,
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/26/[$LATEST]" + uuid.uuid4().hex,
        "AWS_LAMBDA_LOG_FORMAT": env.get("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        "AWS_LAMBDA_LOG_LEVEL": env.get("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(binary.parent),
        "LAMBDA_RUNTIME_DIR": str(binary.parent),
        "_HANDLER": "bootstrap",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
    }


def expect(function, kind, payload, status):
    got = payload.get("statusCode") if isinstance(payload, dict) else None
    if kind != "response" or got != status:
        raise SystemExit("%s: expected HTTP %d, got %s %s" % (function, status, kind,
                                                             json.dumps(payload)[:500]))
    return payload


def moto_calls(env, reset=False):
    """The calls moto counted under the functions' access key since the last reset, by
    X-Amz-Target (scripts/moto_atomic.py), or {} without moto; `reset` forgets them."""
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    url = "%s/__counts/%s" % (endpoint, env["AWS_ACCESS_KEY_ID"])
    req = urllib.request.Request(url, method="DELETE" if reset else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def round_trips(calls):
    """Mean calls per invocation to DynamoDB, KMS and SSM, and each operation's mean, from the
    per-invocation counts of `calls` (None without moto)."""
    if not calls or not any(calls):
        return None
    total = {}
    for counted in calls:
        for target, n in counted.items():
            total[target] = total.get(target, 0) + n
    mean = {t: round(n / len(calls), 2) for t, n in sorted(total.items())}
    service = lambda prefix: round(sum(n for t, n in mean.items() if t.startswith(prefix)), 2)
    return {"dynamodb": service("DynamoDB_20120810."), "kms": service("TrentService."),
            "ssm": service("AmazonSSM."),
            "operations": {t.split(".", 1)[1]: n for t, n in mean.items()}}


def run_function(name, binary, env, events, status, cold_starts, log, timeout):
    """Cold-starts the function `cold_starts` times (init only), then once more to send `events`.

    An event may also be a function of the previous response's payload (across batches), called
    before the clock starts: a chain such as refresh-token rotation needs the previous answer.
    On moto, each invocation's AWS calls are counted too (outside the timed window): results
    are (durations, payloads, calls) per batch."""
    inits = []
    for _ in range(max(0, cold_starts - 1)):
        f = Function(binary, name, env, log, timeout)
        inits.append(f.init_ms)
        f.stop()
    f = Function(binary, name, env, log, timeout)
    inits.append(f.init_ms)
    results, payload = [], None
    try:
        for batch, expected in zip(events, status):
            durations, payloads, calls = [], [], []
            for i, event in enumerate(batch):
                if callable(event):
                    event = event(payload)
                moto_calls(env, reset=True)
                kind, payload, ms = f.invoke(event)
                calls.append(moto_calls(env))
                expect(name, kind, payload, expected[i] if isinstance(expected, list) else expected)
                durations.append(ms)
                payloads.append(payload)
            results.append((durations, payloads, calls))
    finally:
        rss = f.stop()
    return inits, results, rss


def summarize(durations, inits=None, rss=None, first_is_cold=True, calls=None):
    """Lambda-style figures: `first` is the invocation right after init, the rest are warm;
    with `calls`, the warm invocations' round trips."""
    warm = durations[1:] if first_is_cold and len(durations) > 1 else durations
    out = {
        "invocations": len(durations),
        "first_ms": round(durations[0], 3) if first_is_cold else None,
        "p50_ms": round(percentile(warm, 50), 3),
        "p90_ms": round(percentile(warm, 90), 3),
        "p99_ms": round(percentile(warm, 99), 3),
        "max_ms": round(max(warm), 3),
        "mean_ms": round(statistics.fmean(warm), 3),
    }
    if inits:
        out["init_ms"] = round(statistics.median(inits), 2)
        out["init_min_ms"] = round(min(inits), 2)
        out["init_max_ms"] = round(max(inits), 2)
        out["cold_starts"] = len(inits)
    if rss is not None:
        out["max_rss_mb"] = round(rss, 1)
    if calls:
        trips = round_trips(calls[1:] if first_is_cold and len(calls) > 1 else calls)
        if trips:
            out["round_trips"] = trips
    return out


def zipped_size(binary):
    """Bytes of a deflated zip holding the binary as `bootstrap`, executable."""
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo("bootstrap", date_time=(2026, 11, 26, 0, 0, 0))
            info.external_attr = 0o755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(binary, "rb") as f:
                z.writestr(info, f.read())
        return tmp.tell()


def bcrypt_alone(binary, cost, n):
    if not binary.exists():
        return None
    out = subprocess.run([str(binary), str(cost), str(n)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "nproc": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(),
            # Other work on the machine skews every figure: recorded so a noisy run shows.
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def run_all(functions, binaries, env, a, users, log, rows, summary):
    """Runs each function in turn; authorize signs the first user in and collects SSO codes,
    login exchanges them after its own grants, me uses the token login's refresh chain got."""
    token, codes = None, []
    for name in functions:
        binary = binaries[name]
        if name == "register":
            batches, status = [[register_event(u) for u in users]], [201]
        elif name == "authorize":
            register_client(binaries[name].parent, env)
            # The sign-in page of a browser without a session, then one sign-in (bcrypt) from
            # the last page, then the SSO path: each GET with the session cookie answers a code.
            pages = [authorize_event() for _ in range(a.invocations)]
            jar = {}
            sso = [sso_event(jar)] * a.invocations
            batches = [pages, [sign_in_event(users[0])], sso]
            status = [200, 303, 303]
        elif name == "login":
            # Then the refresh grant, chained from the last password login's answer; then the
            # codes authorize issued (each within its minute); then the enumeration check:
            # unknown users and wrong passwords (one per user, so no account reaches the
            # lockout) must cost the same: one bcrypt each.
            # Last, the second factor: the other users get TOTP; each one's right password
            # answers mfa_required, and its mfa_token goes to the mfa-otp grant (timed apart).
            enable_totp(env, users[1:])
            batches = [[login_event(users[0]) for _ in users],
                       [refresh_event] * a.invocations,
                       [code_event(c) for c in codes],
                       [login_event("nobody-%d" % i, "wrong-" + PASSWORD) for i in range(len(users))],
                       [login_event(u, "wrong-" + PASSWORD) for u in users[1:]],
                       [e for u in users[1:] for e in (login_event(u), mfa_otp_event)]]
            status = [200, 200, 200, 401, 401, [403, 200] * (len(users) - 1)]
        elif name == "me":
            # With a token, without, and userinfo with the token, alternating in one series, so
            # whatever else the machine does weighs on every path alike.
            series = [me_event(token), me_event(None), userinfo_event(token)]
            batches = [[series[i % 3] for i in range(3 * a.invocations)]]
            status = [[[200, 401, 200][i % 3] for i in range(3 * a.invocations)]]
        elif name == "jwks":
            batches, status = [[jwks_event() for _ in range(a.invocations)]], [200]
        elif name == "account":
            # POST /password/forgot: an account with a verified address (a reset link is
            # stored and mailed) alternating with a name that is no account (nothing is): the
            # answers must take the same time (AUTH_FORGOT_MIN_MS holds both).
            verify_emails(env, users[1:])
            series = [e for i, u in enumerate(users[1:])
                      for e in (forgot_event({"username": u}),
                                forgot_event({"username": "nobody-%d" % i}))]
            batches, status = [series], [202]
        else:
            raise SystemExit("unknown function %r" % name)
        inits, results, rss = run_function(name, binary, env, batches, status,
                                           a.cold_starts, log, a.timeout)
        zipped = zipped_size(binary)
        if name == "me":
            series, payloads, calls = results[0]
            results = [(series[0::3], payloads[0::3], calls[0::3]),
                       (series[1::3], None, calls[1::3]), (series[2::3], None, calls[2::3])]
        figures = summarize(results[0][0], inits, rss, calls=results[0][2])
        figures.update({"binary_bytes": binary.stat().st_size, "zip_bytes": zipped})
        summary["functions"][name] = figures
        rows.append((name, figures))
        if name == "account":
            series, _, calls = results[0]
            for label, durations, counted in (("forgot (mailed)", series[0::2], calls[0::2]),
                                              ("forgot (no account)", series[1::2], calls[1::2])):
                forgot = summarize(durations, first_is_cold=False, calls=counted)
                summary["functions"][label] = forgot
                rows.append((label, forgot))
        if name == "authorize":
            codes = [code_of(p) for p in results[2][1]]
            for label, (durations, _, counted) in (("authorize (sign-in)", results[1]),
                                                   ("authorize (SSO code)", results[2])):
                figures = summarize(durations, first_is_cold=False, calls=counted)
                summary["functions"][label] = figures
                rows.append((label, figures))
        if name == "login":
            # The newest access token of the refreshed session: me then also shows that it is open.
            token = json.loads(results[1][1][-1]["body"])["access_token"]
            mfa_otp = (results[5][0][1::2], None, results[5][2][1::2])
            mfa_password = (results[5][0][0::2], None, results[5][2][0::2])
            labelled = [("login (refresh)", results[1]), ("login (unknown user)", results[3]),
                        ("login (wrong password)", results[4]),
                        ("login (TOTP password)", mfa_password), ("login (mfa-otp)", mfa_otp)]
            if codes:
                labelled.insert(1, ("login (code exchange)", results[2]))
            for label, (durations, _, counted) in labelled:
                figures = summarize(durations, first_is_cold=False, calls=counted)
                summary["functions"][label] = figures
                rows.append((label, figures))
        if name == "me":
            # The other invocations of the same series: all warm (the cold one carried a token).
            floor = summarize(results[1][0], first_is_cold=False, calls=results[1][2])
            summary["functions"]["me_no_token"] = floor
            rows.append(("me (no token)", floor))
            userinfo = summarize(results[2][0], first_is_cold=False, calls=results[2][2])
            summary["functions"]["userinfo"] = userinfo
            rows.append(("me (userinfo)", userinfo))


# -- Main ----------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-dir", default=str(ROOT / "target" / "release"),
                    help="where the release binaries are (default: target/release)")
    ap.add_argument("--functions", default=None,
                    help="comma-separated, in order (me needs login, login and authorize need "
                         "register; login exchanges the codes authorize issued)")
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "aws"],
                    help="sqlite + PEM key files (default), or dynamodb + kms on moto_server at "
                         "$MOTO_ENDPOINT")
    ap.add_argument("--signing", default="kms", choices=["kms", "ssm"],
                    help="with --backend aws: the RSA key in KMS (default), or its PEM as an SSM "
                         "SecureString (AUTH_SIGNING_KEY=ssm:, signing in process; the verifying "
                         "functions get AUTH_PUBLIC_KEY=spki:)")
    ap.add_argument("--invocations", type=int, default=1000,
                    help="invocations of me (each path), jwks and login's refresh grant "
                         "(default 1000)")
    ap.add_argument("--bcrypt-invocations", type=int, default=20,
                    help="invocations of register and login, one bcrypt each (default 20)")
    ap.add_argument("--cold-starts", type=int, default=5,
                    help="process starts per function for the init figure (default 5)")
    ap.add_argument("--bcrypt-cost", type=int,
                    default=int(os.environ.get("AUTH_BCRYPT_COST") or 12),
                    help="AUTH_BCRYPT_COST for the functions (default: $AUTH_BCRYPT_COST or 12)")
    ap.add_argument("--memory-mb", default="128", help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    ap.add_argument("--log-format", default="JSON", choices=["JSON", "Text"],
                    help="AWS_LAMBDA_LOG_FORMAT (default JSON)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    ap.add_argument("--key-python", default=None,
                    help="Python with `cryptography` for scripts/dev_key.py (default: .venv's)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (keys, db, logs)")
    ap.add_argument("--json-out", help="also write the JSON summary to this file")
    a = ap.parse_args()
    # The account function (forgot-password's timing) reads addresses set in SQLite.
    default = "register,authorize,login,me,jwks" + (",account" if a.backend == "sqlite" else "")
    functions = [f for f in (a.functions or default).split(",") if f]
    target = pathlib.Path(a.target_dir)
    binaries = {name: target / name for name in functions}
    missing = [str(b) for b in binaries.values() if not b.exists()]
    if missing:
        raise SystemExit("missing release binaries (run `cargo build --release --workspace`): "
                         + ", ".join(missing))
    if "me" in functions and "login" not in functions:
        raise SystemExit("me needs a token: include login (and register) in --functions")
    if "login" in functions and "register" not in functions:
        raise SystemExit("login needs a user: include register in --functions")

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="auth-bench-"))
    key_python = a.key_python or (str(ROOT / ".venv" / "bin" / "python")
                                  if (ROOT / ".venv" / "bin" / "python").exists()
                                  else sys.executable)
    subprocess.run([key_python, str(ROOT / "scripts" / "dev_key.py"), str(tmp / "keys")],
                   check=True, stdout=subprocess.DEVNULL)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_BCRYPT_COST": str(a.bcrypt_cost),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": a.memory_mb,
        "AWS_LAMBDA_LOG_FORMAT": a.log_format,
    }
    if a.backend == "aws":
        endpoint = os.environ.get("MOTO_ENDPOINT")
        if not endpoint:
            raise SystemExit("--backend aws needs MOTO_ENDPOINT (run it under scripts/with_moto.sh)")
        env.update(aws_backend(endpoint))
        if a.signing == "ssm":
            env.update(ssm_signing(endpoint, tmp / "keys"))
    else:
        env.update({
            "AUTH_STORE": "sqlite:%s" % (tmp / "users.db"),
            "AUTH_SIGNING_KEY": "file:%s" % (tmp / "keys" / "signing-key.pem"),
            "AUTH_PUBLIC_KEY": "file:%s" % (tmp / "keys" / "signing-key.pub.pem"),
            "AUTH_DATA_KEY": "file:%s" % (tmp / "keys" / "data-key"),
            "AUTH_MAILER": "file:%s" % (tmp / "mail"),
            # Every bench request comes from one address.
            "AUTH_FORGOT_PER_SOURCE_HOUR": "1000",
        })
    log_path = tmp / "functions.log"
    rows, summary = [], {"machine": machine(), "backend": a.backend, "signing": a.signing,
                         "bcrypt_cost": a.bcrypt_cost,
                         "memory_mb": int(a.memory_mb), "functions": {}}
    users = ["bench-user-%03d" % i for i in range(a.bcrypt_invocations)]
    with open(log_path, "ab") as log:
        try:
            run_all(functions, binaries, env, a, users, log, rows, summary)
        except BaseException:
            print("function logs, keys and users.db left in %s" % tmp, file=sys.stderr)
            raise

    if "register" in functions or "login" in functions:
        alone = bcrypt_alone(target / "examples" / "bcrypt_time", a.bcrypt_cost,
                             a.bcrypt_invocations)
        summary["bcrypt_alone"] = alone

    print_table(rows, summary, a)
    line = json.dumps(summary, separators=(",", ":"))
    print(line)
    if a.json_out:
        pathlib.Path(a.json_out).write_text(line + "\n")
    if a.keep:
        print("kept %s (keys, users.db, functions.log)" % tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp)


def print_table(rows, summary, a):
    m = summary["machine"]
    backend = ("SQLite + PEM key" if a.backend == "sqlite"
               else "DynamoDB + %s on moto_server (every store or key call is a loopback HTTP "
                    "round trip to moto)" % ("KMS signing" if a.signing == "kms"
                                            else "the key from an SSM SecureString"))
    print("Lambda-style REPORT figures for %s/*, %s: %s x%s (load %.2f at start), bcrypt cost "
          "%d, %s MB announced" % (a.target_dir, backend, m["cpu"], m["nproc"], m["loadavg_1m"],
                                   a.bcrypt_cost, a.memory_mb))
    head = ("function", "inv", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "RSS MB", "zip KB", "DDB", "KMS")
    fmt = "%-22s %5s %8s %9s %8s %8s %8s %8s %7s %7s %5s %5s"
    print(fmt % head)
    print("-" * 108)

    def cell(v, spec="%.2f"):
        return "-" if v is None else spec % v

    for name, f in rows:
        print(fmt % (name, f["invocations"], cell(f.get("init_ms")), cell(f.get("first_ms")),
                     cell(f["p50_ms"], "%.3f"), cell(f["p90_ms"], "%.3f"),
                     cell(f["p99_ms"], "%.3f"), cell(f["max_ms"], "%.3f"),
                     cell(f.get("max_rss_mb"), "%.1f"),
                     cell(f["zip_bytes"] / 1024 if "zip_bytes" in f else None, "%.0f"),
                     cell((f.get("round_trips") or {}).get("dynamodb"), "%.1f"),
                     cell((f.get("round_trips") or {}).get("kms"), "%.1f")))
    print("init: median of %d process starts; first: the invocation right after init; "
          "p50..max: the warm ones after it." % a.cold_starts)
    if a.backend == "aws":
        print("DDB, KMS: mean DynamoDB and KMS requests per warm invocation, counted by moto "
              "(scripts/moto_atomic.py); each row's operations are in the JSON line below.")
    alone = summary.get("bcrypt_alone")
    if alone:
        print("bcrypt alone (bcrypt_sha256, cost %d, median of %d): hash %.1f ms, verify %.1f ms"
              % (alone["cost"], alone["n"], alone["hash_median_ms"], alone["verify_median_ms"]))
        for name, op in (("register", "hash"), ("login", "verify")):
            f = summary["functions"].get(name)
            if f:
                bcrypt = alone[op + "_median_ms"]
                print("  %-8s p50 %.1f ms = bcrypt %s %.1f ms + %.1f ms of everything else "
                      "(%.3fx bcrypt)" % (name, f["p50_ms"], op, bcrypt, f["p50_ms"] - bcrypt,
                                          f["p50_ms"] / bcrypt))
    elif "register" in summary["functions"] or "login" in summary["functions"]:
        print("bcrypt alone: not measured (build it: cargo build --release -p auth-shared "
              "--example bcrypt_time)")
    refresh = summary["functions"].get("login (refresh)")
    if refresh:
        # Issue 11's budget on SQLite: one RS256 signature (~0.75 ms) and one session rotation.
        print("refresh grant (no bcrypt): p50 %.3f ms, p90 %.3f ms, p99 %.3f ms over %d chained "
              "refreshes%s" % (refresh["p50_ms"], refresh["p90_ms"], refresh["p99_ms"],
                               refresh["invocations"],
                               " (target p50 <= 1.5 ms)" if a.backend == "sqlite" else ""))
    me, floor = summary["functions"].get("me"), summary["functions"].get("me_no_token")
    if me and floor:
        print("me: token check + account and session lookup add %.3f ms at p50 over the "
              "no-token path" % (me["p50_ms"] - floor["p50_ms"]))
    userinfo = summary["functions"].get("userinfo")
    if me and userinfo:
        print("userinfo p50 %.3f ms vs me p50 %.3f ms (%+.3f ms; target within 0.05 ms)"
              % (userinfo["p50_ms"], me["p50_ms"], userinfo["p50_ms"] - me["p50_ms"]))
    page = summary["functions"].get("authorize")
    if page and floor:
        print("authorize: the sign-in page p50 %.3f ms, %+.3f ms over the no-token floor "
              "(target at most +1 ms)" % (page["p50_ms"], page["p50_ms"] - floor["p50_ms"]))
    exchange = summary["functions"].get("login (code exchange)")
    if exchange and refresh:
        print("code exchange p50 %.3f ms vs refresh p50 %.3f ms (%+.3f ms; target at most "
              "+0.5 ms; it signs two tokens, the access token and the id_token)"
              % (exchange["p50_ms"], refresh["p50_ms"], exchange["p50_ms"] - refresh["p50_ms"]))
    mailed = summary["functions"].get("forgot (mailed)")
    nobody = summary["functions"].get("forgot (no account)")
    if mailed and nobody:
        print("forgot: a mailed reset p50 %.1f ms vs no account p50 %.1f ms (%+.1f ms; both held "
              "to AUTH_FORGOT_MIN_MS)" % (mailed["p50_ms"], nobody["p50_ms"],
                                          mailed["p50_ms"] - nobody["p50_ms"]))
    mfa_otp = summary["functions"].get("login (mfa-otp)")
    if mfa_otp and refresh:
        print("mfa-otp grant p50 %.3f ms vs refresh p50 %.3f ms (%+.3f ms; target at most +1 ms; "
              "it opens the sealed secret: AES-GCM locally, a KMS Decrypt on AWS)"
              % (mfa_otp["p50_ms"], refresh["p50_ms"], mfa_otp["p50_ms"] - refresh["p50_ms"]))
    unknown = summary["functions"].get("login (unknown user)")
    wrong = summary["functions"].get("login (wrong password)")
    if unknown and wrong:
        print("enumeration: unknown user p50 %.1f ms vs wrong password p50 %.1f ms (%.1f%% apart)"
              % (unknown["p50_ms"], wrong["p50_ms"],
                 100 * abs(unknown["p50_ms"] - wrong["p50_ms"]) / wrong["p50_ms"]))


if __name__ == "__main__":
    main()
