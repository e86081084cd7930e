"""The README's curl walkthrough, run by a shell exactly as written (register with JSON, log in
with the OAuth2 form that `curl -d` sends, /me with the token, the key set), then the curl blocks
that follow it in the same order, in the same shell (refresh and logouts, password change,
deletion), against this session's service; every `# {...}` output the README shows must be what
the service answers (a value shown as a placeholder, `eyJ…` or `<the next one>`, only has to be
there), and so must every `# 204`-style status code.

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


def shell_blocks() -> list[str]:
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", README.read_text(), re.S)


def walkthrough() -> str:
    for block in shell_blocks():
        if all(s in block for s in ("/register", "/login", "/me", "Authorization: Bearer")):
            return block
    raise AssertionError("README.md has a shell block with the register/login/me curl commands")


def follow_ups() -> list[str]:
    """The shell blocks right after the walkthrough that curl the local service, in order."""
    blocks = shell_blocks()
    later = []
    for block in blocks[blocks.index(walkthrough()) + 1:]:
        if "curl " not in block or "localhost:9000" not in block:
            break
        later.append(block)
    return later


def placeholder(value) -> bool:
    return isinstance(value, str) and ("…" in value or value.startswith("<"))


def shows(expected, printed: list) -> bool:
    """Whether a printed document is the one the README shows, placeholders aside."""
    if not any(placeholder(v) for v in expected.values()):
        return expected in printed
    return any(
        isinstance(doc, dict) and doc.keys() == expected.keys()
        and all(placeholder(v) or doc[k] == v for k, v in expected.items())
        for doc in printed
    )


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
    later = follow_ups()
    assert any("/me/password" in b for b in later) and any("DELETE" in b for b in later), (
        "the README shows a password change and a deletion after the walkthrough"
    )
    username = f"readme{uuid.uuid4().hex[:8]}"
    users = set(re.findall(r'"username":"([^"]+)"', block))
    assert len(users) == 1, f"one account in the walkthrough, got {users}"
    old = users.pop()
    script = re.sub(rf"\b{re.escape(old)}\b", username, "\n".join([block, *later]))
    script = script.replace("localhost:9000", service.base_url.removeprefix("http://"))

    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    printed = json_documents(out.stdout)
    shown = [json.loads(line[2:]) for line in script.splitlines() if line.startswith("# {")]
    assert shown, "the walkthrough shows its outputs"
    for expected in shown:
        assert shows(expected, printed), f"README shows {expected}; the service printed {printed}"
    codes = [int(line[2:]) for line in script.splitlines() if re.fullmatch(r"# \d{3}", line)]
    assert 204 in codes, "the deletion shows its 204"
    for code in codes:
        assert code in printed, f"README shows {code}; the service printed {printed}"
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
