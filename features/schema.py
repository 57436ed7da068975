"""The canonical data contract: column names, types and vocabularies shared by every layer.

Every other module names columns through these constants, so a rename happens in one place.
"""

from __future__ import annotations

import polars as pl

LEAD_ID = "lead_id"
CREATED_AT = "created_at"
OCCURRED_AT = "occurred_at"
EVENT_TYPE = "event_type"
CONVERTED = "converted"
CONVERTED_AT = "converted_at"
LEGACY_SCORE = "legacy_score"

TS = pl.Datetime("us", "UTC")

#: Firmographic columns the synthetic source writes (real sources declare their own in a mapping).
SYNTHETIC_CATEGORICALS: tuple[str, ...] = (
    "industry",
    "employee_band",
    "region",
    "job_title",
    "lead_source",
    "email_domain_kind",
    "buying_timeline",
)
#: PII columns the synthetic source writes; they never become features.
SYNTHETIC_PII: tuple[str, ...] = ("name", "email")

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

LEADS_SCHEMA: dict[str, pl.DataType] = {LEAD_ID: pl.String(), CREATED_AT: TS}
EVENTS_SCHEMA: dict[str, pl.DataType] = {LEAD_ID: pl.String(), OCCURRED_AT: TS, EVENT_TYPE: pl.String()}
OUTCOMES_SCHEMA: dict[str, pl.DataType] = {LEAD_ID: pl.String(), CONVERTED: pl.Boolean(), CONVERTED_AT: TS}

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
