"""A person's path through /docs, in headless Chromium: open Swagger UI, press Authorize, log in
with the OAuth2 password form, execute GET /me and read the user's name in the response; then
change the password with PUT /me/password, authorize again with the new one and delete the account
with DELETE /me.

Along the way: Swagger UI keeps neither the password nor the token in the browser's storage, the
page loads nothing from another origin (the docs function serves Swagger UI's files itself, so no
internet is needed), and its Content-Security-Policy blocks nothing Swagger UI does.
Screenshots are left in target/conformance/swagger-ui-*.png.
"""

import json
import shutil
import tempfile
import uuid

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
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
def browser(monkeypatch):
    for tool in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), f"{tool} is installed (make conformance apt-gets it)"
    # Never let Selenium Manager look for (or download) a browser or driver.
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # The console, where Chromium reports what the Content-Security-Policy blocked.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_docs(browser, service):
    browser.get(service.url("/docs"))
    WebDriverWait(browser, 60).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize")))
    assert "JWT auth API" in browser.find_element(By.CSS_SELECTOR, ".info .title").text


def authorize(browser, username, password):
    """The Authorize dialog: log in through the OAuth2 password form (the token URL is /login),
    logging out first if the page holds a token already."""
    wait = WebDriverWait(browser, 60)
    browser.find_element(By.CSS_SELECTOR, ".scheme-container button.authorize").click()
    modal = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    oauth = next(
        c for c in modal.find_elements(By.CSS_SELECTOR, ".auth-container")
        if "OAuth2PasswordBearer" in c.text
    )
    logout = oauth.find_elements(By.XPATH, ".//button[normalize-space()='Logout']")
    if logout:
        logout[0].click()
    wait.until(lambda _: oauth.find_elements(By.ID, "oauth_username"))
    oauth.find_element(By.ID, "oauth_username").send_keys(username)
    oauth.find_element(By.ID, "oauth_password").send_keys(password)
    oauth.find_element(By.CSS_SELECTOR, "button.modal-btn.authorize").click()
    # Swagger UI swaps the form for "Authorized" and a Logout button once /login answered 200.
    wait.until(lambda _: "Authorized" in oauth.text and oauth.find_elements(
        By.XPATH, ".//button[normalize-space()='Logout']"))
    assert not oauth.find_elements(By.CSS_SELECTOR, ".errors"), oauth.text
    modal.find_element(By.CSS_SELECTOR, "button.close-modal").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    # Swagger UI's authorization state (the password form, the token) stays in the page.
    assert password not in browser_storage(browser)


def browser_storage(browser) -> str:
    """Every key and value of the page's localStorage and sessionStorage, as one string."""
    return browser.execute_script(
        "const dump = s => Object.keys(s).map(k => [k, s.getItem(k)]);"
        "return JSON.stringify([dump(window.localStorage), dump(window.sessionStorage)]);")


def assert_the_page_kept_to_its_origin(browser, service):
    """Everything the page loaded or requested came from the service, the scripts from files
    (none inline), and the console reports no Content-Security-Policy violation."""
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert service.url("/docs/swagger-ui-bundle.js") in loaded, loaded
    assert service.url("/openapi.json") in loaded, loaded
    elsewhere = [url for url in loaded if not url.startswith(service.url("/"))]
    assert not elsewhere, elsewhere
    scripts = browser.execute_script(
        "return [...document.scripts].map(s => [s.src, s.textContent.trim()])")
    assert scripts == [[service.url("/docs/swagger-ui-bundle.js"), ""],
                       [service.url("/docs/init.js"), ""]], scripts
    console = [e["message"] for e in browser.get_log("browser")]
    blocked = [m for m in console if "Content Security Policy" in m]
    assert not blocked, blocked


