import pytest
from django.test import override_settings

from buddy.accounts.selectors import service_token_authenticate
from buddy.accounts.services import service_token_create, service_token_revoke
from buddy.core import redis as core_redis


def test_healthz_needs_no_auth_and_no_io(client):
    # No django_db mark: any database access would make this test error.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "redis": True}


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_unknown_urls_answer_the_json_error_body_whatever_debug_says(client, debug):
    with override_settings(DEBUG=debug):
        response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "error": {
            "message": "Not found.",
            "type": "invalid_request_error",
            "code": "not_found",
            "param": None,
        }
    }


@pytest.mark.django_db
def test_service_tokens_authenticate_by_digest_until_revoked():
    token, secret = service_token_create(name="edge", role="proxy")
    assert secret.startswith("ob_svc_")
    assert token.digest != secret and secret not in token.digest
    found = service_token_authenticate(authorization=f"Bearer {secret}")
    assert found is not None and found.role == "proxy" and found.name == "edge"
    for wrong in [None, "", secret, f"Token {secret}", f"Bearer {secret}x", "Bearer ob_svc_x"]:
        assert service_token_authenticate(authorization=wrong) is None
    service_token_revoke(token_id=token.pk)
    assert service_token_authenticate(authorization=f"Bearer {secret}") is None


@pytest.mark.django_db
def test_create_service_token_command_prints_the_secret_alone_on_the_last_line(capsys):
    from django.core.management import call_command

    call_command("create_service_token", "--role", "provisioner", "--name", "orchestrator")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    found = service_token_authenticate(authorization=f"Bearer {last}")
    assert found is not None and found.role == "provisioner"


@pytest.mark.django_db
def test_readyz_answers_503_when_redis_goes_down(client, private_redis):
    with override_settings(REDIS_URL=private_redis.url):
        core_redis.client.cache_clear()
        try:
            assert client.get("/readyz").status_code == 200
            private_redis.stop()
            response = client.get("/readyz")
        finally:
            core_redis.client.cache_clear()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert "redis" in response.json()["error"]["message"]
    # Liveness does no I/O: the process is alive whatever Redis says.
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_readyz_answers_200_in_the_embedded_mode(client):
    """Without REDIS_URL buddy's Redis is the in-process one, which is always there to answer."""
    with override_settings(REDIS_URL="", EMBEDDED=True):
        core_redis.client.cache_clear()
        try:
            response = client.get("/readyz")
        finally:
            core_redis.client.cache_clear()
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "redis": True}
