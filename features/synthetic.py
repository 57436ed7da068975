"""Seeded synthetic CRM export: leads, their web and email events, outcomes, and the ground truth behind them.

The story the generator tells, in the order it draws it (every number is a named constant below):

1. **When leads arrive.** Creation times span `start` to `start + months` (the snapshot). Daily volume grows
   mildly (`VOLUME_GROWTH`) and weekends get `WEEKEND_SHARE` of a weekday's volume; the hour follows a business-day
   profile (`HOUR_WEIGHTS`). Lead ids follow creation order ("L0000001" is the oldest).
2. **Who they are.** Each lead belongs to a latent segment (`SEGMENT_SHARE`): prospects, tyre-kickers, job seekers
   and students. The segment shapes the firmographics (industry, size, region, job title, lead source, email domain,
   stated buying timeline; a few % missing) and a latent *intent*: better fit and a shorter timeline mean more intent.
3. **What they do.** Events come from three processes: anonymous page views in the `PRE_SIGNUP_DAYS` before sign-up
   (stitched to the lead when it signed up), a burst of activity after sign-up that fades (`BURST_DAYS`), and a
   steady trickle of noise (newsletter opens, blog views) until the snapshot. Intent multiplies the rates of the
   buying signals (`INTENT_SENSITIVITY`). Job seekers live on the careers page; students on the blog, docs and
   webinars. An "inbound demo" lead requests a demo when it signs up.
4. **The truth.** At t0 = created_at + observation_days the log-odds of converting within `horizon_days` after t0
   is `intercept(t0)` plus one additive term per business group (the `GROUPS` keys), each computed only from
   firmographics and events before t0, from the same columns `features.build.build_features` writes
   (`driver_terms`). So an oracle is reachable. The label is a Bernoulli draw from it.
5. **Outcomes.** A label-1 lead converts `t0 + delay` (truncated exponential; a "<3 months" timeline converts about
   three times faster). A few fast inbound leads convert before t0 (out of scope), and some label-0 leads convert
   after the horizon. Buyers' intent rises before they convert: extra pricing, demo, meeting and reply events in the
   days before converted_at (only after t0, so the truth is untouched). Nothing happens after the snapshot.

Randomness is drawn per block of `LEADS_PER_BLOCK` leads from a generator seeded by (seed, block index), so the
data is the same whatever chunk size the caller streams with, and 1M leads need no more memory than 100k.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

import numpy as np
import polars as pl
from scipy.special import expit

from features.build import CAREERS_ONLY, HIGH_INTENT_RECENCY, SENIORITY, count_name, parse_seniority
from features.legacy import legacy_score, recent_activity
from features.schema import (
    CONVERTED,
    CONVERTED_AT,
    CREATED_AT,
    DAY_US,
    EVENT_TYPE,
    EVENT_TYPES,
    HIGH_INTENT_EVENTS,
    LEAD_ID,
    OCCURRED_AT,
    T0,
    TS,
    utc,
)

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

P_TRUE = "p_true"
INTERCEPT = "intercept"
SEGMENT = "segment"
INTENT = "intent"

SECOND_US = 1_000_000
#: Leads that share one random generator; chunks are whole numbers of blocks.
LEADS_PER_BLOCK = 10_000
#: Stream keys, so the creation times, the historic leads and a new batch never share random numbers.
_STREAM_CREATED, _STREAM_BLOCK, _STREAM_NEW = 1, 2, 3

# ---------------------------------------------------------------- 1. when leads arrive

#: A weekend day brings this share of a weekday's leads.
WEEKEND_SHARE = 0.35
#: Daily volume on the last day of the period relative to the first, minus one (linear growth).
VOLUME_GROWTH = 0.30
#: Relative lead volume per UTC hour: European and American business hours overlap in the afternoon.
HOUR_WEIGHTS: tuple[float, ...] = (
    1, 1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 10, 10, 9, 8, 6, 5, 4, 3, 2, 1,
)  # fmt: skip

# ---------------------------------------------------------------- 2. who they are

SEGMENTS: tuple[str, ...] = ("prospect", "tyre_kicker", "job_seeker", "student")
SEGMENT_SHARE: tuple[float, ...] = (0.60, 0.29, 0.05, 0.06)

INDUSTRIES: tuple[str, ...] = (
    "software", "fintech", "financial services", "professional services", "healthcare", "manufacturing",
    "retail", "media", "logistics", "education", "government", "non-profit",
)  # fmt: skip
EMPLOYEE_BANDS: tuple[str, ...] = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5000+")
REGIONS: tuple[str, ...] = (
    "North America", "UK & Ireland", "Western Europe", "Nordics", "Eastern Europe", "APAC", "LATAM",
    "Middle East & Africa",
)  # fmt: skip
LEAD_SOURCES: tuple[str, ...] = (
    "organic search", "paid search", "paid social", "referral", "partner", "trade show", "webinar",
    "content syndication", "inbound demo", "purchased list", "outbound",
)  # fmt: skip
EMAIL_DOMAIN_KINDS: tuple[str, ...] = ("corporate", "free-mail", "student", "competitor")
BUYING_TIMELINES: tuple[str, ...] = ("<3 months", "3-6 months", "6-12 months", "no timeline")
FAST_TIMELINE = "<3 months"
#: Seniority levels as `features.build.parse_seniority` names them, with titles it parses to that level.
TITLES: dict[str, tuple[str, ...]] = {
    "executive": ("Founder & CEO", "CEO", "Co-founder", "Chief Technology Officer", "CTO", "Chief Revenue Officer",
                  "CFO", "Owner", "President", "COO"),
    "vp": ("VP of Engineering", "VP Sales", "Vice President, Marketing", "SVP Operations", "Head of Procurement",
           "Head of Growth", "Head of Data", "EVP Finance"),
    "director": ("IT Director", "Director of Engineering", "Marketing Director", "Director, Demand Generation",
                 "Managing Director", "Sales Director", "Director of Finance"),
    "manager": ("Engineering Manager", "Marketing Manager", "Procurement Manager", "Product Manager",
                "Team Lead, Customer Success", "IT Manager", "Operations Manager", "Sales Operations Lead"),
    "individual_contributor": ("Sr. Data Analyst", "Software Engineer", "Data Analyst", "Account Executive",
                               "Sales Development Representative", "Marketing Specialist", "Procurement Specialist",
                               "Consultant", "Financial Analyst", "DevOps Engineer", "UX Designer", "Recent Graduate"),
    "student": ("Student", "Marketing Intern", "MBA Student", "PhD Student", "Graduate Student", "Research Intern",
                "Summer Intern", "Computer Science Student"),
}

#: P(value | segment), one row per segment in SEGMENTS order, columns in the value tuple's order.
INDUSTRY_MIX: tuple[tuple[float, ...], ...] = (
    (0.22, 0.10, 0.10, 0.10, 0.09, 0.10, 0.08, 0.05, 0.06, 0.04, 0.03, 0.03),
    (0.18, 0.08, 0.09, 0.10, 0.09, 0.10, 0.09, 0.07, 0.06, 0.06, 0.04, 0.04),
    (0.15, 0.06, 0.08, 0.10, 0.10, 0.10, 0.10, 0.08, 0.07, 0.07, 0.05, 0.04),
    (0.04, 0.02, 0.02, 0.04, 0.04, 0.03, 0.03, 0.04, 0.02, 0.66, 0.03, 0.03),
)  # fmt: skip
EMPLOYEE_MIX: tuple[tuple[float, ...], ...] = (
    (0.07, 0.16, 0.24, 0.20, 0.13, 0.12, 0.08),
    (0.15, 0.18, 0.20, 0.15, 0.10, 0.11, 0.11),
    (0.15, 0.18, 0.18, 0.14, 0.10, 0.12, 0.13),
    (0.05, 0.05, 0.08, 0.10, 0.12, 0.30, 0.30),
)  # fmt: skip
REGION_MIX: tuple[tuple[float, ...], ...] = (
    (0.40, 0.10, 0.16, 0.05, 0.07, 0.12, 0.06, 0.04),
    (0.30, 0.08, 0.12, 0.03, 0.12, 0.15, 0.11, 0.09),
    (0.35, 0.10, 0.14, 0.04, 0.10, 0.13, 0.08, 0.06),
    (0.35, 0.10, 0.15, 0.05, 0.08, 0.15, 0.07, 0.05),
)  # fmt: skip
#: Columns: executive, vp, director, manager, individual_contributor, student (TITLES order).
SENIORITY_MIX: tuple[tuple[float, ...], ...] = (
    (0.10, 0.13, 0.17, 0.22, 0.38, 0.00),
    (0.08, 0.10, 0.15, 0.22, 0.45, 0.00),
    (0.00, 0.00, 0.02, 0.12, 0.80, 0.06),
    (0.00, 0.00, 0.00, 0.00, 0.12, 0.88),
)  # fmt: skip
LEAD_SOURCE_MIX: tuple[tuple[float, ...], ...] = (
    (0.18, 0.13, 0.06, 0.10, 0.07, 0.07, 0.07, 0.08, 0.09, 0.07, 0.08),
    (0.12, 0.08, 0.12, 0.02, 0.02, 0.06, 0.06, 0.22, 0.01, 0.20, 0.09),
    (0.50, 0.08, 0.25, 0.05, 0.00, 0.02, 0.02, 0.03, 0.00, 0.05, 0.00),
    (0.45, 0.05, 0.15, 0.02, 0.00, 0.03, 0.20, 0.08, 0.00, 0.02, 0.00),
)  # fmt: skip
EMAIL_DOMAIN_MIX: tuple[tuple[float, ...], ...] = (
    (0.86, 0.13, 0.00, 0.01),
    (0.70, 0.18, 0.00, 0.12),
    (0.20, 0.76, 0.04, 0.00),
    (0.00, 0.25, 0.75, 0.00),
)  # fmt: skip
#: Columns: BUYING_TIMELINES, then "not stated" (null).
TIMELINE_MIX: tuple[tuple[float, ...], ...] = (
    (0.22, 0.22, 0.18, 0.18, 0.20),
    (0.03, 0.07, 0.15, 0.40, 0.35),
    (0.01, 0.02, 0.02, 0.40, 0.55),
    (0.01, 0.02, 0.03, 0.44, 0.50),
)  # fmt: skip
#: Share of leads whose CRM record lacks the field (email_domain_kind comes from the address and is never missing).
MISSING_SHARE: dict[str, float] = {
    "industry": 0.03, "employee_band": 0.05, "region": 0.02, "job_title": 0.03, "lead_source": 0.01,
}  # fmt: skip

#: Latent intent = segment mean + INTENT_FIT * (company fit + seniority terms) + timeline shift + N(0, INTENT_SD).
INTENT_MEAN: tuple[float, ...] = (0.0, -0.5, -1.5, -1.5)
INTENT_FIT = 0.2
INTENT_SD = 1.0
INTENT_TIMELINE: dict[str | None, float] = {
    "<3 months": 0.3, "3-6 months": 0.15, "6-12 months": 0.0, "no timeline": -0.15, None: -0.1,
}  # fmt: skip

# ---------------------------------------------------------------- 3. what they do

#: Anonymous page views are stitched to the lead from up to this many days before sign-up.
PRE_SIGNUP_DAYS = 45
#: Mean delay (days) of the after-sign-up burst: activity fades like exp(-days / BURST_DAYS).
BURST_DAYS = 21.0
#: Spread (log-normal sd) of each lead's own burst pace around BURST_DAYS.
BURST_PACE_SD = 0.8
#: Expected events per kind: the burst after sign-up, at intent 0. One row per segment, columns in EVENT_TYPES order
#: (pricing, product, docs, careers, blog, open, click, reply, form, download, webinar, demo, trial, meeting).
BURST: tuple[tuple[float, ...], ...] = (
    (1.2, 3.0, 1.5, 0.15, 2.0, 6.0, 1.5, 0.25, 0.6, 0.8, 0.3, 0.10, 0.08, 0.10),
    (1.0, 3.0, 1.0, 0.15, 3.0, 7.0, 2.0, 0.10, 1.2, 2.0, 0.8, 0.04, 0.05, 0.02),
    (0.1, 0.3, 0.1, 14.0, 0.5, 4.0, 0.8, 0.05, 0.8, 0.2, 0.1, 0.00, 0.00, 0.00),
    (0.5, 2.0, 5.0, 0.80, 8.0, 6.0, 2.0, 0.10, 1.2, 3.0, 2.0, 0.01, 0.05, 0.00),
)  # fmt: skip
#: Expected anonymous page views in the PRE_SIGNUP_DAYS before sign-up (page kinds only), per segment.
ANONYMOUS: tuple[tuple[float, ...], ...] = (
    (0.5, 1.0, 0.3, 0.1, 0.8, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    (0.2, 0.8, 0.2, 0.1, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    (0.0, 0.1, 0.0, 4.0, 0.3, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    (0.1, 0.5, 1.0, 0.3, 2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
)  # fmt: skip
#: Noise until the snapshot: expected events per 30 days of a lead's life, whatever its intent.
TRICKLE_PER_30D: tuple[tuple[float, ...], ...] = (
    (0.05, 0.15, 0.10, 0.00, 0.30, 2.6, 0.15, 0.0, 0.0, 0.03, 0.02, 0, 0, 0),
    (0.03, 0.15, 0.05, 0.00, 0.30, 2.6, 0.15, 0.0, 0.0, 0.03, 0.02, 0, 0, 0),
    (0.00, 0.05, 0.00, 1.00, 0.10, 2.6, 0.10, 0.0, 0.0, 0.00, 0.00, 0, 0, 0),
    (0.01, 0.15, 0.50, 0.10, 0.80, 2.6, 0.20, 0.0, 0.0, 0.10, 0.10, 0, 0, 0),
)  # fmt: skip
#: Burst and anonymous rates are multiplied by exp(sensitivity * intent): buying signals follow intent, noise not.
INTENT_SENSITIVITY: dict[str, float] = {
    "page_pricing": 0.7, "page_product": 0.5, "page_docs": 0.3, "page_careers": 0.0, "page_blog": 0.1,
    "email_open": 0.2, "email_click": 0.5, "email_reply": 0.8, "form_fill": 0.4, "content_download": 0.3,
    "webinar": 0.3, "demo_request": 1.2, "trial_start": 1.0, "meeting": 1.2,
}  # fmt: skip
#: Events a buyer adds in the days before it converts (expected counts), RAMP_DAYS the mean lead time.
RAMP: dict[str, float] = {
    "page_pricing": 2.5, "page_product": 1.5, "email_open": 1.0, "email_click": 1.0, "email_reply": 1.5,
    "demo_request": 0.5, "trial_start": 0.3, "meeting": 1.5,
}  # fmt: skip
RAMP_DAYS = 5.0

# ---------------------------------------------------------------- 4. the truth: log-odds terms by business group

INDUSTRY_WEIGHT: dict[str, float] = {
    "software": 0.4, "fintech": 0.35, "financial services": 0.2, "professional services": 0.15, "healthcare": 0.05,
    "manufacturing": 0.0, "retail": -0.1, "media": -0.1, "logistics": 0.0, "education": -0.4,
    "government": -0.5, "non-profit": -0.35,
}  # fmt: skip
EMPLOYEE_WEIGHT: dict[str, float] = {
    "1-10": -0.6, "11-50": -0.1, "51-200": 0.35, "201-500": 0.35, "501-1000": 0.15, "1001-5000": 0.0, "5000+": -0.15,
}  # fmt: skip
REGION_WEIGHT: dict[str, float] = {
    "North America": 0.2, "UK & Ireland": 0.15, "Western Europe": 0.15, "Nordics": 0.15, "Eastern Europe": -0.15,
    "APAC": -0.1, "LATAM": -0.2, "Middle East & Africa": -0.3,
}  # fmt: skip
SENIORITY_WEIGHT: dict[str, float] = {
    "executive": 0.6, "vp": 0.5, "director": 0.35, "manager": 0.05, "individual_contributor": -0.2, "student": -1.2,
}  # fmt: skip
EMAIL_DOMAIN_WEIGHT: dict[str, float] = {"corporate": 0.0, "free-mail": -0.3, "student": -2.0, "competitor": -2.5}
LEAD_SOURCE_WEIGHT: dict[str, float] = {
    "organic search": 0.1, "paid search": 0.0, "paid social": -0.6, "referral": 1.5, "partner": 0.8,
    "trade show": 0.2, "webinar": -0.1, "content syndication": -1.0, "inbound demo": 1.1, "purchased list": -1.7,
    "outbound": -0.5,
}  # fmt: skip
TIMELINE_WEIGHT: dict[str, float] = {"<3 months": 1.8, "3-6 months": 0.6, "6-12 months": -0.3, "no timeline": -1.2}
#: Weight of a missing value, per categorical term (an unstated timeline is as bad as "no timeline").
NULL_WEIGHT: dict[str, float] = {"buying_timeline": -1.0}
#: Interactions a linear model cannot draw but buyers show: pricing visits from a decision maker weigh more, and a
#: demo or trial from a poor-fit company (company_fit < 0) weighs less. Each stays inside its own group's term.
PRICING_BY_SENIORITY: dict[str, float] = {
    "executive": 1.5, "vp": 1.5, "director": 1.3, "manager": 1.0, "individual_contributor": 0.5, "student": 0.2,
}  # fmt: skip
PRICING_BY_SENIORITY_NULL = 0.7
DEMO_POOR_FIT_FACTOR = 0.4
#: ...and a demo or trial right after pricing visits (the last 7 days) is worth more than either alone.
DEMO_WITH_PRICING_FACTOR = 1.8
#: A stated timeline is cheap talk unless the lead also acted on it: the buying_timeline term is scaled down for
#: leads with no high-intent action in the 30 days before t0 (BANT's Timeline counts when Need shows too).
TIMELINE_ACTED_DAYS = 30.0
TIMELINE_IDLE_FACTOR = 0.3
#: The best-fit company size depends on the industry: large firms in these industries buy, large firms elsewhere
#: rarely do. Added to company_fit for the 1001+ employee bands.
LARGE_FIRM_BANDS: tuple[str, ...] = ("1001-5000", "5000+")
LARGE_FIRM_BY_INDUSTRY: dict[str, float] = {
    "financial services": 0.9, "healthcare": 0.8, "government": 1.0, "manufacturing": 0.6, "logistics": 0.6,
    "software": -0.6, "fintech": -0.6, "media": -0.4,
}  # fmt: skip
#: pricing_interest = PRICING_7D * log1p(views in the last 7 days) + PRICING_8_30D * log1p(views 8-30 days back).
PRICING_7D = 1.0
PRICING_8_30D = 0.15
#: demo_trial: one step for each of these ever done in the 90 days before t0.
DEMO_TRIAL_WEIGHT: dict[str, float] = {"demo_request": 0.8, "trial_start": 0.5, "meeting": 0.6}
#: engagement: weight * log1p(count in the window), (weight, window days).
ENGAGEMENT_WEIGHT: dict[str, tuple[float, int]] = {
    "email_click": (0.3, 30), "email_reply": (0.6, 30), "webinar": (0.25, 90), "form_fill": (0.25, 90),
}  # fmt: skip
#: research: weight * log1p(count in the last 30 days): small and positive.
RESEARCH_WEIGHT: dict[str, float] = {
    "page_docs": 0.12, "page_product": 0.12, "page_blog": 0.05, "content_download": 0.12,
}  # fmt: skip
RESEARCH_DAYS = 30
#: recency = RECENCY_WEIGHT * exp(-days since the last high-intent action / RECENCY_DAYS); 0 without one.
RECENCY_WEIGHT = 1.3
RECENCY_DAYS = 5.0
#: job_seeker = CAREERS_ONLY_WEIGHT * careers-only flag + CAREERS_VIEW_WEIGHT * log1p(careers views in 90 days).
CAREERS_ONLY_WEIGHT = -1.5
CAREERS_VIEW_WEIGHT = -0.4
#: The window of features.build's careers_only_90d (BREADTH_DAYS there).
CAREERS_DAYS = 90
DEMO_TRIAL_DAYS = 90
#: intercept(t0) = BASE_LOG_ODDS + DRIFT * (2 * share of the period elapsed at t0 - 1): buyers get keener over time.
BASE_LOG_ODDS = -3.4
DRIFT = 0.3

# ---------------------------------------------------------------- 5. outcomes

#: Mean days from t0 to conversion (truncated to the horizon): a "<3 months" timeline closes about 3x faster.
DELAY_MEAN_FAST = 8.0
DELAY_MEAN = 24.0
#: Fast inbound: a prospect converts before t0 with probability expit(FAST_INBOUND_LOG_ODDS + ... ).
FAST_INBOUND_LOG_ODDS = -5.0
FAST_INBOUND_DEMO = 2.0
FAST_INBOUND_TIMELINE = 1.0
FAST_INBOUND_INTENT = 0.8
FAST_INBOUND_MEAN_DAYS = 4.0
#: A label-0 lead converts after the horizon with probability LATE_SHARE * p_true, LATE_MEAN_DAYS after it ends.
LATE_SHARE = 0.3
LATE_MEAN_DAYS = 30.0

# ---------------------------------------------------------------- fake PII

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam", "Maya",
    "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Xavier", "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski",
    "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga",
    "Weber", "Xu", "Yilmaz", "Zimmer",
)  # fmt: skip
COMPANY_WORDS: tuple[str, ...] = (
    "acme", "globex", "initech", "umbrella", "hooli", "vandelay", "tyrell", "cyberdyne", "wonka", "stark",
    "soylent", "gringotts", "oscorp", "aperture", "monarch", "zenith",
)  # fmt: skip
FREE_MAIL_DOMAINS: tuple[str, ...] = ("freemail.example", "inbox.example", "webpost.example")
COMPETITOR_DOMAINS: tuple[str, ...] = ("rivalscore.example", "leadsense.example")


# ---------------------------------------------------------------- public API


@dataclass(frozen=True)
class Chunk:
    """One slice of the export: canonical tables plus the truth and the latent segment (for tests only)."""

    leads: pl.DataFrame
    events: pl.DataFrame
    outcomes: pl.DataFrame
    truth: pl.DataFrame
    latent: pl.DataFrame


@dataclass(frozen=True)
class NewBatch:
    """Leads to score: created shortly before `as_of`, with their events up to it, and no outcomes."""

    leads: pl.DataFrame
    events: pl.DataFrame
    as_of: datetime


def snapshot_at(start: str | date | datetime, months: int) -> datetime:
    """End of the creation period (UTC midnight): the moment the export was taken."""
    first = _as_utc(start)
    month0 = first.month - 1 + int(months)
    year, month = first.year + month0 // 12, month0 % 12 + 1
    day = min(first.day, calendar.monthrange(year, month)[1])
    return first.replace(year=year, month=month, day=day)


def generate_chunks(
    n_leads: int,
    *,
    seed: int,
    start: str | date | datetime,
    months: int,
    observation_days: int,
    horizon_days: int,
    chunk_size: int = 100_000,
) -> Iterator[Chunk]:
    """Yield the export in chunks of about `chunk_size` leads (whole blocks), oldest leads first.

    The content does not depend on `chunk_size`: every block of LEADS_PER_BLOCK leads has its own generator.
    """
    if n_leads < 0 or seed < 0:
        raise ValueError(f"n_leads and seed must be >= 0, got n_leads={n_leads}, seed={seed}")
    t_start, t_end = _as_utc(start), snapshot_at(start, months)
    world = _World(_us(t_start), _us(t_end), observation_days * DAY_US, horizon_days * DAY_US)
    created = _creation_times(np.random.default_rng([seed, _STREAM_CREATED]), n_leads, start=t_start, end=t_end)
    if n_leads == 0:
        yield _simulate(np.random.default_rng([seed, _STREAM_BLOCK]), created, first_id=0, world=world)
        return
    step = max(1, chunk_size // LEADS_PER_BLOCK) * LEADS_PER_BLOCK
    for lo in range(0, n_leads, step):
        parts = [
            _simulate(
                np.random.default_rng([seed, _STREAM_BLOCK, b // LEADS_PER_BLOCK]),
                created[b : b + LEADS_PER_BLOCK],
                first_id=b,
                world=world,
            )
            for b in range(lo, min(lo + step, n_leads), LEADS_PER_BLOCK)
        ]
        yield Chunk(*(pl.concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Chunk)))


def generate_new_batch(
    n_leads: int,
    *,
    seed: int,
    as_of: datetime,
    observation_days: int,
    horizon_days: int,
    window_days: int = 14,
) -> NewBatch:
    """Leads created in the `window_days` before `as_of`, with their events before `as_of`, for the `score` stage.

    They are drawn from the same world as the history (the same segments, intent and behaviour); the legacy score
    is the one the old system shows at `as_of`. Lead ids are "N0000001"-style so they never collide with history.
    """
    end = _as_utc(as_of)
    begin = end - timedelta(days=window_days)
    world = _World(_us(begin), _us(end), observation_days * DAY_US, horizon_days * DAY_US)
    created = _creation_times(np.random.default_rng([seed, _STREAM_NEW]), n_leads, start=begin, end=end)
    parts = [
        _simulate(
            np.random.default_rng([seed, _STREAM_NEW, b // LEADS_PER_BLOCK]),
            created[b : b + LEADS_PER_BLOCK],
            first_id=b,
            world=world,
            prefix="N",
            decision_at=_us(end),
        )
        for b in range(0, max(n_leads, 1), LEADS_PER_BLOCK)
    ]
    return NewBatch(leads=pl.concat([p.leads for p in parts]), events=pl.concat([p.events for p in parts]), as_of=end)


def _creation_times(rng: np.random.Generator, n_leads: int, *, start: datetime, end: datetime) -> np.ndarray:
    """Sorted creation times (int64 µs since the epoch, whole seconds) in [start, end).

    Daily volume grows linearly by VOLUME_GROWTH over the period and weekends get WEEKEND_SHARE of a weekday.
    """
    s, e = _us(start), _us(end)
    n_days = max(1, -(-(e - s) // DAY_US))
    day = np.arange(n_days)
    is_weekend = (start.weekday() + day) % 7 >= 5
    weight = (1.0 + VOLUME_GROWTH * day / max(1, n_days - 1)) * np.where(is_weekend, WEEKEND_SHARE, 1.0)
    per_day = rng.multinomial(n_leads, weight / weight.sum())
    days = np.repeat(day, per_day)
    hour_p = np.asarray(HOUR_WEIGHTS, dtype=float)
    hours = rng.choice(24, size=n_leads, p=hour_p / hour_p.sum())
    seconds = rng.integers(0, 3600, size=n_leads)
    out = s + days * DAY_US + (hours * 3600 + seconds) * SECOND_US
    out = np.sort(np.minimum(out, e - SECOND_US))
    return out.astype(np.int64)


def driver_terms(features: Frame) -> Frame:
    """The true log-odds term of every business group (GROUPS order), from columns `build_features` writes.

    Needs lead_id, the firmographic columns, `seniority`, the counts named by `count_name` for 7, 30 and 90 days,
    `days_since_high_intent` and `careers_only_90d`. Missing categories weigh 0 (a missing timeline: NULL_WEIGHT).

    Examples
    --------
    >>> row = {"lead_id": ["a"], "industry": ["software"], "employee_band": ["51-200"], "region": [None],
    ...        "seniority": ["vp"], "email_domain_kind": ["corporate"], "lead_source": ["referral"],
    ...        "buying_timeline": ["<3 months"], "days_since_high_intent": [0.0], "careers_only_90d": [0]}
    >>> row |= {c: [0] for c in driver_inputs() if c not in row}
    >>> row |= {"page_pricing_7d": [3], "page_pricing_30d": [3]}
    >>> driver_terms(pl.DataFrame(row)).select(pl.col("company_fit", "pricing_interest", "recency").round(3))
    shape: (1, 3)
    ┌─────────────┬──────────────────┬─────────┐
    │ company_fit ┆ pricing_interest ┆ recency │
    │ ---         ┆ ---              ┆ ---     │
    │ f64         ┆ f64              ┆ f64     │
    ╞═════════════╪══════════════════╪═════════╡
    │ 0.75        ┆ 1.386            ┆ 1.3     │
    └─────────────┴──────────────────┴─────────┘
    """

    def n(kind: str, days: int) -> pl.Expr:
        return pl.col(count_name(kind, days)).cast(pl.Float64)

    def log1p(x: pl.Expr) -> pl.Expr:
        return x.log1p()

    large = pl.col("employee_band").is_in(list(LARGE_FIRM_BANDS)).fill_null(False)
    fit = (
        _weight("industry", INDUSTRY_WEIGHT)
        + _weight("employee_band", EMPLOYEE_WEIGHT)
        + _weight("region", REGION_WEIGHT)
        + pl.when(large).then(_factor("industry", LARGE_FIRM_BY_INDUSTRY, 0.0)).otherwise(0.0)
    )
    terms: dict[str, pl.Expr] = {
        "company_fit": fit,
        "seniority": _weight(SENIORITY, SENIORITY_WEIGHT),
        "pricing_interest": (
            PRICING_7D * log1p(n("page_pricing", 7))
            + PRICING_8_30D * log1p(n("page_pricing", 30) - n("page_pricing", 7))
        )
        * _factor(SENIORITY, PRICING_BY_SENIORITY, PRICING_BY_SENIORITY_NULL),
        "demo_trial": pl.sum_horizontal(
            [w * (n(k, DEMO_TRIAL_DAYS) > 0).cast(pl.Float64) for k, w in DEMO_TRIAL_WEIGHT.items()]
        )
        * pl.when(fit < 0).then(DEMO_POOR_FIT_FACTOR).otherwise(1.0)
        * pl.when(n("page_pricing", 7) > 0).then(DEMO_WITH_PRICING_FACTOR).otherwise(1.0),
        "engagement": pl.sum_horizontal([w * log1p(n(k, d)) for k, (w, d) in ENGAGEMENT_WEIGHT.items()]),
        "research": pl.sum_horizontal([w * log1p(n(k, RESEARCH_DAYS)) for k, w in RESEARCH_WEIGHT.items()]),
        "recency": (RECENCY_WEIGHT * (-pl.col(HIGH_INTENT_RECENCY).cast(pl.Float64) / RECENCY_DAYS).exp()).fill_null(
            0.0
        ),
        "job_seeker": CAREERS_ONLY_WEIGHT * pl.col(CAREERS_ONLY).cast(pl.Float64)
        + CAREERS_VIEW_WEIGHT * log1p(n("page_careers", CAREERS_DAYS)),
        "email_domain": _weight("email_domain_kind", EMAIL_DOMAIN_WEIGHT),
        "lead_source": _weight("lead_source", LEAD_SOURCE_WEIGHT),
        "buying_timeline": _weight("buying_timeline", TIMELINE_WEIGHT)
        * pl.when(pl.col(HIGH_INTENT_RECENCY) <= TIMELINE_ACTED_DAYS).then(1.0).otherwise(TIMELINE_IDLE_FACTOR),
    }
    return features.select(pl.col(LEAD_ID), *[expr.alias(name) for name, expr in terms.items()])


def driver_inputs() -> list[str]:
    """The event-feature columns `driver_terms` reads (besides lead_id, firmographics and seniority)."""
    return [count_name(k, d) for k, d in _driver_counts()] + [HIGH_INTENT_RECENCY, CAREERS_ONLY]


def _driver_counts() -> list[tuple[str, int]]:
    """(event kind, window days) of every count `driver_terms` reads."""
    pairs = [("page_pricing", 7), ("page_pricing", 30), ("page_careers", CAREERS_DAYS)]
    pairs += [(k, DEMO_TRIAL_DAYS) for k in DEMO_TRIAL_WEIGHT]
    pairs += [(k, d) for k, (_, d) in ENGAGEMENT_WEIGHT.items()]
    pairs += [(k, RESEARCH_DAYS) for k in RESEARCH_WEIGHT]
    return list(dict.fromkeys(pairs))


def intercept_at(t0_us: np.ndarray, *, start_us: int, end_us: int) -> np.ndarray:
    """The baseline log-odds at each t0: BASE_LOG_ODDS plus a linear drift of +-DRIFT over the period."""
    elapsed = np.clip((t0_us - start_us) / max(1, end_us - start_us), 0.0, 1.0)
    return BASE_LOG_ODDS + DRIFT * (2.0 * elapsed - 1.0)


# ---------------------------------------------------------------- the simulation of one block


@dataclass(frozen=True)
class _World:
    start: int  # µs since the epoch
    snapshot: int
    observation: int  # µs
    horizon: int


@dataclass(frozen=True)
class _Tables:
    """The rate tables as arrays (segment x kind), built once on first use."""

    burst: np.ndarray
    anonymous: np.ndarray
    trickle: np.ndarray
    sensitivity: np.ndarray
    ramp: np.ndarray
    titles: tuple[str, ...]
    title_level: np.ndarray
    title_offset: np.ndarray
    title_count: np.ndarray
    high_intent: np.ndarray
    intent_pages: np.ndarray


@functools.cache
def _tables() -> _Tables:
    levels = list(TITLES)
    titles = tuple(t for lvl in levels for t in TITLES[lvl])
    counts = np.array([len(TITLES[lvl]) for lvl in levels])
    kind_index = {k: i for i, k in enumerate(EVENT_TYPES)}
    # "careers-only" means careers views and none of these, as features.build defines it.
    intent_pages = [k for k in EVENT_TYPES if k.startswith("page_") and k != "page_careers"]
    return _Tables(
        burst=np.asarray(BURST, dtype=float),
        anonymous=np.asarray(ANONYMOUS, dtype=float),
        trickle=np.asarray(TRICKLE_PER_30D, dtype=float),
        sensitivity=np.array([INTENT_SENSITIVITY[k] for k in EVENT_TYPES]),
        ramp=np.array([RAMP.get(k, 0.0) for k in EVENT_TYPES]),
        titles=titles,
        title_level=np.repeat(np.arange(len(levels)), counts),
        title_offset=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        title_count=counts,
        high_intent=np.array([kind_index[k] for k in HIGH_INTENT_EVENTS]),
        intent_pages=np.array(sorted({kind_index[k] for k in (*intent_pages, *HIGH_INTENT_EVENTS)})),
    )


def _simulate(
    rng: np.random.Generator,
    created: np.ndarray,
    *,
    first_id: int,
    world: _World,
    prefix: str = "L",
    decision_at: int | None = None,
) -> Chunk:
    """Simulate one block of leads end to end (see the module docstring for the story)."""
    n = len(created)
    tab = _tables()
    t0 = created + world.observation
    seg = rng.choice(len(SEGMENTS), size=n, p=np.asarray(SEGMENT_SHARE))
    firmo = _firmographics(rng, seg)
    intent = _intent(rng, seg, firmo)

    # Events up to the snapshot: anonymous visits, the fading burst, the noise trickle.
    lead, kind, at = _base_events(rng, seg, intent, created, firmo, world)
    # Fast inbound prospects convert before t0; their buying activity before converting is part of the history.
    fast = (seg == 0) & (rng.random(n) < _fast_inbound_p(firmo, intent))
    conv = np.full(n, -1, dtype=np.int64)
    fast_delay = _trunc_exp(rng, FAST_INBOUND_MEAN_DAYS, world.observation / DAY_US, int(fast.sum()))
    conv[fast] = created[fast] + _days_us(fast_delay)
    ramp = _ramp_events(rng, np.flatnonzero(fast), conv, not_before=created)
    lead, kind, at = (np.concatenate(x) for x in zip((lead, kind, at), ramp, strict=True))
    keep = at < world.snapshot
    lead, kind, at = lead[keep], kind[keep], at[keep]

    # The truth, from firmographics and events before t0 only.
    ids = _lead_ids(first_id, n, prefix)
    leads = _leads_frame(rng, ids, created, firmo)
    inputs = _driver_input_frame(ids, t0, lead, kind, at, tab)
    features = leads.select(LEAD_ID, *_FIRMO_COLS).with_columns(parse_seniority(pl.col("job_title")).alias(SENIORITY))
    drivers = driver_terms(features.hstack(inputs.drop(LEAD_ID)))
    intercept = intercept_at(t0, start_us=world.start, end_us=world.snapshot)
    log_odds = intercept + drivers.drop(LEAD_ID).to_numpy().sum(axis=1)
    p_true = expit(log_odds)

    # Outcomes: the Bernoulli label, its timing, buyers' ramp-up after t0, late converters, then the snapshot cut.
    label = (rng.random(n) < p_true) & ~fast
    timeline = firmo["buying_timeline"]
    mean = np.where(timeline == BUYING_TIMELINES.index(FAST_TIMELINE), DELAY_MEAN_FAST, DELAY_MEAN)
    delay = _trunc_exp(rng, mean, world.horizon / DAY_US, n)
    conv = np.where(label, t0 + _days_us(delay), conv)
    late = ~fast & ~label & (rng.random(n) < LATE_SHARE * p_true)
    conv = np.where(late, t0 + world.horizon + _days_us(rng.exponential(LATE_MEAN_DAYS, n)), conv)
    r_lead, r_kind, r_at = _ramp_events(rng, np.flatnonzero(label | late), conv, not_before=t0)
    keep = r_at < world.snapshot
    lead, kind, at = (np.concatenate([a, b[keep]]) for a, b in ((lead, r_lead), (kind, r_kind), (at, r_at)))
    conv = np.where(conv > world.snapshot, -1, conv)

    decision = t0 if decision_at is None else np.full(n, decision_at, dtype=np.int64)
    events = _events_frame(ids, lead, kind, at)
    activity = recent_activity(events.lazy(), pl.LazyFrame({LEAD_ID: ids, T0: _ts(decision)})).collect()
    leads = leads.with_columns(legacy_score(leads, activity).get_column("legacy_score"))
    leads = leads.select(LEAD_ID, CREATED_AT, *_FIRMO_COLS, "legacy_score", "name", "email")
    outcomes = pl.DataFrame({LEAD_ID: ids, CONVERTED: conv >= 0, CONVERTED_AT: _ts(conv)}).with_columns(
        pl.when(pl.col(CONVERTED)).then(pl.col(CONVERTED_AT)).alias(CONVERTED_AT)
    )
    truth = pl.DataFrame({LEAD_ID: ids, T0: _ts(t0), P_TRUE: p_true}).hstack(drivers.drop(LEAD_ID))
    truth = truth.with_columns(pl.Series(INTERCEPT, intercept))
    latent = pl.DataFrame({LEAD_ID: ids, SEGMENT: np.asarray(SEGMENTS)[seg], INTENT: intent})
    return Chunk(leads=leads, events=events, outcomes=outcomes, truth=truth, latent=latent)


_FIRMO_COLS: tuple[str, ...] = (
    "industry", "employee_band", "region", "job_title", "lead_source", "email_domain_kind", "buying_timeline",
)  # fmt: skip
_VALUES: dict[str, tuple[str, ...]] = {
    "industry": INDUSTRIES,
    "employee_band": EMPLOYEE_BANDS,
    "region": REGIONS,
    "lead_source": LEAD_SOURCES,
    "email_domain_kind": EMAIL_DOMAIN_KINDS,
    "buying_timeline": BUYING_TIMELINES,
}
_MIX: dict[str, tuple[tuple[float, ...], ...]] = {
    "industry": INDUSTRY_MIX,
    "employee_band": EMPLOYEE_MIX,
    "region": REGION_MIX,
    "lead_source": LEAD_SOURCE_MIX,
    "email_domain_kind": EMAIL_DOMAIN_MIX,
    "buying_timeline": TIMELINE_MIX,
}


def _firmographics(rng: np.random.Generator, seg: np.ndarray) -> dict[str, np.ndarray]:
    """Codes (index into the value tuple, -1 = missing) of every firmographic column; job_title indexes _tables()."""
    tab = _tables()
    out: dict[str, np.ndarray] = {}
    for col in _FIRMO_COLS:
        if col == "job_title":
            level = _draw_by_segment(rng, seg, SENIORITY_MIX)
            pick = (rng.random(len(seg)) * tab.title_count[level]).astype(np.int64)
            codes = tab.title_offset[level] + pick
        else:
            codes = _draw_by_segment(rng, seg, _MIX[col])
            codes = np.where(codes == len(_VALUES[col]), -1, codes)  # TIMELINE_MIX's last column: not stated
        missing = rng.random(len(seg)) < MISSING_SHARE.get(col, 0.0)
        out[col] = np.where(missing, -1, codes)
    return out


def _draw_by_segment(rng: np.random.Generator, seg: np.ndarray, mix: Sequence[Sequence[float]]) -> np.ndarray:
    """Draw one category per lead from its segment's row of `mix` (inverse CDF: one uniform per lead)."""
    cdf = np.cumsum(np.asarray(mix, dtype=float), axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(seg))
    return (u[:, None] >= cdf[seg]).sum(axis=1).clip(0, cdf.shape[1] - 1)


