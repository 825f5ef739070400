import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connections, transaction
from django.utils import timezone

from buddy.core.errors import InvalidTransition, NotFound, ValidationFailed
from deployments import services
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus, EndReason
from tests.factories import DeploymentFactory

S = DeploymentStatus
ALL = list(S.values)
ALLOWED = {
    ("pending", "provisioning"), ("pending", "ready"), ("pending", "stopped"),
    ("pending", "failed"), ("pending", "terminated"),
    ("provisioning", "ready"), ("provisioning", "stopped"), ("provisioning", "failed"),
    ("provisioning", "terminated"),
    ("ready", "provisioning"), ("ready", "stopped"), ("ready", "failed"), ("ready", "terminated"),
}  # fmt: skip

MOVE = {
    "provisioning": lambda d: services.deployment_mark_provisioning(deployment_id=d, actor="t"),
    "ready": lambda d: services.deployment_mark_ready(
        deployment_id=d, endpoint_url="https://gpu-1.example.test/v1x", actor="t"
    ),
    "stopped": lambda d: services.deployment_stop(deployment_id=d, actor="t"),
    "failed": lambda d: services.deployment_fail(deployment_id=d, actor="t", reason="boom"),
    "terminated": lambda d: services.deployment_terminate(deployment_id=d, actor="t"),
    "pending": None,  # nothing moves a deployment back to pending
}


def _in(status):
    extra = {"endpoint_url": "http://10.0.0.1:8000"} if status == "ready" else {}
    return DeploymentFactory(status=status, **extra)


@pytest.mark.django_db
@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize("target", [s for s in ALL if s != "pending"])
def test_transition_table(source, target):
    deployment = _in(source)
    events_before = DeploymentEvent.objects.filter(deployment=deployment).count()
    if (source, target) in ALLOWED:
        MOVE[target](deployment.pk)
        deployment.refresh_from_db()
        assert deployment.status == target
        event = DeploymentEvent.objects.filter(deployment=deployment).latest("id")
        assert event.kind == target
        assert event.detail["from"] == source
        assert event.actor == "t"
        if target in {"stopped", "failed", "terminated"}:
            assert deployment.ended_at is not None
            assert deployment.end_reason
    else:
        with pytest.raises(InvalidTransition):
            MOVE[target](deployment.pk)
        deployment.refresh_from_db()
        assert deployment.status == source
        assert DeploymentEvent.objects.filter(deployment=deployment).count() == events_before


def test_the_table_in_code_is_the_contract_diagram():
    in_code = {(a, b) for a, targets in services.ALLOWED_TRANSITIONS.items() for b in targets}
    assert in_code == ALLOWED


@pytest.mark.django_db
def test_create_deployment_is_pending_with_a_pack_and_an_event(user, template):
    before = timezone.now()
    deployment = services.deployment_create(
        owner=user, template_slug=template.slug, pack_hours=8, actor="user:x"
    )
    assert deployment.status == "pending"
    assert deployment.model_id == "gemma4:26b"
    assert (
        before + timedelta(hours=8)
        <= deployment.pack_ends_at
        <= timezone.now() + timedelta(hours=8)
    )
    assert list(deployment.events.values_list("kind", flat=True)) == ["created"]


@pytest.mark.django_db
@pytest.mark.parametrize("pack_hours", [0, -1, 5, "8", 8.0, True, None])
def test_create_refuses_pack_hours_not_offered(user, template, pack_hours):
    with pytest.raises(ValidationFailed) as excinfo:
        services.deployment_create(
            owner=user, template_slug=template.slug, pack_hours=pack_hours, actor="t"
        )
    assert "pack_hours" in excinfo.value.fields
    assert not Deployment.objects.exists()


@pytest.mark.django_db
def test_create_refuses_unknown_or_inactive_template(user, template):
    template.is_active = False
    template.save()
    for slug in ["gemma4-26b", "nope"]:
        with pytest.raises(ValidationFailed) as excinfo:
            services.deployment_create(owner=user, template_slug=slug, pack_hours=8, actor="t")
        assert "template" in excinfo.value.fields


@pytest.mark.django_db
def test_seeded_templates_exist_after_migrations():
    from deployments.models import Template

    assert set(Template.objects.values_list("name", "model_id")) >= {
        ("Gemma 4 26B A4B", "gemma4:26b"),
        ("Qwen3.6 27B A4B", "qwen3.6:27b"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["pending", "provisioning", "ready"])
def test_extend_adds_hours_to_the_current_end_and_keeps_the_id(status):
    deployment = _in(status)
    end = deployment.pack_ends_at
    extended = services.deployment_extend(deployment_id=deployment.pk, pack_hours=24, actor="t")
    assert extended.pk == deployment.pk
    assert extended.pack_ends_at == end + timedelta(hours=24)
    assert extended.status == status
    assert extended.events.filter(kind="extended").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["stopped", "failed", "terminated"])
def test_extend_refuses_an_ended_deployment(status):
    deployment = _in(status)
    with pytest.raises(InvalidTransition):
        services.deployment_extend(deployment_id=deployment.pk, pack_hours=8, actor="t")


@pytest.mark.django_db
def test_extend_refuses_a_pack_that_already_ran_out():
    deployment = _in("ready")
    with (
        time_machine.travel(deployment.pack_ends_at + timedelta(seconds=1)),
        pytest.raises(InvalidTransition),
    ):
        services.deployment_extend(deployment_id=deployment.pk, pack_hours=8, actor="t")


