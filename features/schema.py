"""The canonical data contract: column names, types and vocabularies shared by every layer.

Every other module names columns through these constants, so a rename happens in one place.
"""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

LEAD_ID = "lead_id"
CREATED_AT = "created_at"
OCCURRED_AT = "occurred_at"
EVENT_TYPE = "event_type"
#: Optional numeric attribute of an event (call seconds, deal amount), summed per declared type and window.
EVENT_VALUE = "value"
CONVERTED = "converted"
CONVERTED_AT = "converted_at"
LEGACY_SCORE = "legacy_score"

TS = pl.Datetime("us", "UTC")
#: A lead's decision time: created_at + observation_days in training, the as-of time in scoring.
T0 = "t0"
#: Microseconds in a day (polars Datetime("us") arithmetic).
DAY_US = 86_400 * 1_000_000

#: The event vocabulary. Anything else is kept as OTHER_EVENT and counted.
EVENT_TYPES: tuple[str, ...] = (
    "page_pricing",
    "page_product",
    "page_docs",
    "page_careers",
    "page_blog",
    "email_open",
    "email_click",
    "email_reply",
    "form_fill",
    "content_download",
    "webinar",
    "demo_request",
    "trial_start",
    "meeting",
)
OTHER_EVENT = "other"
#: Actions that show buying intent: "days since the last high-intent action" looks at these.
HIGH_INTENT_EVENTS: tuple[str, ...] = ("page_pricing", "demo_request", "trial_start", "email_reply")

#: Business groups: the unit of reason codes and of the generator's ground-truth drivers.
GROUPS: dict[str, str] = {
    "company_fit": "company fit",
    "seniority": "decision-maker role",
    "pricing_interest": "pricing interest",
    "demo_trial": "demo or trial request",
    "engagement": "email and event engagement",
    "research": "research activity",
    "recency": "recent high-intent activity",
    "job_seeker": "job-seeker signals",
    "email_domain": "email domain",
    "lead_source": "lead source",
    "buying_timeline": "buying timeline",
}

EVENTS_SCHEMA: dict[str, pl.DataType] = {LEAD_ID: pl.String(), OCCURRED_AT: TS, EVENT_TYPE: pl.String()}

#: Which business group each event kind's features belong to (reason codes and ground truth agree on it).
EVENT_GROUP: dict[str, str] = {
    "page_pricing": "pricing_interest",
    "page_product": "research",
    "page_docs": "research",
    "page_blog": "research",
    "content_download": "research",
    "page_careers": "job_seeker",
    "email_open": "engagement",
    "email_click": "engagement",
    "email_reply": "engagement",
    "form_fill": "engagement",
    "webinar": "engagement",
    "demo_request": "demo_trial",
    "trial_start": "demo_trial",
    "meeting": "demo_trial",
    OTHER_EVENT: "engagement",
}


def utc(ts: datetime) -> datetime:
    """An aware UTC datetime: a naive one is read as UTC, an aware one converted."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def has_legacy_score(frame: pl.DataFrame) -> bool:
    """Whether a frame carries the legacy point score for at least one lead (sources without one have nothing to
    compare the 70 and 80 point cutoffs against)."""
    return LEGACY_SCORE in frame.columns and frame[LEGACY_SCORE].null_count() < frame.height
