"""The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
by Selenium) against the local stack: every step through the pages, as an operator would.

Skipped, saying why, where Chromium or its driver is not installed (`.ci/run` installs both).
With GATEKEY_SCREENSHOTS=1 the pages are saved to docs/console/*.png for docs/console.md."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from gatekey_cli.api import AdminClient
from support.constants import REGION, ROOT
from support.stack import E2E_AUTHORIZER_TTL, E2E_STATUS_TTL, LocalStack

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium: apt-get install chromium chromium-driver (as .ci/run does)",
)
if CHROMIUM and CHROMEDRIVER:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()
SCREENSHOTS = ROOT / "docs" / "console"
# Offline and quiet: no sandbox (CI runs as root), no GPU, no QUIC, no first-run, no
# background fetches, no component updates, no sync; a fresh profile each run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
DELIVERY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:billing-sync-AbCdEf"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="gatekey-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        # The driver Debian ships beside its Chromium: Selenium Manager downloads nothing.
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.set_script_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


def console_origin(stack: LocalStack) -> str:
    parts = urlsplit(stack.console)
    return f"{parts.scheme}://{parts.netloc}"


def wait_for(driver: WebDriver, css: str) -> Any:
    return WebDriverWait(driver, 30).until(
        shown.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def submit(driver: WebDriver, form_css: str, **fields: str) -> None:
    """Fill a form's fields as a person types, then press its button."""
    form = driver.find_element(By.CSS_SELECTOR, form_css)
    for name, value in fields.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    old = driver.find_element(By.TAG_NAME, "html")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 30).until(shown.staleness_of(old))


def copy(driver: WebDriver, ident: str) -> str:
    """Press the copy button of #ident and read back what reached the clipboard."""
    driver.find_element(By.CSS_SELECTOR, f'button[data-copy="{ident}"]').click()
    WebDriverWait(driver, 10).until(
        shown.text_to_be_present_in_element((By.ID, f"{ident}-status"), "Copied")
    )
    script = (
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('unreadable: ' + e));"
    )
    return str(driver.execute_async_script(script))