def execute(browser, operation_id, body=None, screenshot=None):
    """Expands the operation (if it is not yet), puts `body` (JSON) into its request body editor,
    presses Execute and returns the live response's status, its body as shown, and the curl
    command Swagger UI shows for the request it sent. `screenshot`: where to save the page."""
    wait = WebDriverWait(browser, 60)
    operation = browser.find_element(By.ID, f"operations-accounts-{operation_id}")
    if "is-open" not in operation.get_attribute("class"):
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    execute_button = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.execute"))
    if body is not None:
        editor = operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
        editor.send_keys(Keys.CONTROL, "a")
        editor.send_keys(Keys.DELETE)
        editor.send_keys(json.dumps(body))
        assert editor.get_attribute("value") == json.dumps(body)
    # A response already shown (an earlier Execute) is cleared first, so the one read is new.
    clear = operation.find_elements(By.CSS_SELECTOR, "button.btn-clear")
    if clear:
        clear[0].click()
        wait.until(lambda _: not operation.find_elements(By.CSS_SELECTOR, ".live-responses-table"))
    execute_button.click()
    live = wait.until(lambda _: operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table tbody .response"))
    status = live.find_element(By.CSS_SELECTOR, ".response-col_status").text.strip()
    shown = live.find_elements(By.CSS_SELECTOR, ".response-col_description .microlight")
    text = shown[0].text if shown else ""
    if screenshot:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", live)
        browser.save_screenshot(str(screenshot))
    curl = operation.find_element(By.CSS_SELECTOR, ".curl-command").text
    return status, text, curl


def test_authorize_with_the_password_flow_then_execute_me(service, browser, new_user, artifacts):
    username, password, full_name = new_user("Ada Lovelace")
    open_docs(browser, service)
    authorize(browser, username, password)

    # GET /me: expand it, execute, read the live response.
    status, body, curl = execute(browser, "me", screenshot=artifacts / "swagger-ui-me.png")

    assert status == "200", body
    assert f'"username": "{username}"' in body
    assert f'"full_name": "{full_name}"' in body
    # The request Swagger UI sent carried the token it got from /login ...
    assert "Authorization: Bearer ey" in curl, curl
    token = curl.split("Authorization: Bearer ", 1)[1].split("'")[0]
    # ... which, like the password, is in no storage of the browser.
    storage = browser_storage(browser)
    assert password not in storage and token not in storage, storage
    assert_the_page_kept_to_its_origin(browser, service)

    # Nothing was kept: a reload starts logged out.
    open_docs(browser, service)
    status, body, _ = execute(browser, "me")
    assert status == "401", body


def test_after_authorize_change_the_password_then_delete_the_account(
        service, browser, new_user, artifacts):
    username, password, _ = new_user("Grace Hopper")
    new_password = f"tangerine-{uuid.uuid4().hex[:8]}-harbour-lamp"
    open_docs(browser, service)
    authorize(browser, username, password)

    # PUT /me/password with the current and the new password: a new session comes back.
    status, body, curl = execute(
        browser, "changePassword", {"current_password": password, "new_password": new_password},
        screenshot=artifacts / "swagger-ui-change-password.png")
    assert status == "200", body
    answer = json.loads(body)
    assert answer["token_type"] == "bearer" and answer["refresh_token"], answer
    assert "Authorization: Bearer ey" in curl, curl
    # Every session before the change has ended, the one Swagger UI holds included ...
    status, body, _ = execute(browser, "me")
    assert status == "401", body
    # ... while the new one opens /me, and the old password no longer logs in.
    me = requests.get(service.url("/me"), timeout=30,
                      headers={"Authorization": f"Bearer {answer['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == username, me.text
    old = requests.post(service.url("/login"), data={"username": username, "password": password},
                        timeout=30)
    assert old.status_code == 401, old.text

    # Authorize again, with the new password, and delete the account.
    authorize(browser, username, new_password)
    status, body, curl = execute(browser, "deleteAccount", {"password": new_password},
                                 screenshot=artifacts / "swagger-ui-delete-account.png")
    assert status == "204", body
    assert "-X 'DELETE'" in curl and "Authorization: Bearer ey" in curl, curl
    assert new_password in curl, curl
    # The account is gone: the new password logs in no more, the page's token opens nothing.
    gone = requests.post(service.url("/login"),
                         data={"username": username, "password": new_password}, timeout=30)
    assert gone.status_code == 401, gone.text
    status, body, _ = execute(browser, "me")
    assert status == "401", body
    assert new_password not in browser_storage(browser)
    assert_the_page_kept_to_its_origin(browser, service)
