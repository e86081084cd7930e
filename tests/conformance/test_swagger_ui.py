"""A person's path through /docs, in headless Chromium: open Swagger UI, press Authorize, log in
with the OAuth2 password form, execute GET /me and read the user's name in the response.

The page loads Swagger UI from the local static server (`assets_url`), so no internet is needed.
A screenshot is left in target/conformance/swagger-ui-me.png.
"""

import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
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
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_authorize_with_the_password_flow_then_execute_me(service, browser, new_user, artifacts):
    username, password, full_name = new_user("Ada Lovelace")
    wait = WebDriverWait(browser, 60)

    browser.get(service.url("/docs"))
    authorize = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize")))
    assert "JWT auth API" in browser.find_element(By.CSS_SELECTOR, ".info .title").text

    # The Authorize dialog: log in through the OAuth2 password form (the token URL is /login).
    authorize.click()
    modal = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    oauth = next(
        c for c in modal.find_elements(By.CSS_SELECTOR, ".auth-container")
        if "OAuth2PasswordBearer" in c.text
    )
    oauth.find_element(By.ID, "oauth_username").send_keys(username)
    oauth.find_element(By.ID, "oauth_password").send_keys(password)
    oauth.find_element(By.CSS_SELECTOR, "button.modal-btn.authorize").click()
    # Swagger UI swaps the form for "Authorized" and a Logout button once /login answered 200.
    wait.until(lambda _: "Authorized" in oauth.text and oauth.find_elements(
        By.XPATH, ".//button[normalize-space()='Logout']"))
    assert not oauth.find_elements(By.CSS_SELECTOR, ".errors"), oauth.text
    modal.find_element(By.CSS_SELECTOR, "button.close-modal").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    # GET /me: expand it, execute, read the live response.
    operation = browser.find_element(By.ID, "operations-accounts-me")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    execute = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.execute"))
    execute.click()
    live = wait.until(lambda _: operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table tbody .response"))
    status = live.find_element(By.CSS_SELECTOR, ".response-col_status").text.strip()
    body = live.find_element(By.CSS_SELECTOR, ".response-col_description .microlight").text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", live)
    browser.save_screenshot(str(artifacts / "swagger-ui-me.png"))

    assert status == "200", body
    assert f'"username": "{username}"' in body
    assert f'"full_name": "{full_name}"' in body
    # The request Swagger UI sent carried the token it got from /login.
    curl = operation.find_element(By.CSS_SELECTOR, ".curl-command").text
    assert "Authorization: Bearer ey" in curl, curl