def _code_weights(codes: np.ndarray, values: tuple[str, ...], weight: Mapping[str, float]) -> np.ndarray:
    lookup = np.array([weight.get(v, 0.0) for v in values] + [0.0])
    return lookup[codes]  # -1 picks the trailing 0.0: missing weighs nothing


def _intent(rng: np.random.Generator, seg: np.ndarray, firmo: dict[str, np.ndarray]) -> np.ndarray:
    """Latent buying intent: segment, fit and stated timeline, plus noise."""
    tab = _tables()
    levels = list(TITLES)
    seniority_w = np.array([SENIORITY_WEIGHT[lvl] for lvl in levels] + [0.0])
    title = firmo["job_title"]
    fit = (
        _code_weights(firmo["industry"], INDUSTRIES, INDUSTRY_WEIGHT)
        + _code_weights(firmo["employee_band"], EMPLOYEE_BANDS, EMPLOYEE_WEIGHT)
        + _code_weights(firmo["region"], REGIONS, REGION_WEIGHT)
        + seniority_w[np.where(title < 0, len(levels), tab.title_level[title])]
    )
    shift = np.array([INTENT_TIMELINE[v] for v in BUYING_TIMELINES] + [INTENT_TIMELINE[None]])
    noise = rng.normal(0.0, INTENT_SD, len(seg))
    return np.asarray(INTENT_MEAN)[seg] + INTENT_FIT * fit + shift[firmo["buying_timeline"]] + noise


