"""/openapi.json is openapi.yaml, and /docs is a Swagger UI page pointing at it."""

from pathlib import Path

import requests
import yaml

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_openapi_json_is_the_yaml_description(service):
    r = requests.get(service.url("/openapi.json"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == yaml.safe_load(SPEC.read_text())


def test_docs_page_loads_swagger_ui_from_the_configured_assets(service, assets_url):
    r = requests.get(service.url("/docs"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert f'src="{assets_url}/swagger-ui-bundle.js"' in r.text
    assert 'new URL("openapi.json"' in r.text
    # The assets really are there for the browser.
    assert requests.get(f"{assets_url}/swagger-ui-bundle.js", timeout=30).status_code == 200

