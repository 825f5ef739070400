"""An operator in a real browser (Debian's headless chromium, driven by Selenium): signs in to the
admin, stops a deployment with the admin action, and sees its keys revoked and the events recorded.

No Celery worker runs here: the admin's stop revokes the keys itself, through
`deployments.services.deployment_stop_by_operator`, so what the page shows is what a worker would
have done as well. `make test` installs the browser (`scripts/ensure-browser.sh`).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from deployments.models import DeploymentStatus, EndReason, EventKind
from keys import services as key_services
from keys.models import ApiKey, RevokeReason
from tests.factories import DeploymentFactory
from tests.harness.browser import chromium

# The live server answers from another thread, so the test's data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "an operator's long passphrase"
WAIT_SECONDS = 20


@pytest.fixture
def browser():
    with chromium(page_load_seconds=WAIT_SECONDS) as driver:
        yield driver


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator", "operator@example.test", PASSWORD)


def _wait(browser, condition):
    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(condition)


def test_operator_stops_a_deployment_in_the_browser_and_sees_keys_revoked_and_events(
    browser, live_server, operator, settings
):
    # The live server speaks plain HTTP; production cookies are Secure.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    deployment = DeploymentFactory(ready=True)
    key_services.key_create_default(deployment_id=deployment.pk)
    key_services.key_create(deployment_id=deployment.pk, name="ci", actor="t")

    browser.get(f"{live_server.url}/admin/login/?next=/admin/deployments/deployment/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    checkbox = _wait(
        browser,
        ec.element_to_be_clickable(
            (By.CSS_SELECTOR, f"input[name=_selected_action][value='{deployment.pk}']")
        ),
    )
    assert "2" in browser.find_element(By.CSS_SELECTOR, "#result_list td.field-key_count").text
    checkbox.click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("stop")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    message = _wait(
        browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "ul.messagelist li.success"))
    )
    assert "Stopped 1 deployment(s) and revoked their keys." in message.text
    status_cell = browser.find_element(By.CSS_SELECTOR, "#result_list td.field-status")
    assert status_cell.text.lower() == "stopped"
    assert browser.find_element(By.CSS_SELECTOR, "#result_list td.field-key_count").text == "0"

    # The deployment's own page: its keys revoked, its history recorded.
    browser.get(f"{live_server.url}/admin/deployments/deployment/{deployment.pk}/change/")
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "div.inline-group")))
    key_rows = browser.find_elements(By.CSS_SELECTOR, "#keys-group tbody tr.has_original")
    assert len(key_rows) == 2
    for row in key_rows:
        assert row.find_element(By.CSS_SELECTOR, "td.field-status").text == "revoked"
        reason = row.find_element(By.CSS_SELECTOR, "td.field-revoke_reason").text
        assert reason == RevokeReason.DEPLOYMENT_STOPPED.label
    events = [
        (
            row.find_element(By.CSS_SELECTOR, "td.field-kind").text,
            row.find_element(By.CSS_SELECTOR, "td.field-actor").text,
        )
        for row in browser.find_elements(By.CSS_SELECTOR, "#events-group tbody tr.has_original")
    ]
    assert ("Stopped", "operator:operator") in events
    assert events.count(("Key Revoked", "operator:operator")) == 2

    # And the database agrees with the page.
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.STOPPED
    assert deployment.end_reason == EndReason.STOPPED_BY_OPERATOR
    assert not ApiKey.objects.filter(deployment=deployment, revoked_at__isnull=True).exists()
    assert deployment.events.filter(kind=EventKind.KEY_REVOKED).count() == 2
