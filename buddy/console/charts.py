"""The usage chart of an instance's page: the last 24 UTC hours as bars, drawn by the template as
SVG (no charting library, no script). Only geometry here; the numbers come from
`buddy.usage.selectors.usage_series`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from buddy.usage.selectors import UsageSeries, floor_hour

WIDTH = 720
HEIGHT = 160
BAR_GAP = 4
HOURS = 24


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    hour: datetime
    requests: int
    total_tokens: int
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak_tokens: int
    requests: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    first_hour: datetime
    last_hour: datetime


def hourly_chart(series: UsageSeries, *, now: datetime) -> Chart:
    """One bar per UTC hour of the last 24 (hours without traffic included, at zero height),
    tall in proportion to its tokens (requests when no tokens were counted at all)."""
    last = floor_hour(now)
    hours = [last - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    by_hour = {bucket.start: bucket for bucket in series.buckets}
    tokens = [by_hour[h].total_tokens if h in by_hour else 0 for h in hours]
    requests = [by_hour[h].requests if h in by_hour else 0 for h in hours]
    measure = tokens if any(tokens) else requests
    peak = max(measure) or 1
    slot = WIDTH / HOURS
    usable = HEIGHT - 20
    bars = []
    for i, hour in enumerate(hours):
        height = usable * measure[i] / peak if measure[i] else 0.0
        if measure[i] and height < 2:
            height = 2.0
        bars.append(
            Bar(
                x=round(i * slot + BAR_GAP / 2, 1),
                y=round(HEIGHT - 16 - height, 1),
                width=round(slot - BAR_GAP, 1),
                height=round(height, 1),
                hour=hour,
                requests=requests[i],
                total_tokens=tokens[i],
                label=f"{hour:%H}:00 UTC: {requests[i]} requests, {tokens[i]} tokens",
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        peak_tokens=max(tokens),
        requests=series.totals.requests,
        total_tokens=series.totals.total_tokens,
        prompt_tokens=series.totals.prompt_tokens,
        completion_tokens=series.totals.completion_tokens,
        first_hour=hours[0],
        last_hour=hours[-1],
    )
