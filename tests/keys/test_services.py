from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import override_settings

from buddy.core.errors import (
    DeploymentNotReady,
    KeyLimitReached,
    KeyRevoked,
    NotFound,
    SecretAlreadyShown,
    SecretExpired,
    ValidationFailed,
)
from keys import services
from keys.models import ApiKey
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


def test_created_key_is_stored_as_argon2id_hash_and_shown_once(ready_deployment):
    key, plaintext = services.key_create(deployment_id=ready_deployment.pk, name="ci", actor="t")
    assert plaintext.startswith("ob_sk_") and len(plaintext) == 54
    assert key.public_id == plaintext[6:18]
    assert key.secret_hash.startswith("$argon2id$")
    assert plaintext not in key.secret_hash
    assert key.sealed_secret is None  # only the default key is sealed for a later reveal
    assert not key.is_default
    event = ready_deployment.events.get(kind="key_created")
    assert event.detail["public_id"] == key.public_id


@pytest.mark.parametrize("status", ["pending", "provisioning", "stopped", "failed", "terminated"])
def test_keys_are_created_only_on_ready_deployments(status):
    deployment = DeploymentFactory(status=status)
    with pytest.raises(DeploymentNotReady):
        services.key_create(deployment_id=deployment.pk, name="x", actor="t")
    assert not ApiKey.objects.exists()


def test_key_creation_refuses_a_ready_deployment_whose_pack_ended(ready_deployment):
    with time_machine.travel(ready_deployment.pack_ends_at + timedelta(seconds=1)):
        with pytest.raises(DeploymentNotReady):
            services.key_create(deployment_id=ready_deployment.pk, name="x", actor="t")


@pytest.mark.parametrize("name", ["", "   ", None, 5, "x" * 101])
def test_key_name_is_validated(ready_deployment, name):
    with pytest.raises(ValidationFailed):
        services.key_create(deployment_id=ready_deployment.pk, name=name, actor="t")


@override_settings(BUDDY_MAX_KEYS_PER_DEPLOYMENT=3)
def test_active_key_limit_counts_the_default_key_and_frees_on_revoke(ready_deployment):
    services.key_create_default(deployment_id=ready_deployment.pk)
    first, _ = services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    services.key_create(deployment_id=ready_deployment.pk, name="b", actor="t")
    with pytest.raises(KeyLimitReached):
        services.key_create(deployment_id=ready_deployment.pk, name="c", actor="t")
    services.key_revoke(key_id=first.pk, actor="t")
    services.key_create(deployment_id=ready_deployment.pk, name="c", actor="t")


def test_default_key_is_created_once(ready_deployment):
    first = services.key_create_default(deployment_id=ready_deployment.pk)
    second = services.key_create_default(deployment_id=ready_deployment.pk)
    assert first.pk == second.pk
    assert first.is_default and first.sealed_secret is not None
    assert ApiKey.objects.filter(deployment=ready_deployment).count() == 1


@pytest.mark.parametrize("status", ["pending", "provisioning", "stopped"])
def test_default_key_waits_for_ready(status):
    deployment = DeploymentFactory(status=status)
    assert services.key_create_default(deployment_id=deployment.pk) is None
    assert not ApiKey.objects.exists()


def test_default_key_secret_is_revealed_exactly_once(ready_deployment):
    key = services.key_create_default(deployment_id=ready_deployment.pk)
    secret = services.key_reveal_default(key_id=key.pk, actor="t")
    assert secret.startswith("ob_sk_" + key.public_id)
    key.refresh_from_db()
    assert key.sealed_secret is None and key.secret_revealed_at is not None
    with pytest.raises(SecretAlreadyShown):
        services.key_reveal_default(key_id=key.pk, actor="t")
    assert ready_deployment.events.filter(kind="key_revealed").count() == 1
    from keys.hashing import verify_key

    assert verify_key(key.secret_hash, secret)


def test_reveal_after_the_window_is_expired_and_wipes_the_secret(ready_deployment):
    key = services.key_create_default(deployment_id=ready_deployment.pk)
    with time_machine.travel(key.created_at + timedelta(hours=24, seconds=1)):
        with pytest.raises(SecretExpired):
            services.key_reveal_default(key_id=key.pk, actor="t")
    key.refresh_from_db()
    assert key.sealed_secret is None


