"""schemathesis against openapi.yaml: every check, every phase (examples, coverage, fuzzing and
the stateful phase that follows the links register -> login -> refresh -> me -> logout and
login -> change password -> me -> delete account), a fixed seed and a bounded number of examples.
Any response the description does not allow fails the run."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE.parents[1] / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations_and_links(spec: dict) -> tuple[int, list[tuple[str, str]]]:
    """How many operations the description has, and its links as (source, target) operation ids,
    so the run is checked against the description rather than a count written here."""
    operations = [op for item in spec["paths"].values()
                  for method, op in item.items() if method in METHODS]
    links = [(op["operationId"], link["operationId"]) for op in operations
             for response in op["responses"].values()
             for link in response.get("links", {}).values()]
    return len(operations), links


def schemathesis(spec: Path, service, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cli = shutil.which("schemathesis")
    assert cli, "schemathesis is installed (make conformance installs it)"
    return subprocess.run(
        [
            cli, "--config-file", str(HERE / "schemathesis.toml"),
            "run", str(spec),
            "--url", service.base_url,
            *args,
        ],
        # Run outside the watched tree: nothing schemathesis writes may land in the repository.
        cwd=cwd, capture_output=True, text=True, timeout=1800,
        env={
            "NO_COLOR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": os.environ["PATH"],
            "HOME": str(cwd),
            "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
        },
    )


def successes(service) -> tuple[int, int]:
    """How many password changes and account deletions the service has logged so far."""
    log = service.log_text()
    return log.count(" password changed "), log.count(" account deleted ")


def test_the_description_matches_every_response(service, artifacts, tmp_path):
    junit = artifacts / "schemathesis-junit.xml"
    before = successes(service)
    out = schemathesis(
        SPEC, service, tmp_path,
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--report", "junit", "--report-junit-path", str(junit),
    )
    report = out.stdout + out.stderr
    (artifacts / "schemathesis.txt").write_text(report)
    assert out.returncode == 0, report[-20000:]
    # Every operation was tested, every phase passed, and the stateful phase followed every link
    # (register -> login -> refresh -> me -> logout, login -> change password -> me -> delete
    # account, login -> delete account).
    operations, links = operations_and_links(yaml.safe_load(SPEC.read_text()))
    walk = {("register", "login"), ("login", "login"), ("login", "me"), ("login", "logout"),
            ("login", "changePassword"), ("login", "deleteAccount"), ("changePassword", "me"),
            ("changePassword", "deleteAccount")}
    assert walk <= set(links), links
    assert re.search(rf"Tested:\s+{operations}\n", report), report[-5000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"\u2705 {phase}" in report, report[-5000:]
    n = len(links)
    assert re.search(rf"API Links:\s+{n} covered / {n} selected / {n} total", report), (
        report[-5000:])
    # The operations that end sessions were not only refused: passwords were changed and
    # accounts deleted (the hooks keep the signed-up account out of it).
    changed, deleted = (after - earlier for after, earlier in zip(successes(service), before))
    assert changed > 0 and deleted > 0, (changed, deleted)


def test_a_response_missing_from_the_description_fails_the_run(service, tmp_path):
    """The harness is not vacuous: drop the 409 of POST /register from a copy of the description
    and the documented example (registered already) must be reported."""
    spec = yaml.safe_load(SPEC.read_text())
    del spec["paths"]["/register"]["post"]["responses"]["409"]
    partial = tmp_path / "openapi-without-409.yaml"
    partial.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = schemathesis(
        partial, service, tmp_path,
        "--checks", "status_code_conformance",
        "--include-operation-id", "register",
        "--phases", "examples",
    )
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert "ST103 Undocumented status code" in report and "Received: 409" in report, report