def accessible(driver: WebDriver, page: str) -> None:
    """axe-core (vendored, injected here) finds no serious or critical violation."""
    driver.execute_script(AXE)
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then((r) => done(r.violations), (e) => done([{id: 'axe', impact: 'critical',"
        " help: String(e), nodes: []}]));"
    )
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(str(n.get("target")) for n in v["nodes"][:3])
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], page


def screenshot(driver: WebDriver, name: str) -> None:
    if os.environ.get("GATEKEY_SCREENSHOTS") != "1":
        return
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, max(height, 600) + 140)  # the window's frame, not the page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1280, 900)


def whoami(stack: LocalStack, client_id: str, secret: str) -> requests.Response:
    headers = {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
    return requests.get(f"{stack.url}/demo/whoami", headers=headers, timeout=10)


@pytest.fixture(scope="module")
def seeded(stack: LocalStack) -> None:
    """A few tokens of every kind, so the pages have something to show."""
    # Signed with the credentials the stack accepts (those it was started with).
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    api = AdminClient(stack.url, session)
    base = "/admin/service-tokens"
    specs: list[dict[str, Any]] = [
        {"name": "billing-sync", "owner": "billing@example.com", "duration": "60d",
         "rotation": {"mode": "auto", "delivery_secret_arn": DELIVERY_ARN}},
        {"name": "nightly-backup", "owner": "ops@example.com", "duration": "45d",
         "routes": ["POST /backups/*"], "scopes": ["backup:write"]},
        {"name": "metrics-push", "owner": "data@example.com", "duration": "80d"},
        {"name": "legacy-importer", "owner": "ops@example.com", "duration": "12d"},
        {"name": "partner-feed", "owner": "partners@example.com", "duration": "1y"},
        {"name": "ci-deploy", "owner": "ci@example.com", "duration": "20d",
         "routes": ["POST /deploys", "GET /deploys/*"], "scopes": ["deploy"]},
    ]  # fmt: skip
    made = {spec["name"]: api.call("POST", base, spec)["client_id"] for spec in specs}
    api.call("PATCH", f"{base}/{made['metrics-push']}", {"enabled": False})
    api.call("POST", f"{base}/{made['legacy-importer']}/revoke")
    # The lifecycle run: ci-deploy is within 30 days of its expiry, so it is reminded.
    ran = requests.post(f"{stack.url}/_local/schedules/LifecycleFunction", timeout=60)
    assert ran.status_code == 200, ran.text


def test_create_copy_call_rotate_revoke_through_the_pages(
    stack: LocalStack, browser: WebDriver, seeded: None
) -> None:
    started = time.monotonic()
    origin = console_origin(stack)
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    # GIVEN the URL the local stack printed: its run token becomes a cookie, the URL drops it
    browser.get(stack.console)
    wait_for(browser, "#tokens")
    assert browser.current_url == f"{origin}/"
    assert "billing-sync" in browser.find_element(By.ID, "tokens").text
    accessible(browser, "tokens")
    screenshot(browser, "tokens")

    # WHEN a token is created through the form
    browser.find_element(By.LINK_TEXT, "Create a token").click()
    wait_for(browser, "form#create")
    accessible(browser, "create")
    screenshot(browser, "create")
    submit(browser, "form#create", name="browser-bot", owner="me@example.com", scopes="read write")
    wait_for(browser, "#reveal")
    client_id = browser.find_element(By.ID, "reveal-client-id").get_attribute("value") or ""
    # THEN the secret is shown once, and the copy button puts it on the clipboard
    secret = copy(browser, "reveal-client-secret")
    assert secret.startswith("gks_")
    assert secret == browser.find_element(By.ID, "reveal-client-secret").get_attribute("value")
    assert copy(browser, "reveal-client-id") == client_id
    assert f"Gatekey-Client-Secret: {secret}" in copy(browser, "reveal-curl")
    accessible(browser, "token with its secret")
    screenshot(browser, "created")
    # AND it calls the demo route
    answer = whoami(stack, client_id, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == client_id
    # AND a reload shows it no more
    browser.refresh()
    wait_for(browser, "#fields")
    assert browser.find_elements(By.ID, "reveal") == []
    assert secret not in browser.page_source

    # WHEN it is rotated with a grace
    submit(browser, 'form[action$="/rotate"]', grace="1h")
    wait_for(browser, "#reveal")
    rotated = copy(browser, "reveal-client-secret")
    assert rotated.startswith("gks_")
    assert rotated != secret
    # THEN the new secret works, and the old one too within its grace
    assert whoami(stack, client_id, rotated).status_code == 200
    assert whoami(stack, client_id, secret).status_code == 200
    browser.refresh()
    wait_for(browser, "#fields")
    assert rotated not in browser.page_source
    assert "rotated" in browser.find_element(By.ID, "audit").text

    # WHEN revoking is not confirmed with the token's name, nothing is revoked
    submit(browser, 'form[action$="/revoke"]', confirm="browser-bo")
    assert "type the token's name" in browser.find_element(By.CSS_SELECTOR, ".error").text
    assert whoami(stack, client_id, rotated).status_code == 200
    # WHEN it is confirmed
    submit(browser, 'form[action$="/revoke"]', confirm="browser-bot")
    assert "Token revoked." in wait_for(browser, ".notice").text
    assert "revoked" in browser.find_element(By.CSS_SELECTOR, "#fields .badge").text
    accessible(browser, "revoked token")
    # THEN the demo route refuses it within the revocation bound
    deadline = time.monotonic() + E2E_STATUS_TTL + E2E_AUTHORIZER_TTL + 5
    while whoami(stack, client_id, rotated).status_code != 403:
        assert time.monotonic() < deadline, "still allowed after the revocation bound"
        time.sleep(0.2)
    browser.refresh()
    wait_for(browser, "#audit")
    assert secret not in browser.page_source
    assert rotated not in browser.page_source
    print(f"\nconsole lifecycle through the browser: {time.monotonic() - started:.1f} s")


def test_the_other_pages_are_accessible_and_filter(
    stack: LocalStack, browser: WebDriver, seeded: None
) -> None:
    origin = console_origin(stack)
    browser.get(stack.console)
    wait_for(browser, "#tokens")
    # Filters: by state, owner and name, from the form.
    browser.get(f"{origin}/?state=disabled")
    rows = browser.find_elements(By.CSS_SELECTOR, "#tokens tbody tr")
    assert rows
    assert all("disabled" in row.text for row in rows)
    browser.get(f"{origin}/?owner=ops%40example.com&sort=-expiry")
    assert "nightly-backup" in browser.find_element(By.ID, "tokens").text
    accessible(browser, "filtered tokens")
    browser.get(f"{origin}/glance")
    wait_for(browser, "#timeline")
    assert int(browser.find_element(By.ID, "count-revoked").text) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline g.mark")
    accessible(browser, "at a glance")
    screenshot(browser, "glance")
    browser.find_element(By.LINK_TEXT, "ci-deploy").click()
    wait_for(browser, "#audit")
    assert "POST /deploys" in browser.find_element(By.ID, "routes").text
    assert "reminded" in browser.find_element(By.ID, "notices").text
    accessible(browser, "token")
    screenshot(browser, "token")