def _fast_inbound_p(firmo: dict[str, np.ndarray], intent: np.ndarray) -> np.ndarray:
    demo = firmo["lead_source"] == LEAD_SOURCES.index("inbound demo")
    fast = firmo["buying_timeline"] == BUYING_TIMELINES.index(FAST_TIMELINE)
    x = FAST_INBOUND_LOG_ODDS + FAST_INBOUND_DEMO * demo + FAST_INBOUND_TIMELINE * fast + FAST_INBOUND_INTENT * intent
    return expit(x)


def _base_events(
    rng: np.random.Generator,
    seg: np.ndarray,
    intent: np.ndarray,
    created: np.ndarray,
    firmo: dict[str, np.ndarray],
    world: _World,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lead index, kind index, occurred_at µs) of the anonymous, burst, trickle and sign-up events."""
    tab = _tables()
    lift = np.exp(tab.sensitivity[None, :] * intent[:, None])
    life_days = np.maximum(world.snapshot - created, 0) / DAY_US

    lead_a, kind_a = _expand(rng.poisson(tab.anonymous[seg] * lift))
    age = _days_us(PRE_SIGNUP_DAYS * rng.random(len(lead_a)) ** 2)  # closer to sign-up is likelier
    at_a = created[lead_a] - age

    lead_b, kind_b = _expand(rng.poisson(tab.burst[seg] * lift))
    pace = BURST_DAYS * np.exp(rng.normal(0.0, BURST_PACE_SD, len(seg)))  # some leads go cold fast, some simmer
    at_b = created[lead_b] + _days_us(rng.exponential(pace[lead_b]))

    lead_t, kind_t = _expand(rng.poisson(tab.trickle[seg] * life_days[:, None] / 30.0))
    at_t = created[lead_t] + _days_us(rng.random(len(lead_t)) * life_days[lead_t])

    # Sign-up itself: an "inbound demo" lead requested a demo, a "webinar" lead attended one.
    signup = {"inbound demo": "demo_request", "webinar": "webinar"}
    lead_s = [np.flatnonzero(firmo["lead_source"] == LEAD_SOURCES.index(src)) for src in signup]
    kind_s = [np.full(len(ix), EVENT_TYPES.index(k)) for ix, k in zip(lead_s, signup.values(), strict=True)]
    lead_sc = np.concatenate(lead_s)
    at_s = created[lead_sc] + rng.integers(0, 3600, len(lead_sc)) * SECOND_US
    return (
        np.concatenate([lead_a, lead_b, lead_t, lead_sc]).astype(np.int64),
        np.concatenate([kind_a, kind_b, kind_t, *kind_s]).astype(np.int64),
        np.concatenate([at_a, at_b, at_t, at_s]).astype(np.int64),
    )


def _ramp_events(
    rng: np.random.Generator, buyers: np.ndarray, conv: np.ndarray, *, not_before: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buying activity in the days before each buyer's conversion, dropped where it would fall before `not_before`."""
    tab = _tables()
    counts = rng.poisson(np.broadcast_to(tab.ramp, (len(buyers), len(EVENT_TYPES))))
    idx, kind = _expand(counts)
    lead = buyers[idx]
    at = conv[lead] - _days_us(rng.exponential(RAMP_DAYS, len(lead)))
    keep = at >= not_before[lead]
    return lead[keep].astype(np.int64), kind[keep].astype(np.int64), at[keep].astype(np.int64)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row index, column index) repeated `counts[row, column]` times, row-major."""
    rows, cols = counts.shape
    flat = counts.ravel()
    return np.repeat(np.repeat(np.arange(rows), cols), flat), np.repeat(np.tile(np.arange(cols), rows), flat)


def _driver_input_frame(
    ids: pl.Series, t0: np.ndarray, lead: np.ndarray, kind: np.ndarray, at: np.ndarray, tab: _Tables
) -> pl.DataFrame:
    """The event columns `driver_terms` reads, computed here from the arrays (tests recompute them with
    `build_features` from the written files, so the two implementations check each other)."""
    n, k = len(t0), len(EVENT_TYPES)
    age = t0[lead] - at
    pre = age > 0
    lead, kind, age = lead[pre], kind[pre], age[pre]
    key = lead * k + kind
    windows = sorted({d for _, d in _driver_counts()} | {CAREERS_DAYS})
    counts = {d: np.bincount(key[age <= d * DAY_US], minlength=n * k).reshape(n, k) for d in windows}
    cols: dict[str, object] = {LEAD_ID: ids}
    for kind_name, days in _driver_counts():
        cols[count_name(kind_name, days)] = counts[days][:, EVENT_TYPES.index(kind_name)].astype(np.int32)
    last = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.isin(kind, tab.high_intent)
    np.minimum.at(last, lead[hi], age[hi])
    cols[HIGH_INTENT_RECENCY] = pl.Series(np.where(last == np.iinfo(np.int64).max, np.nan, last / DAY_US))
    careers = counts[CAREERS_DAYS][:, EVENT_TYPES.index("page_careers")]
    intent_views = counts[CAREERS_DAYS][:, tab.intent_pages].sum(axis=1)
    cols[CAREERS_ONLY] = ((careers > 0) & (intent_views == 0)).astype(np.int8)
    frame = pl.DataFrame(cols)
    return frame.with_columns(pl.col(HIGH_INTENT_RECENCY).fill_nan(None))


# ---------------------------------------------------------------- frames


def _leads_frame(
    rng: np.random.Generator, ids: pl.Series, created: np.ndarray, firmo: dict[str, np.ndarray]
) -> pl.DataFrame:
    """Firmographics as strings plus fake PII: a name, and an email whose domain matches email_domain_kind."""
    n = len(created)
    tab = _tables()
    cols: dict[str, pl.Series] = {LEAD_ID: ids, CREATED_AT: _ts(created)}
    for col in _FIRMO_COLS:
        values = tab.titles if col == "job_title" else _VALUES[col]
        cols[col] = _strings(firmo[col], values).alias(col)
    first = _strings(rng.integers(0, len(FIRST_NAMES), n), FIRST_NAMES)
    last = _strings(rng.integers(0, len(LAST_NAMES), n), LAST_NAMES)
    company = _strings(rng.integers(0, len(COMPANY_WORDS), n), COMPANY_WORDS)
    number = pl.Series(rng.integers(1, 1000, n)).cast(pl.String)
    free = _strings(rng.integers(0, len(FREE_MAIL_DOMAINS), n), FREE_MAIL_DOMAINS)
    rival = _strings(rng.integers(0, len(COMPETITOR_DOMAINS), n), COMPETITOR_DOMAINS)
    frame = pl.DataFrame(cols).with_columns(
        first.alias("_first"), last.alias("_last"), company.alias("_co"), number.alias("_no"),
        free.alias("_free"), rival.alias("_rival"),
    )  # fmt: skip
    kind = pl.col("email_domain_kind")
    domain = (
        pl.when(kind == "free-mail").then(pl.col("_free"))
        .when(kind == "student").then(pl.concat_str(pl.lit("student."), pl.col("_co"), pl.lit("-university.example")))
        .when(kind == "competitor").then(pl.col("_rival"))
        .otherwise(pl.concat_str(pl.col("_co"), pl.col("_no"), pl.lit(".example.com")))
    )  # fmt: skip
    return frame.with_columns(
        pl.concat_str(pl.col("_first"), pl.lit(" "), pl.col("_last")).alias("name"),
        pl.concat_str(
            pl.col("_first").str.to_lowercase(), pl.lit("."), pl.col("_last").str.to_lowercase(), pl.lit("@"), domain
        ).alias("email"),
    ).drop("_first", "_last", "_co", "_no", "_free", "_rival")


def _events_frame(ids: pl.Series, lead: np.ndarray, kind: np.ndarray, at: np.ndarray) -> pl.DataFrame:
    """Events sorted by lead, then time (ties keep the order they were drawn in): one fixed order, identical bytes."""
    seconds = (at - at.min()) // SECOND_US if len(at) else at  # < 2**40 s, so the key below fits in int64
    order = np.argsort((lead << 40) | seconds, kind="stable")
    return pl.DataFrame(
        {
            LEAD_ID: ids.gather(lead[order]),
            OCCURRED_AT: _ts(at[order]),
            EVENT_TYPE: _strings(kind[order], EVENT_TYPES),
        }
    )


def _lead_ids(first_id: int, n: int, prefix: str) -> pl.Series:
    numbers = pl.int_range(first_id + 1, first_id + n + 1, eager=True, dtype=pl.Int64)
    return (prefix + numbers.cast(pl.String).str.zfill(7)).alias(LEAD_ID)


def _factor(col: str, factors: Mapping[str, float], null: float) -> pl.Expr:
    """A multiplier by category (for the interaction terms); unknown or missing categories get `null`."""
    return pl.col(col).replace_strict(factors, default=null, return_dtype=pl.Float64).fill_null(null)


def _strings(codes: np.ndarray, values: Sequence[str]) -> pl.Series:
    """Strings for integer codes; -1 means missing."""
    lookup = pl.Series([*values, None], dtype=pl.String)
    return lookup.gather(np.where(codes < 0, len(values), codes))


def _ts(us: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(us, dtype=np.int64)).cast(TS)


def _weight(col: str, weights: Mapping[str, float]) -> pl.Expr:
    return (
        pl.col(col).cast(pl.String)
        .replace_strict(dict(weights), default=None, return_dtype=pl.Float64)
        .fill_null(NULL_WEIGHT.get(col, 0.0))
    )  # fmt: skip


def _trunc_exp(rng: np.random.Generator, mean: np.ndarray | float, upper: float, size: int) -> np.ndarray:
    """Exponential(mean) draws conditioned to [0, upper), by inverting the truncated CDF."""
    u = rng.random(size)
    return -np.asarray(mean) * np.log1p(-u * (1.0 - np.exp(-upper / np.asarray(mean))))


def _days_us(days: np.ndarray) -> np.ndarray:
    """Days to whole-second microseconds, rounded down (so a delay never reaches its upper bound)."""
    return (np.asarray(days) * 86_400).astype(np.int64) * SECOND_US


def _us(ts: datetime) -> int:
    delta = _as_utc(ts) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * SECOND_US + delta.microseconds


def _as_utc(ts: str | date | datetime) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    if not isinstance(ts, datetime):
        ts = datetime(ts.year, ts.month, ts.day)
    return utc(ts)
