"""The README's curl walkthrough, run by a shell exactly as written (register with JSON, log in
with the OAuth2 form that `curl -d` sends, /me with the token, the key set), against this
session's service; every `# {...}` output the README shows must be what the service answers.

Only the address (`localhost:9000`) and the account name are swapped, so the walkthrough does
not depend on what other tests registered.
"""

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", README.read_text(), re.S)
    for block in blocks:
        if all(s in block for s in ("/register", "/login", "/me", "Authorization: Bearer")):
            return block
    raise AssertionError("README.md has a shell block with the register/login/me curl commands")


def json_documents(text: str) -> list:
    """The JSON values a run printed back to back (curl -s adds no newline)."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(text, i)
        docs.append(value)
    return docs


def test_the_readme_walkthrough_works_as_written(service):
    assert shutil.which("curl"), "curl is installed"
    block = walkthrough()
    username = f"readme{uuid.uuid4().hex[:8]}"
    users = set(re.findall(r'"username":"([^"]+)"', block))
    assert len(users) == 1, f"one account in the walkthrough, got {users}"
    old = users.pop()
    script = re.sub(rf"\b{re.escape(old)}\b", username, block)
    script = script.replace("localhost:9000", service.base_url.removeprefix("http://"))

    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    printed = json_documents(out.stdout)
    shown = [json.loads(line[2:]) for line in script.splitlines() if line.startswith("# {")]
    assert shown, "the walkthrough shows its outputs"
    for expected in shown:
        assert expected in printed, f"README shows {expected}; the service printed {printed}"
    assert {"message": "User registered successfully"} in printed
    assert any(d.get("username") == username for d in printed if isinstance(d, dict))


def test_curl_without_a_token_gets_the_bearer_challenge(service):
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}",
         service.url("/me")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # RFC 6750 §3.1: no credentials, so a challenge without an error code.
    assert out.stdout == "401 Bearer"