def test_reveal_of_a_revoked_key_is_refused(ready_deployment):
    key = services.key_create_default(deployment_id=ready_deployment.pk)
    services.key_revoke(key_id=key.pk, actor="t")
    with pytest.raises(KeyRevoked):
        services.key_reveal_default(key_id=key.pk, actor="t")


def test_reveal_of_a_named_key_is_already_shown(ready_deployment):
    key, _ = services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    with pytest.raises(SecretAlreadyShown):
        services.key_reveal_default(key_id=key.pk, actor="t")


def test_wipe_forgets_only_secrets_past_their_window(ready_deployment):
    key = services.key_create_default(deployment_id=ready_deployment.pk)
    assert services.key_wipe_expired_secrets() == 0
    with time_machine.travel(key.created_at + timedelta(hours=25)):
        assert services.key_wipe_expired_secrets() == 1
    key.refresh_from_db()
    assert key.sealed_secret is None


def test_revoke_is_idempotent_and_recorded_once(ready_deployment):
    key, _ = services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    first = services.key_revoke(key_id=key.pk, actor="t")
    second = services.key_revoke(key_id=key.pk, actor="t")
    assert first.revoked_at == second.revoked_at
    assert second.status == "revoked" and second.revoke_reason == "revoked_by_owner"
    assert ready_deployment.events.filter(kind="key_revoked").count() == 1


def test_revoke_of_unknown_key_is_not_found():
    with pytest.raises(NotFound):
        services.key_revoke(key_id="00000000-0000-0000-0000-000000000000", actor="t")


def test_revoke_all_revokes_every_active_key_once(ready_deployment):
    services.key_create_default(deployment_id=ready_deployment.pk)
    for name in "abc":
        services.key_create(deployment_id=ready_deployment.pk, name=name, actor="t")
    from deployments.services import deployment_stop

    # The stop revokes them in its own transaction; the revoke-all after it finds nothing.
    deployment_stop(deployment_id=ready_deployment.pk, actor="t")
    assert not ApiKey.objects.filter(deployment=ready_deployment, revoked_at=None).exists()
    assert (
        services.key_revoke_all_for_deployments(deployment_ids=[ready_deployment.pk], actor="t")
        == 0
    )
    assert (
        services.key_revoke_all_for_deployments(deployment_ids=[ready_deployment.pk], actor="t")
        == 0
    )
    keys = ApiKey.objects.filter(deployment=ready_deployment)
    assert {k.revoke_reason for k in keys} == {"deployment_stopped"}
    assert all(k.sealed_secret is None for k in keys)
    assert ready_deployment.events.filter(kind="key_revoked").count() == 4


def test_reconcile_finishes_what_lost_messages_left(ready_deployment):
    stopped = DeploymentFactory(ready=True)
    services.key_create(deployment_id=stopped.pk, name="a", actor="t")
    type(stopped).objects.filter(pk=stopped.pk).update(status="stopped")  # a lost revoke message
    done = services.key_reconcile()
    assert done["default_keys_created"] == 1
    assert done["keys_revoked"] == 1
    assert ApiKey.objects.filter(deployment=ready_deployment, is_default=True).count() == 1
    assert not ApiKey.objects.filter(deployment=stopped, revoked_at__isnull=True).exists()
    assert services.key_reconcile() == {
        "default_keys_created": 0,
        "keys_revoked": 0,
        "secrets_wiped": 0,
    }


def _all_text_in_database() -> str:
    """Every text, JSON and binary column of every table, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')
            """
        )
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT "{column}"::text FROM "{table}"')  # noqa: S608 - names from the catalog
            chunks.extend(str(v) for (v,) in cursor.fetchall() if v is not None)
            if column in {"sealed_secret"}:
                cursor.execute(f'SELECT encode("{column}", \'escape\') FROM "{table}"')  # noqa: S608
                chunks.extend(str(v) for (v,) in cursor.fetchall() if v is not None)
    return "\n".join(chunks)


def test_no_plaintext_anywhere_in_the_database(ready_deployment):
    default = services.key_create_default(deployment_id=ready_deployment.pk)
    revealed = services.key_reveal_default(key_id=default.pk, actor="t")
    _, named = services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    other = DeploymentFactory(ready=True)
    sealed_default = services.key_create_default(deployment_id=other.pk)
    assert sealed_default.sealed_secret is not None  # sealed, still unrevealed
    dump = _all_text_in_database()
    for secret in (revealed, named):
        assert secret not in dump
        assert secret[6:] not in dump  # not even without its prefix
        assert secret[18:48] not in dump  # nor its random part
