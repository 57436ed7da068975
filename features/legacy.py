"""The legacy point score leadlift competes with: the hand-set rules a competent marketing-ops team writes.

Points for fit (industry, company size, region, title), for behaviour in the last LEGACY_WINDOW_DAYS (pricing
visits, repeat visits, downloads, opens, clicks) and for engagement (demo, meeting, trial, reply, webinar, form),
minus points for the negative signals (students, job seekers, free-mail and competitor domains), clamped to 0-100.
Activity older than the window earns nothing: the usual way such rules "decay". Sales gets the lead at 70-80 points.

It is a fair rule, not a strawman; what it lacks is what leadlift adds: weights measured from outcomes, recency
within the window, diminishing returns, and a threshold chosen from data.
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from features.build import count_name
from features.schema import DAY_US, EVENT_TYPE, EVENT_TYPES, LEAD_ID, LEGACY_SCORE, OCCURRED_AT, T0, TS

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

#: Only activity in this many days before the decision time counts.
LEGACY_WINDOW_DAYS = 30
VISIT_DAYS = f"visit_days_{LEGACY_WINDOW_DAYS}d"

INDUSTRY_POINTS: dict[str, int] = {
    "software": 15, "fintech": 15, "financial services": 10, "professional services": 8, "healthcare": 8,
    "manufacturing": 5, "logistics": 5, "retail": 5, "media": 5,
}  # fmt: skip
#: Bigger is better, as most marketing teams score it.
SIZE_POINTS: dict[str, int] = {
    "11-50": 4, "51-200": 8, "201-500": 10, "501-1000": 10, "1001-5000": 12, "5000+": 12,
}  # fmt: skip
REGION_POINTS: dict[str, int] = {"North America": 5, "UK & Ireland": 5, "Western Europe": 5, "Nordics": 5}
#: Title keywords (case-insensitive regex), first match wins: decision makers score high.
TITLE_POINTS: tuple[tuple[str, int], ...] = (
    (r"\b(vp|svp|evp|vice president|head of)\b", 10),
    (r"\b(chief|ceo|cto|cfo|coo|cmo|founder|co-founder|owner|president)\b", 12),
    (r"\bdirector\b", 8),
    (r"\b(manager|lead)\b", 5),
)
STUDENT_TITLE = r"\b(student|intern)\b"

#: (points per event in the window, cap) for behaviour and engagement.
ACTIVITY_POINTS: dict[str, tuple[int, int]] = {
    "page_pricing": (5, 15),
    "page_product": (1, 5),
    "content_download": (5, 15),
    "email_open": (1, 5),
    "email_click": (2, 8),
    "webinar": (10, 20),
    "form_fill": (5, 10),
    "email_reply": (10, 20),
    "trial_start": (15, 15),
    "meeting": (20, 20),
    "demo_request": (25, 25),
}
#: Repeat visits: (distinct days with page views in the window, points), the highest reached applies.
REPEAT_VISIT_POINTS: tuple[tuple[int, int], ...] = ((3, 5), (6, 10))

STUDENT_PENALTY = -30
CAREERS_PENALTY = -10
#: Extra penalty when careers views outnumber all other page views: a job seeker, not a buyer.
MOSTLY_CAREERS_PENALTY = -15
#: A student domain counts as a student (STUDENT_PENALTY), once.
DOMAIN_PENALTY: dict[str, int] = {"free-mail": -10, "competitor": -50}

_PAGES: tuple[str, ...] = tuple(k for k in EVENT_TYPES if k.startswith("page_"))


def recent_activity(events: pl.LazyFrame, decisions: pl.LazyFrame) -> pl.LazyFrame:
    """Per lead: event counts by kind and distinct page-view days in the LEGACY_WINDOW_DAYS before its `t0`.

    `decisions` holds lead_id and t0; only events with t0 - window <= occurred_at < t0 count (the same window
    edges as `features.build`). Leads without such events get no row; `legacy_score` reads them as zeros.
    """
    age = (pl.col(T0) - pl.col(OCCURRED_AT)).dt.total_microseconds()
    recent = (
        events.select(LEAD_ID, OCCURRED_AT, EVENT_TYPE)
        .join(decisions.select(LEAD_ID, pl.col(T0).cast(TS)), on=LEAD_ID, how="inner")
        .filter((age > 0) & (age <= LEGACY_WINDOW_DAYS * DAY_US))
    )
    kind = pl.col(EVENT_TYPE)
    return recent.group_by(LEAD_ID).agg(
        *[(kind == k).sum().cast(pl.Int32).alias(count_name(k, LEGACY_WINDOW_DAYS)) for k in EVENT_TYPES],
        pl.col(OCCURRED_AT).filter(kind.is_in(_PAGES)).dt.date().n_unique().cast(pl.Int32).alias(VISIT_DAYS),
    )


def legacy_score(leads: Frame, activity: Frame) -> Frame:
    """lead_id and the legacy point score (Int64, 0-100) of every lead, in the leads' order.

    Examples
    --------
    >>> leads = pl.DataFrame({"lead_id": ["a", "b", "c"], "industry": ["software", "education", None],
    ...     "employee_band": ["51-200", "1-10", None], "region": ["North America", "APAC", None],
    ...     "job_title": ["VP of Engineering", "Student", None],
    ...     "email_domain_kind": ["corporate", "student", "free-mail"]})
    >>> activity = pl.DataFrame({"lead_id": ["a"], "page_pricing_30d": [2], "demo_request_30d": [1]})
    >>> legacy_score(leads, activity)
    shape: (3, 2)
    ┌─────────┬──────────────┐
    │ lead_id ┆ legacy_score │
    │ ---     ┆ ---          │
    │ str     ┆ i64          │
    ╞═════════╪══════════════╡
    │ a       ┆ 73           │
    │ b       ┆ 0            │
    │ c       ┆ 0            │
    └─────────┴──────────────┘
    """
    counts = [count_name(k, LEGACY_WINDOW_DAYS) for k in EVENT_TYPES] + [VISIT_DAYS]
    present = set(activity.collect_schema().names())
    acts = activity.select(
        LEAD_ID, *[pl.col(c) if c in present else pl.lit(0, dtype=pl.Int32).alias(c) for c in counts]
    )
    frame = leads.join(acts, on=LEAD_ID, how="left", maintain_order="left").with_columns(pl.col(counts).fill_null(0))
    points = _fit_points() + _activity_points() + _negative_points()
    return frame.select(LEAD_ID, points.clip(0, 100).round().cast(pl.Int64).alias(LEGACY_SCORE))


def _n(kind: str) -> pl.Expr:
    return pl.col(count_name(kind, LEGACY_WINDOW_DAYS))


def _lookup(col: str, points: dict[str, int]) -> pl.Expr:
    return pl.col(col).cast(pl.String).replace_strict(points, default=0, return_dtype=pl.Int64).fill_null(0)


def _title() -> pl.Expr:
    return pl.col("job_title").cast(pl.String).str.to_lowercase()


def _fit_points() -> pl.Expr:
    title = _title()
    title_points: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for pattern, pts in reversed(TITLE_POINTS):
        title_points = pl.when(title.str.contains(pattern)).then(pl.lit(pts, dtype=pl.Int64)).otherwise(title_points)
    return (
        _lookup("industry", INDUSTRY_POINTS)
        + _lookup("employee_band", SIZE_POINTS)
        + _lookup("region", REGION_POINTS)
        + title_points.fill_null(0)
    )


def _activity_points() -> pl.Expr:
    behaviour = pl.sum_horizontal([(_n(k) * each).clip(0, cap) for k, (each, cap) in ACTIVITY_POINTS.items()])
    repeat: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for days, pts in REPEAT_VISIT_POINTS:
        repeat = pl.when(pl.col(VISIT_DAYS) >= days).then(pl.lit(pts, dtype=pl.Int64)).otherwise(repeat)
    return behaviour + repeat


def _negative_points() -> pl.Expr:
    student_domain = pl.col("email_domain_kind").cast(pl.String) == "student"
    student = (_title().str.contains(STUDENT_TITLE) | student_domain).fill_null(False)
    other_pages = pl.sum_horizontal([_n(k) for k in _PAGES if k != "page_careers"])
    careers = (
        pl.when(_n("page_careers") > other_pages).then(CAREERS_PENALTY + MOSTLY_CAREERS_PENALTY)
        .when(_n("page_careers") > 0).then(CAREERS_PENALTY)
        .otherwise(0)
    )  # fmt: skip
    return pl.when(student).then(STUDENT_PENALTY).otherwise(0) + careers + _lookup("email_domain_kind", DOMAIN_PENALTY)
