"""The issue's journey in a real browser: a new user signs in, deploys, waits for ready on My
Instances, reveals the default key, generates a second key and copies its secret from the dialog,
calls the gateway with it through the openai SDK, rolls it, revokes the first with a
confirmation, sees the usage of the calls on the instance's page, stops the instance and sees
every key revoked. Then Webhooks: add one (its secret once), test it, see its deliveries.

buddy runs as `make run` runs it (`tests/console_pages/browser.py`). Every page visited is scanned for
secrets: a whole secret is only ever in the dialog of the one response that shows it, and gone
from the page once the dialog is left. Screenshots of each page at desktop and phone width go to
`screenshots/console/` (README, "The console").
"""

from __future__ import annotations

import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from deployments.models import Deployment, DeploymentStatus
from keys.models import ApiKey, KeyStatus
from tests.console_pages.browser import (
    SECRET_RE,
    WAIT_SECONDS,
    chromium,
    embedded_buddy,
    screenshot,
    wait_for,
)
from tests.factories import TemplateFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"
MESSAGES = [{"role": "user", "content": "hello from the console"}]


@pytest.fixture(scope="module")
def console_url(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    with embedded_buddy() as url:
        yield url


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    with chromium() as driver:
        yield driver


def _wait(browser: WebDriver, condition):  # type: ignore[no-untyped-def]
    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(condition)


def _sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


class SecretScan:
    """Every page the browser shows is read; a whole secret may be on it only inside the
    show-once dialog, and only the one secret that response shows."""

    def __init__(self, browser: WebDriver) -> None:
        self.browser = browser
        self.pages = 0

    def page(self, *, showing: str | None = None) -> None:
        html = self.browser.page_source
        found = set(SECRET_RE.findall(html))
        if showing is None:
            assert not found, f"a secret on {self.browser.current_url}"
        else:
            assert found == {showing}, f"secrets beside the one shown on {self.browser.current_url}"
            dialog = self.browser.find_element(By.CSS_SELECTOR, "dialog.secret")
            outside = html.replace(dialog.get_attribute("outerHTML") or "", "")
            assert showing not in outside.replace(f'value="{showing}"', "")
        self.pages += 1


def _go(browser: WebDriver, scan: SecretScan, url: str) -> None:
    browser.get(url)
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "main")))
    scan.page()


def _row(browser: WebDriver, name: str):  # type: ignore[no-untyped-def]
    return browser.find_element(By.CSS_SELECTOR, f"#keys-table tr[data-name='{name}']")


def _secret_from_dialog(browser: WebDriver, scan: SecretScan) -> str:
    dialog = _wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "dialog.secret")))
    secret = dialog.find_element(By.ID, "secret-value").get_attribute("value") or ""
    assert SECRET_RE.fullmatch(secret), "the dialog shows a whole secret"
    scan.page(showing=secret)
    return secret


def _leave_dialog(browser: WebDriver, scan: SecretScan, secret: str) -> None:
    browser.find_element(By.ID, "secret-done").click()
    _wait(browser, ec.invisibility_of_element_located((By.CSS_SELECTOR, "dialog.secret")))
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "main h1")))
    assert secret not in browser.page_source
    scan.page()


def _confirm(browser: WebDriver, row, opener: str, confirm: str) -> None:  # type: ignore[no-untyped-def]
    """Open a confirmation dialog from `row` with the keyboard-reachable button `opener`, check
    the focus is in the dialog, and confirm."""
    row.find_element(By.XPATH, f".//button[normalize-space()='{opener}']").click()
    dialog = _wait(
        browser,
        lambda b: next(
            (d for d in row.find_elements(By.TAG_NAME, "dialog") if d.is_displayed()), None
        ),
    )
    focused = browser.switch_to.active_element
    assert focused.text == "Cancel", "the dialog takes the focus, on its safe choice"
    dialog.find_element(By.XPATH, f".//button[normalize-space()='{confirm}']").click()


