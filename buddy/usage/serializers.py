"""The usage endpoints' query and answer (contract: "Usage"), shared by the key and deployment
endpoints (`keys.apis`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from buddy.usage.selectors import UsageSeries

GRANULARITIES = ["hour", "day"]
DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
MAX_SPAN = {"hour": timedelta(days=31), "day": timedelta(days=400)}


class UsageQuerySerializer(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=GRANULARITIES, default="hour")
    since = serializers.DateTimeField(
        required=False, help_text="ISO 8601; default: 24 hours (hour) or 30 days (day) before until"
    )
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        granularity = attrs["granularity"]
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - DEFAULT_SPAN[granularity]
        if since >= until:
            raise serializers.ValidationError({"since": ["Must be before until."]})
        if until - since > MAX_SPAN[granularity]:
            days = MAX_SPAN[granularity].days
            raise serializers.ValidationError(
                {"since": [f"At most {days} days of {granularity}s can be asked for at once."]}
            )
        return {"granularity": granularity, "since": since, "until": until}


class UsageTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class UsageBucketSerializer(UsageTotalsSerializer):
    start = serializers.DateTimeField(help_text="The bucket's UTC start (hour or midnight).")


class UsageOutputSerializer(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=GRANULARITIES)
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    totals = UsageTotalsSerializer()
    buckets = UsageBucketSerializer(many=True, help_text="Oldest first; only buckets with traffic.")


def usage_series_data(series: UsageSeries) -> dict[str, Any]:
    return UsageOutputSerializer(
        {
            "granularity": series.granularity,
            "since": series.since,
            "until": series.until,
            "totals": series.totals.as_dict(),
            "buckets": [{"start": b.start, **b.as_dict()} for b in series.buckets],
        }
    ).data


class Usage24hSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
