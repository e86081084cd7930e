"""/openapi.json is openapi.yaml, and /docs is a Swagger UI page pointing at it that loads
everything from the docs function itself: the vendored swagger-ui-dist files, which must be the
release tests/conformance/package.json pins (npm ci installs it, checked against the lock file's
integrity hash)."""

from pathlib import Path

import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE.parents[1] / "openapi.yaml"
NPM_PACKAGE = HERE / "node_modules" / "swagger-ui-dist"
VENDORED = HERE.parents[1] / "functions" / "docs" / "assets" / "swagger-ui-dist"
# What the page loads, and the type each is served with.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "init.js": "text/javascript; charset=utf-8",
}


def test_openapi_json_is_the_yaml_description(service):
    r = requests.get(service.url("/openapi.json"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == yaml.safe_load(SPEC.read_text())


def test_docs_page_loads_its_own_files_under_a_strict_policy(service):
    r = requests.get(service.url("/docs"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = [d.strip() for d in r.headers["content-security-policy"].split(";")]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                      "frame-ancestors 'none'"):
        assert directive in csp, csp
    assert '<script src="docs/swagger-ui-bundle.js"></script>' in r.text
    assert '<script src="docs/init.js"></script>' in r.text
    assert r.text.count("<script") == 2, r.text
    assert "//" not in r.text, "every URL is relative to the page"
    # The description's own list of files is the one served here.
    described = yaml.safe_load(SPEC.read_text())["paths"]["/docs/{asset}"]["get"]["parameters"]
    assert set(described[0]["schema"]["enum"]) == set(ASSETS)


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_file_is_served_with_its_type(service, name):
    r = requests.get(service.url(f"/docs/{name}"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == ASSETS[name]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "public, max-age=300"
    if (VENDORED / name).exists():
        assert r.content == (VENDORED / name).read_bytes()


@pytest.mark.parametrize("name", sorted(p.name for p in VENDORED.iterdir()))
def test_the_vendored_files_are_the_pinned_npm_release(name):
    assert (NPM_PACKAGE / "package.json").is_file(), (
        f"{NPM_PACKAGE} is missing: run `make conformance` (npm ci in tests/conformance)")
    assert (VENDORED / name).read_bytes() == (NPM_PACKAGE / name).read_bytes(), (
        f"functions/docs/assets/swagger-ui-dist/{name} differs from the npm package: see "
        "functions/docs/assets/README.md")


def test_unknown_files_and_other_methods_get_problems(service):
    r = requests.get(service.url("/docs/index.html"), timeout=30)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = requests.post(service.url("/docs/init.js"), timeout=30)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert r.headers["content-type"] == "application/problem+json"