def test_a_new_user_works_the_whole_journey_in_the_browser(console_url, browser):
    url = console_url
    TemplateFactory()
    TemplateFactory(slug="qwen3-6-27b", name="Qwen 3.6 27B", model_id="qwen3.6:27b")
    user = UserFactory(username="newcomer")
    scan = SecretScan(browser)

    # `/` goes to the console, which asks to sign in first.
    browser.get(f"{url}/")
    _wait(browser, ec.presence_of_element_located((By.ID, "id_username")))
    assert "/console/sign-in" in browser.current_url
    screenshot(browser, "01-sign-in")
    browser.find_element(By.ID, "id_username").send_keys(user.username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), "My Instances"))
    scan.page()

    # Templates: deploy gemma4:26b for one hour.
    browser.find_element(By.LINK_TEXT, "Templates").click()
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), "Templates"))
    scan.page()
    screenshot(browser, "02-templates")
    form = browser.find_element(By.CSS_SELECTOR, "form[data-template='gemma4-26b']")
    form.find_element(By.CSS_SELECTOR, "input[name=pack_hours][value='1']").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # My Instances: pending, then ready without a reload (the rows are polled while it boots).
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h1"), "My Instances"))
    assert "Deploying gemma4:26b" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    _wait(
        browser,
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#instance-rows .status"), "ready"),
    )
    scan.page()
    screenshot(browser, "03-my-instances")
    deployment = Deployment.objects.get(owner=user)
    assert deployment.status == DeploymentStatus.READY

    # API Keys: the instance is chosen; its default key is there, its secret revealable once.
    keys_url = f"{url}/console/keys?instance={deployment.pk}"

    def default_key_row():  # type: ignore[no-untyped-def]
        _go(browser, scan, keys_url)
        return browser.find_elements(By.CSS_SELECTOR, "#keys-table button[name=reveal]")

    wait_for(default_key_row, what="the default key on API Keys")
    default = ApiKey.objects.get(deployment=deployment, is_default=True)
    screenshot(browser, "04-api-keys")
    browser.find_element(By.CSS_SELECTOR, "#keys-table button[name=reveal]").click()
    first_secret = _secret_from_dialog(browser, scan)
    screenshot(browser, "05-reveal-default-key-dialog")
    _leave_dialog(browser, scan, first_secret)
    assert not browser.find_elements(By.CSS_SELECTOR, "#keys-table button[name=reveal]")

    # Generate a second key, named, and copy its secret from the dialog.
    browser.find_element(By.ID, "key-name").send_keys("ci")
    browser.find_element(By.ID, "key-rpm").send_keys("600")
    browser.find_element(By.XPATH, "//button[normalize-space()='Generate Key']").click()
    second_secret = _secret_from_dialog(browser, scan)
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.find_element(By.ID, "copy-secret").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "copy-secret"), "Copied"))
    copied = browser.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, () => done(null));"
    )
    assert copied == second_secret
    screenshot(browser, "06-generate-key-dialog")
    _leave_dialog(browser, scan, second_secret)
    row = _row(browser, "ci")
    assert "600 req/min" in row.text and "active" in row.text

    # The gateway answers the copied key through the openai SDK.
    for _ in range(2):
        completion = _sdk(url, copied).chat.completions.create(
            model="gemma4:26b", messages=MESSAGES
        )
        assert completion.choices[0].message.content == "hello from the console"
    assert _sdk(url, first_secret).chat.completions.create(model="gemma4:26b", messages=MESSAGES)

    # Roll "ci": a new key (shown once) with the same name and limits.
    _confirm(browser, _row(browser, "ci"), "Roll", "Roll key")
    rolled_secret = _secret_from_dialog(browser, scan)
    assert rolled_secret != second_secret
    _leave_dialog(browser, scan, rolled_secret)
    assert _sdk(url, rolled_secret).chat.completions.create(model="gemma4:26b", messages=MESSAGES)

    # Edit the new key's limits (its own page), then revoke the default key with a confirmation.
    rows = browser.find_elements(By.CSS_SELECTOR, "#keys-table tr[data-name='ci']")
    assert len(rows) == 2
    rows[0].find_element(By.LINK_TEXT, "Edit").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "e-tpm")))
    scan.page()
    screenshot(browser, "07-edit-key")
    browser.find_element(By.ID, "e-tpm").send_keys("50000")
    browser.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Saved"))
    assert (
        "50000 tokens/min"
        in browser.find_elements(By.CSS_SELECTOR, "#keys-table tr[data-name='ci']")[0].text
    )

    _confirm(browser, _row(browser, default.name), "Revoke", "Revoke key")
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Revoked key"))
    scan.page()
    assert "revoked" in _row(browser, default.name).text
    with pytest.raises(openai.AuthenticationError) as revoked:
        _sdk(url, first_secret).chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert revoked.value.code == "revoked_api_key"

    # The instance's page: the calls' usage (visible within a minute), snippets with the model.
    instance_url = f"{url}/console/instances/{deployment.pk}"

    def usage_shown() -> bool:
        _go(browser, scan, instance_url)
        return browser.find_element(By.ID, "usage-totals").text.startswith("4 requests")

    wait_for(usage_shown, what="the calls' usage on the instance's page", timeout=60)
    assert browser.find_elements(By.CSS_SELECTOR, ".chart rect.bar[height]:not([height='0.0'])")
    snippet = browser.find_element(By.ID, "snippet-python").text
    assert f'base_url="{url}/v1"' in snippet and 'model="gemma4:26b"' in snippet
    assert "gemma4:26b" in browser.find_element(By.ID, "snippet-curl").text
    screenshot(browser, "08-instance")

    # Stop it from My Instances, with a confirmation: every key is revoked.
    _go(browser, scan, f"{url}/console/instances")
    _confirm(
        browser,
        browser.find_element(By.CSS_SELECTOR, f"tr[data-deployment='{deployment.pk}']"),
        "Stop",
        "Stop instance",
    )
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Stopped"))
    assert "stopped" in browser.find_element(By.CSS_SELECTOR, "#instance-rows .status").text
    scan.page()
    _go(browser, scan, keys_url)
    statuses = [
        cell.text
        for cell in browser.find_elements(
            By.CSS_SELECTOR, "#keys-table td[data-label=Status] .status"
        )
    ]
    assert statuses == ["revoked"] * 3
    screenshot(browser, "09-api-keys-after-stop")
    assert (
        not ApiKey.objects.filter(deployment=deployment).exclude(revoked_at__isnull=False).exists()
    )
    with pytest.raises(openai.AuthenticationError):
        _sdk(url, rolled_secret).chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert {k.status for k in ApiKey.objects.filter(deployment=deployment)} == {KeyStatus.REVOKED}

    # Webhooks: add one (its signing secret once), send it a test, see the delivery.
    browser.find_element(By.LINK_TEXT, "Webhooks").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "wh-url")))
    scan.page()
    browser.find_element(By.ID, "wh-url").send_keys("http://127.0.0.1:9/hooks/buddy")
    every = browser.find_element(By.CSS_SELECTOR, "input[name=events][value='*']")
    ready_box = browser.find_element(
        By.CSS_SELECTOR, "input[name=events][value='deployment.ready']"
    )
    ready_box.click()
    assert not every.is_selected(), "a single type unticks every event"
    every.click()
    assert every.is_selected() and not ready_box.is_selected()
    browser.find_element(By.XPATH, "//button[normalize-space()='Add webhook']").click()
    webhook_secret = _secret_from_dialog(browser, scan)
    assert webhook_secret.startswith("whsec_")
    _leave_dialog(browser, scan, webhook_secret)
    screenshot(browser, "10-webhooks")
    browser.find_element(By.LINK_TEXT, "Deliveries").click()
    _wait(
        browser, ec.presence_of_element_located((By.XPATH, "//h2[normalize-space()='Deliveries']"))
    )
    browser.find_element(By.XPATH, "//button[normalize-space()='Send a test event']").click()
    _wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "ping"))
    assert "ping" in browser.find_element(By.CSS_SELECTOR, "table.cards tbody").text
    scan.page()
    screenshot(browser, "11-webhook-deliveries")
    assert scan.pages >= 20
