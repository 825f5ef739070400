"""The status spec is the one table of what a deployment's status means; every status set and map
of the code is derived from it, and what each status answers stays the contract's."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from deployments import services
from deployments.models import (
    LIVE_STATUSES,
    PACK_EXPIRED_STATUS,
    SERVING_STATUSES,
    STATUS_SPEC,
    TERMINAL_STATUSES,
    Deployment,
    DeploymentStatus,
    EventKind,
)
from keys.lookup.outcomes import KeySnapshot, LookupOutcome, judge
from keys.models import RevokeReason

S = DeploymentStatus


def test_every_status_has_one_row_whose_columns_agree():
    assert set(STATUS_SPEC) == set(S)
    for status, spec in STATUS_SPEC.items():
        assert spec.event in EventKind.values, status
        assert spec.ended == (not spec.goes_to), f"{status}: ended means nothing leaves it"
        assert spec.ended == bool(spec.end_code), f"{status}: an ended status has an end code"
        assert not (spec.ended and (spec.serves or spec.extendable)), status
        assert status not in spec.goes_to, status


def test_the_sets_and_maps_are_the_spec_s():
    assert set(TERMINAL_STATUSES) == {"stopped", "failed", "terminated"}
    assert set(LIVE_STATUSES) == {"pending", "provisioning", "ready"}
    assert set(SERVING_STATUSES) == {"ready"}
    assert services.EXTENDABLE_STATUSES == LIVE_STATUSES
    assert PACK_EXPIRED_STATUS == "terminated"
    assert {s: services._EVENT_OF_STATUS[s] for s in S} == {
        "pending": "created",
        "provisioning": "provisioning",
        "ready": "ready",
        "stopped": "stopped",
        "failed": "failed",
        "terminated": "terminated",
    }


def test_the_code_of_each_end_is_a_revoke_reason_and_a_409_of_the_lookup():
    codes = {status: spec.end_code for status, spec in STATUS_SPEC.items() if spec.ended}
    assert codes == {
        "stopped": "deployment_stopped",
        "failed": "deployment_failed",
        "terminated": "deployment_terminated",
    }
    outcomes = {outcome.code: outcome for outcome in LookupOutcome}
    for code in codes.values():
        assert RevokeReason(code) == code
        assert outcomes[code].status == 409


def test_the_partial_indexes_list_the_spec_s_statuses_and_no_migration_is_missing(db):
    conditions = {index.name: index.condition for index in Deployment._meta.indexes}
    live = dict(conditions["deploy_live_pack_end_idx"].children)
    ended = dict(conditions["deploy_teardown_owed_idx"].children)
    assert live["status__in"] == ["pending", "provisioning", "ready"]
    assert ended["status__in"] == ["stopped", "failed", "terminated"]
    call_command("makemigrations", "deployments", "--check", "--dry-run", verbosity=0)


def _snapshot(status: str, *, pack_left: timedelta = timedelta(hours=1)) -> KeySnapshot:
    return KeySnapshot(
        key_id="k",
        public_id="p",
        revoked=False,
        deployment_id="d",
        deployment_status=status,
        model="m",
        endpoint_url="http://10.0.0.1:8000/v1",
        pack_ends_at=timezone.now() + pack_left,
    )


ANSWER = {
    "pending": LookupOutcome.DEPLOYMENT_NOT_READY,
    "provisioning": LookupOutcome.DEPLOYMENT_NOT_READY,
    "ready": LookupOutcome.OK,
    "stopped": LookupOutcome.DEPLOYMENT_STOPPED,
    "failed": LookupOutcome.DEPLOYMENT_FAILED,
    "terminated": LookupOutcome.DEPLOYMENT_TERMINATED,
}


@pytest.mark.parametrize("status", list(S))
def test_a_verified_key_answers_what_its_deployment_s_status_says(status):
    now = timezone.now()
    assert judge(_snapshot(status), model="m", now=now) is ANSWER[status]
    # A pack that has run out: a live deployment answers as the sweep will end it; an ended one
    # keeps the answer of its own end.
    ran_out = _snapshot(status, pack_left=timedelta(seconds=-1))
    expected = ANSWER[status] if status in TERMINAL_STATUSES else ANSWER[PACK_EXPIRED_STATUS]
    assert judge(ran_out, model="m", now=now) is expected


def test_a_ready_deployment_without_an_endpoint_or_an_unknown_status_is_not_ready():
    now = timezone.now()
    snapshot = _snapshot("ready")
    no_endpoint = dataclasses.replace(snapshot, endpoint_url="")
    unknown = dataclasses.replace(snapshot, deployment_status="rebooting")
    assert judge(no_endpoint, model="m", now=now) is LookupOutcome.DEPLOYMENT_NOT_READY
    assert judge(unknown, model="m", now=now) is LookupOutcome.DEPLOYMENT_NOT_READY