@pytest.mark.django_db
def test_extend_with_hours_not_offered_changes_nothing():
    deployment = _in("ready")
    with pytest.raises(ValidationFailed):
        services.deployment_extend(deployment_id=deployment.pk, pack_hours=3, actor="t")
    deployment.refresh_from_db()
    assert not deployment.events.filter(kind="extended").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["nope", None, 12, "00000000-0000-0000-0000-000000000000"])
def test_unknown_deployment_ids_are_not_found(bad):
    with pytest.raises(NotFound):
        services.deployment_stop(deployment_id=bad, actor="t")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["", "ftp://x", "not a url", "http://", "javascript:alert(1)", "http://h:99999", None]
)
def test_ready_needs_an_http_endpoint(url):
    deployment = _in("provisioning")
    with pytest.raises(ValidationFailed):
        services.deployment_mark_ready(deployment_id=deployment.pk, endpoint_url=url, actor="t")
    deployment.refresh_from_db()
    assert deployment.status == "provisioning"


@pytest.mark.django_db
def test_provisioner_status_is_idempotent_and_moves_the_endpoint():
    deployment = _in("provisioning")
    apply = services.deployment_apply_provisioner_status
    apply(
        deployment_id=deployment.pk, status="ready", endpoint_url="http://a:1", reason="", actor="p"
    )
    apply(
        deployment_id=deployment.pk, status="ready", endpoint_url="http://a:1", reason="", actor="p"
    )
    assert deployment.events.filter(kind="ready").count() == 1
    moved = apply(
        deployment_id=deployment.pk, status="ready", endpoint_url="http://b:2", reason="", actor="p"
    )
    assert moved.endpoint_url == "http://b:2"
    assert deployment.events.filter(kind="ready").count() == 2
    apply(deployment_id=deployment.pk, status="stopped", endpoint_url=None, reason="", actor="p")
    again = apply(
        deployment_id=deployment.pk, status="stopped", endpoint_url=None, reason="", actor="p"
    )
    assert again.status == "stopped"
    assert again.end_reason == EndReason.STOPPED_BY_PROVISIONER
    assert deployment.events.filter(kind="stopped").count() == 1
    with pytest.raises(InvalidTransition):
        apply(
            deployment_id=deployment.pk,
            status="ready",
            endpoint_url="http://a:1",
            reason="",
            actor="p",
        )


@pytest.mark.django_db
def test_expire_batch_terminates_only_ended_live_packs():
    now = timezone.now()
    ended = [
        DeploymentFactory(status=s, pack_ends_at=now - timedelta(minutes=1))
        for s in ["pending", "provisioning"]
    ] + [DeploymentFactory(ready=True, pack_ends_at=now - timedelta(seconds=1))]
    running = DeploymentFactory(ready=True, pack_ends_at=now + timedelta(hours=1))
    stopped = DeploymentFactory(status="stopped", pack_ends_at=now - timedelta(hours=1))
    done = services.deployment_expire_batch(now=now, limit=2)
    assert len(done) == 2
    done += services.deployment_expire_batch(now=now, limit=2)
    assert set(done) == {d.pk for d in ended}
    for d in ended:
        d.refresh_from_db()
        assert d.status == "terminated"
        assert d.end_reason == "pack_expired"
        assert d.events.filter(kind="terminated", actor="system:pack-expiry").count() == 1
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert running.status == "ready"
    assert stopped.status == "stopped"


@pytest.mark.django_db(transaction=True)
def test_the_sweep_claims_around_a_deployment_another_transaction_holds_instead_of_waiting():
    now = timezone.now()
    held = DeploymentFactory(ready=True, pack_ends_at=now - timedelta(seconds=2))
    free = DeploymentFactory(ready=True, pack_ends_at=now - timedelta(seconds=1))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Deployment.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        assert services.deployment_expire_batch(now=now) == [free.pk]
    finally:
        release.set()
        holder.join(timeout=30)
    assert services.deployment_expire_batch(now=now) == [held.pk]
    assert services.deployment_expire_batch(now=now) == []


@pytest.mark.django_db
def test_one_end_and_a_sweep_s_end_write_the_same_record():
    now = timezone.now()
    stopped = services.deployment_stop(deployment_id=_in("ready").pk, actor="user:t")
    expired = DeploymentFactory(ready=True, pack_ends_at=now - timedelta(seconds=1))
    services.deployment_expire_batch(now=now)
    expired.refresh_from_db()
    for deployment, end_reason in ((stopped, "stopped_by_owner"), (expired, "pack_expired")):
        stored = Deployment.objects.get(pk=deployment.pk)
        assert stored.end_reason == end_reason
        assert stored.ended_at is not None and stored.updated_at == stored.ended_at
        (event,) = stored.events.all()
        assert event.detail == {"from": "ready", "end_reason": end_reason}
    # The single end returns the deployment as stored.
    assert (stopped.status, stopped.end_reason) == ("stopped", "stopped_by_owner")
    assert stopped.ended_at == Deployment.objects.get(pk=stopped.pk).ended_at


@pytest.mark.django_db
def test_events_are_append_only():
    deployment = _in("pending")
    services.deployment_stop(deployment_id=deployment.pk, actor="t")
    event = deployment.events.get()
    event.actor = "someone else"
    with pytest.raises(ValueError):
        event.save()
