"""A second synthetic source, shaped like the exports real CRMs write, with its own ground truth.

`features.synthetic` writes leadlift's canonical tables directly. This generator writes what an analyst actually
downloads, so the mapping language is what has to bring it into shape:

- **hubspot**: a contacts table and an activities table. Column names carry spaces and slashes ("Record ID",
  "Country/Region"), times are ISO 8601 with a `Z`, the email sits in an `Email` column, and a page view's page is
  only in a `Page URL` column (the activity type just says PAGE_VIEW). A legacy `HubSpot Score`, a leaky
  `Lifecycle Stage` (it says "customer" once the lead converted) and a won date (`Became a Customer Date`).
- **salesforce**: Lead, Task, CampaignMember and Campaign tables written the Data Loader way (every field quoted,
  blanks as `""`). Lead times carry a numeric offset (`+0000`); task and response dates are date-only, in the CRM's
  local zone (`LOCAL_ZONE`). Calls have a disposition and a duration in seconds; campaign members need a lookup
  join to Campaign to tell a webinar from a trade show. A blank `Rating` means Cold. `Status` leaks the outcome.

**The truth.** Each lead's log-odds of converting within `horizon_days` after t0 = created + `observation_days` is
a sum of terms computed only from what a mapping can reach at t0: firmographics (seniority from a title written
with abbreviations, the email domain's kind, company size, industry, source, rating) and activity counts, values
and recency before t0, where a date-only activity is known at the end of its local day (the mapping language's
rule). The label is a Bernoulli draw from it, so `p_true` is the oracle: the best AUC any model can reach.
Everything is drawn from one seeded generator: same arguments, same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy.special import expit

from features.schema import DAY_US, utc

STYLES: tuple[str, ...] = ("hubspot", "salesforce")
#: The Salesforce org's time zone: its date-only fields are local dates.
LOCAL_ZONE = "America/New_York"
P_TRUE = "p_true"

# ---------------------------------------------------------------- who the leads are

SENIORITY_TITLES: dict[str, tuple[str, ...]] = {
    "executive": ("CEO", "CRO", "CMO", "Founder", "Chief Revenue Officer", "COO", "Co-founder & CTO"),
    "vp": ("VP Sales", "SVP, Marketing", "EVP Operations", "Vice President, Finance", "Head of Growth"),
    "director": ("Dir, Marketing", "Director of IT", "Sr. Dir Sales", "Marketing Director"),
    "manager": ("Mgr, Marketing Ops", "Marketing Manager", "Sales Mgr", "Team Lead, Support", "IT Manager"),
    "individual_contributor": ("Analyst", "Software Engineer", "Marketing Specialist", "Account Executive",
                               "Consultant"),
    "student": ("Student", "Intern", "MBA Student"),
}
SENIORITY_SHARE = (0.08, 0.10, 0.14, 0.22, 0.38, 0.08)
SENIORITY_WEIGHT = {"executive": 0.9, "vp": 0.75, "director": 0.5, "manager": 0.15, "individual_contributor": -0.3,
                    "student": -1.4}
DOMAIN_KINDS = ("corporate", "free-mail", "student")
DOMAIN_WEIGHT = {"corporate": 0.3, "free-mail": -0.5, "student": -1.4}
FREE_MAIL = ("gmail.com", "yahoo.com")
SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
SIZE_SHARE = (0.18, 0.24, 0.26, 0.2, 0.12)
SIZE_WEIGHT = {"1-10": -0.7, "11-50": -0.1, "51-200": 0.4, "201-1000": 0.5, "1000+": 0.2}
SIZE_EMPLOYEES = {"1-10": (1, 10), "11-50": (11, 50), "51-200": (51, 200), "201-1000": (201, 1000),
                  "1000+": (1001, 20000)}
INDUSTRIES = ("Software", "Financial Services", "Healthcare", "Retail", "Manufacturing", "Education")
INDUSTRY_WEIGHT = {"Software": 0.4, "Financial Services": 0.3, "Healthcare": 0.1, "Retail": -0.2,
                   "Manufacturing": 0.0, "Education": -0.5}
SOURCES = ("Organic Search", "Paid Social", "Referral", "Direct Traffic", "Email Marketing")
SOURCE_WEIGHT = {"Organic Search": 0.1, "Paid Social": -0.5, "Referral": 0.8, "Direct Traffic": 0.0,
                 "Email Marketing": -0.2}
COUNTRIES = ("United States", "United Kingdom", "Germany", "India", "Brazil")
RATINGS = ("Hot", "Warm", "Cold", "")  # "" is a blank: it means Cold
RATING_WEIGHT = {"Hot": 0.7, "Warm": 0.25, "Cold": -0.3, "": -0.3}
FIRST = ("Ada", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam")
LAST = ("Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen")
COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "vandelay", "tyrell", "wonka", "stark", "zenith")

# ---------------------------------------------------------------- what they do (expected counts at intent 0)

#: HubSpot activity kinds: (activity type, page path or None, expected count, intent sensitivity).
HUBSPOT_ACTIVITY: tuple[tuple[str, str | None, float, float], ...] = (
    ("PAGE_VIEW", "/pricing", 0.9, 0.9),
    ("PAGE_VIEW", "/product/features", 2.0, 0.4),
    ("PAGE_VIEW", "/docs/getting-started", 1.0, 0.3),
    ("PAGE_VIEW", "/blog/lead-scoring-guide", 2.5, 0.0),
    ("PAGE_VIEW", "/careers/open-roles", 0.3, -0.6),
    ("EMAIL_OPEN", None, 5.0, 0.1),
    ("EMAIL_CLICK", None, 1.0, 0.5),
    ("FORM_SUBMISSION", None, 0.6, 0.4),
    ("MEETING_BOOKED", None, 0.15, 1.1),
)
#: Salesforce task kinds: (Type, CallDisposition, expected count, intent sensitivity).
SALESFORCE_TASKS: tuple[tuple[str, str | None, float, float], ...] = (
    ("Call", "Connected", 0.8, 0.8),
    ("Call", "No Answer", 1.5, -0.2),
    ("Email", None, 2.5, 0.0),
)
CAMPAIGN_TYPES = ("Webinar", "Trade Show", "Content Syndication", "Email")
CAMPAIGN_RATE = (0.6, 0.3, 0.7, 1.2)
RESPONSE_LOGIT = (-0.3, -0.2, 0.2, -1.5)
RESPONSE_SENSITIVITY = (0.8, 0.7, 0.2, 0.3)
N_CAMPAIGNS = 40

#: Activity starts up to this many days before sign-up (anonymous visits stitched on sign-up, HubSpot only) and
#: fades after it like exp(-days / ACTIVE_DAYS).
PRE_DAYS = 30
ACTIVE_DAYS = 18.0
INTENT_SD = 1.0

# ---------------------------------------------------------------- the truth's behaviour terms

BASE_LOG_ODDS = {"hubspot": -3.0, "salesforce": -3.3}
RECENCY_DAYS = 6.0


@dataclass(frozen=True)
class Export:
    """The export's files (file name -> frame, every column as the CRM writes it) and the ground truth (lead id as
    the mapping will read it, t0, p_true), which only evaluation may read."""

    style: str
    tables: dict[str, pl.DataFrame]
    truth: pl.DataFrame
    #: Files to write with every field quoted (the Data Loader way).
    quote_all: bool


def crm_export(style: str, *, leads: int, seed: int, start: str = "2025-01-01", months: int = 12,
               observation_days: int = 14, horizon_days: int = 60) -> Export:
    """A seeded export in the given style ("hubspot" or "salesforce"); the snapshot is `start + months`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    rng = np.random.default_rng([seed, STYLES.index(style)])
    t_start = utc(datetime.fromisoformat(start))
    snapshot = t_start + timedelta(days=round(months * 30.4375))
    start_us, end_us = _us(t_start), _us(snapshot)
    people = _people(rng, leads, start_us, end_us, style)
    t0 = people["created"] + observation_days * DAY_US
    if style == "hubspot":
        events, tables_ev = _hubspot_activity(rng, people, end_us)
    else:
        events, tables_ev = _salesforce_activity(rng, people, end_us)
    terms = _fit_terms(people, style) + _behaviour_terms(events, t0, style)
    p_true = expit(BASE_LOG_ODDS[style] + terms)
    label = rng.random(leads) < p_true
    delay = rng.uniform(2.0, horizon_days - 2.0, leads)
    conv = np.where(label, t0 + (delay * DAY_US).astype(np.int64), -1)
    conv = np.where(conv >= end_us, -1, conv)
    ids = people["id"]
    truth = pl.DataFrame({"lead_id": ids, "t0": _ts(t0), P_TRUE: p_true})
    leads_table = (_hubspot_contacts if style == "hubspot" else _salesforce_leads)(rng, people, conv, p_true)
    return Export(style, {**leads_table, **tables_ev}, truth, quote_all=style == "salesforce")


# ---------------------------------------------------------------- people


def _people(rng: np.random.Generator, n: int, start_us: int, end_us: int, style: str) -> dict[str, Any]:
    created = np.sort(rng.integers(start_us, end_us, n))
    seniority = rng.choice(len(SENIORITY_SHARE), n, p=SENIORITY_SHARE)
    levels = list(SENIORITY_TITLES)
    titles = np.array([SENIORITY_TITLES[levels[s]][rng.integers(len(SENIORITY_TITLES[levels[s]]))]
                       for s in seniority], dtype=object)
    student = seniority == levels.index("student")
    domain = np.where(student & (rng.random(n) < 0.8), 2,
                      np.where(rng.random(n) < 0.22, 1, np.where(rng.random(n) < 0.04, 2, 0)))
    size = rng.choice(len(SIZES), n, p=SIZE_SHARE)
    industry = rng.integers(0, len(INDUSTRIES), n)
    source = rng.integers(0, len(SOURCES), n)
    rating = rng.choice(len(RATINGS), n, p=(0.15, 0.3, 0.35, 0.2))
    fit = (np.array([SENIORITY_WEIGHT[levels[s]] for s in seniority]) + np.array([SIZE_WEIGHT[SIZES[z]]
           for z in size]))
    intent = 0.4 * fit + rng.normal(0.0, INTENT_SD, n)
    first = np.array(FIRST)[rng.integers(0, len(FIRST), n)]
    last = np.array(LAST)[rng.integers(0, len(LAST), n)]
    company = np.array(COMPANIES)[rng.integers(0, len(COMPANIES), n)]
    number = rng.integers(1, 999, n)
    mail_domain = np.where(domain == 0, np.char.add(np.char.add(company.astype(str), number.astype(str)), ".com"),
                           np.where(domain == 1, np.array(FREE_MAIL)[rng.integers(0, 2, n)],
                                    np.char.add(company.astype(str), "-university.edu")))
    local = np.char.add(np.char.add(np.char.lower(first.astype(str)), "."), np.char.lower(last.astype(str)))
    email = np.char.add(np.char.add(local, "@"), mail_domain.astype(str))
    email = np.asarray(_or_none(rng.random(n) >= 0.03, email), dtype=object)  # a few contacts without an email
    return {"n": n, "created": created, "seniority": seniority, "title": titles, "domain": domain, "size": size,
            "industry": industry, "source": source, "rating": rating, "intent": intent, "first": first, "last": last,
            "company": company, "email": email, "id": _ids(rng, n, style)}


def _ids(rng: np.random.Generator, n: int, style: str) -> np.ndarray:
    """HubSpot record ids are numbers; Salesforce lead ids look like 00Q000000001234."""
    numbers = (np.arange(n) + 1000 + rng.integers(0, 1000)).astype(str)
    return numbers if style == "hubspot" else np.char.add("00Q", np.char.zfill(numbers, 12))


def _fit_terms(people: dict[str, Any], style: str) -> np.ndarray:
    """The firmographic part of the truth (a contact without an email has no domain term)."""
    levels = list(SENIORITY_TITLES)
    has_email = np.array([e is not None for e in people["email"]])
    domain = np.array([DOMAIN_WEIGHT[DOMAIN_KINDS[d]] for d in people["domain"]])
    out = (np.array([SENIORITY_WEIGHT[levels[s]] for s in people["seniority"]]) + np.where(has_email, domain, 0.0)
           + np.array([SIZE_WEIGHT[SIZES[z]] for z in people["size"]])
           + np.array([INDUSTRY_WEIGHT[INDUSTRIES[i]] for i in people["industry"]])
           + np.array([SOURCE_WEIGHT[SOURCES[s]] for s in people["source"]]))
    if style == "salesforce":
        out += np.array([RATING_WEIGHT[RATINGS[r]] for r in people["rating"]])
    return out


# ---------------------------------------------------------------- activity


def _draw_times(rng: np.random.Generator, created: np.ndarray, lead: np.ndarray, *, pre: bool) -> np.ndarray:
    """Activity times around sign-up: some before it (anonymous visits), most fading after it."""
    after = (rng.exponential(ACTIVE_DAYS, len(lead)) * DAY_US).astype(np.int64)
    before = (rng.uniform(0, PRE_DAYS, len(lead)) * DAY_US).astype(np.int64)
    early = rng.random(len(lead)) < (0.25 if pre else 0.0)
    return created[lead] + np.where(early, -before, after)


def _counts(rng: np.random.Generator, intent: np.ndarray, rate: float, sensitivity: float) -> np.ndarray:
    return rng.poisson(rate * np.exp(sensitivity * intent - 0.5 * sensitivity**2))


def _activity(rng: np.random.Generator, people: dict[str, Any], kinds: list[tuple[float, float, bool]],
              end_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lead, kind index, time) of each activity before the snapshot, in time order; `kinds` holds (expected count,
    intent sensitivity, may come before sign-up) per kind."""
    parts = []
    for k, (rate, sensitivity, pre) in enumerate(kinds):
        n = _counts(rng, people["intent"], rate, sensitivity)
        lead = np.repeat(np.arange(people["n"]), n)
        parts.append((lead, np.full(len(lead), k), _draw_times(rng, people["created"], lead, pre=pre)))
    lead, kind, at = (np.concatenate(x) for x in zip(*parts, strict=True))
    keep = at < end_us
    order = np.argsort(at[keep], kind="stable")
    return lead[keep][order], kind[keep][order], at[keep][order]


def _hubspot_activity(rng: np.random.Generator, people: dict[str, Any],
                      end_us: int) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Activities; `events` (lead index, kind, known-at µs, value) is what the truth reads."""
    lead, kind, at = _activity(rng, people, [(a[2], a[3], a[1] is not None) for a in HUBSPOT_ACTIVITY], end_us)
    types = np.array([a[0] for a in HUBSPOT_ACTIVITY])[kind]
    paths = np.array([a[1] or "" for a in HUBSPOT_ACTIVITY], dtype=object)[kind]
    query = np.where(rng.random(len(lead)) < 0.3, "?utm_source=newsletter", "")
    host = np.where(rng.random(len(lead)) < 0.5, "https://www.acme-analytics.example", "http://acme-analytics.example")
    url = _or_none(paths != "", np.char.add(np.char.add(host.astype(str), paths.astype(str)), query.astype(str)))
    activities = pl.DataFrame({
        "Activity ID": np.arange(len(lead)) + 50000,
        "Contact ID": people["id"][lead],
        "Activity Type": types,
        "Activity Date": _iso_z(at),
        "Page URL": pl.Series(url, dtype=pl.String),
        "Email Subject": pl.Series(_or_none(np.isin(types, ["EMAIL_OPEN", "EMAIL_CLICK"]),
                                            np.full(len(types), "Your lead scoring guide")), dtype=pl.String),
    })
    truth_kinds = np.array(["pricing", "product", "docs", "blog", "careers", "email_open", "email_click", "form",
                            "meeting"])[kind]
    events = pl.DataFrame({"lead": lead, "kind": truth_kinds, "at": at, "value": np.zeros(len(lead))})
    return events, {"activities.csv": activities}


def _salesforce_activity(rng: np.random.Generator, people: dict[str, Any],
                         end_us: int) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    lead, kind, at = _activity(rng, people, [(t[2], t[3], False) for t in SALESFORCE_TASKS], end_us)
    connected = kind == 0
    seconds = np.where(connected, np.round(rng.gamma(2.0, 150.0 * np.exp(0.3 * people["intent"][lead]))), np.nan)
    seconds = np.where(kind == 1, 0.0, seconds)
    task_type = np.array([t[0] for t in SALESFORCE_TASKS])[kind]
    disposition = np.array([t[1] or "" for t in SALESFORCE_TASKS], dtype=object)[kind]
    tasks = pl.DataFrame({
        "Id": [f"00T{i:012d}" for i in range(len(lead))],
        "WhoId": people["id"][lead],
        "ActivityDate": _local_date(at),
        "Type": task_type,
        "Subject": np.where(task_type == "Call", "Call", "Follow-up email"),
        "CallDisposition": disposition,
        "CallDurationInSeconds": pl.Series(seconds).fill_nan(None),
    })
    task_kind = np.array(["call_connected", "call_attempt", "sales_email"])[kind]
    events = [pl.DataFrame({"lead": lead, "kind": task_kind, "at": _known_end_of_local_day(at),
                            "value": np.nan_to_num(seconds)})]

    camp_type = rng.integers(0, len(CAMPAIGN_TYPES), N_CAMPAIGNS)
    campaigns = pl.DataFrame({
        "Id": [f"7015e{i:010d}" for i in range(N_CAMPAIGNS)],
        "Name": [f"FY25 {CAMPAIGN_TYPES[t]} #{i + 1}" for i, t in enumerate(camp_type)],
        "Type": [CAMPAIGN_TYPES[t] for t in camp_type],
        "Status": "Completed",
    })
    m_lead, m_camp = [], []
    for t in range(len(CAMPAIGN_TYPES)):
        n = rng.poisson(CAMPAIGN_RATE[t], people["n"])
        ids = np.flatnonzero(camp_type == t)
        m_lead.append(np.repeat(np.arange(people["n"]), n))
        m_camp.append(rng.choice(ids, int(n.sum())))
    mlead, mcamp = np.concatenate(m_lead), np.concatenate(m_camp)
    added = _draw_times(rng, people["created"], mlead, pre=False)
    mt = camp_type[mcamp]
    p_resp = expit(np.array(RESPONSE_LOGIT)[mt] + np.array(RESPONSE_SENSITIVITY)[mt] * people["intent"][mlead])
    responded = rng.random(len(mlead)) < p_resp
    resp_at = added + (rng.exponential(3.0, len(mlead)) * DAY_US).astype(np.int64)
    keep = added < end_us
    responded &= resp_at < end_us
    mlead, mcamp, added, responded, resp_at, mt = (x[keep] for x in (mlead, mcamp, added, responded, resp_at, mt))
    members = pl.DataFrame({
        "Id": [f"00v{i:012d}" for i in range(len(mlead))],
        "LeadId": people["id"][mlead],
        "CampaignId": campaigns["Id"].to_numpy()[mcamp],
        "CreatedDate": _iso_offset(added),
        "HasResponded": np.where(responded, "true", "false"),
        "FirstRespondedDate": np.where(responded, _local_date(resp_at), ""),
    })
    resp_kind = np.array(["webinar", "trade_show", "content_download", "email_response"])[mt]
    events.append(pl.DataFrame({"lead": mlead[responded], "kind": resp_kind[responded],
                                "at": _known_end_of_local_day(resp_at[responded]),
                                "value": np.zeros(int(responded.sum()))}))
    return pl.concat(events), {"Task.csv": tasks, "CampaignMember.csv": members, "Campaign.csv": campaigns}


def _behaviour_terms(events: pl.DataFrame, t0: np.ndarray, style: str) -> np.ndarray:
    """The behaviour part of the truth: counts, values and recency of activity known before t0."""
    n = len(t0)
    seen = events.with_columns(pl.Series("t0", t0[events["lead"].to_numpy()]))
    seen = seen.filter(pl.col("at") < pl.col("t0")).with_columns(((pl.col("t0") - pl.col("at")) / DAY_US).alias("age"))

    def per_lead(kind: str, days: int | None = None, *, what: str = "count") -> np.ndarray:
        rows = seen.filter(pl.col("kind") == kind)
        if days is not None:
            rows = rows.filter(pl.col("age") <= days)
        agg = {"count": pl.len().cast(pl.Float64), "value": pl.col("value").sum(), "last": pl.col("age").min()}[what]
        out = np.full(n, np.nan if what == "last" else 0.0)
        got = rows.group_by("lead").agg(agg.alias("x"))
        out[got["lead"].to_numpy()] = got["x"].to_numpy()
        return out

    def recency(kind: str) -> np.ndarray:
        last = per_lead(kind, what="last")
        return np.where(np.isnan(last), 0.0, np.exp(-np.nan_to_num(last) / RECENCY_DAYS))

    if style == "hubspot":
        return (1.1 * np.log1p(per_lead("pricing", 7)) + 0.4 * np.log1p(per_lead("pricing", 30))
                - 1.2 * np.log1p(per_lead("careers", 90))
                + 0.3 * np.log1p(per_lead("docs", 30) + per_lead("product", 30))
                + 0.4 * np.log1p(per_lead("email_click", 30)) + 0.5 * np.log1p(per_lead("form", 90))
                + 1.4 * (per_lead("meeting", 90) > 0) + 1.0 * recency("pricing"))
    return (0.7 * np.log1p(per_lead("call_connected", 30))
            + 0.45 * np.log1p(per_lead("call_connected", 30, what="value") / 60.0)
            - 0.2 * np.log1p(per_lead("call_attempt", 30))
            + 0.9 * np.log1p(per_lead("webinar", 90)) + 0.8 * np.log1p(per_lead("trade_show", 90))
            + 0.3 * np.log1p(per_lead("content_download", 90)) + 1.0 * recency("call_connected"))


# ---------------------------------------------------------------- the leads tables


def _hubspot_contacts(rng: np.random.Generator, people: dict[str, Any], conv: np.ndarray,
                      p_true: np.ndarray) -> dict[str, pl.DataFrame]:
    n = people["n"]
    converted = conv >= 0
    levels = list(SENIORITY_TITLES)
    legacy = (20 * (people["domain"] == 0) + np.array([{"executive": 25, "vp": 20, "director": 15, "manager": 8}.get(
        levels[s], 0) for s in people["seniority"]]) + 10 * (people["size"] >= 2) + rng.normal(20, 12, n))
    stage = np.where(converted, "customer", np.where(rng.random(n) < p_true, "salesqualifiedlead",
                                                     np.where(rng.random(n) < 0.5, "marketingqualifiedlead", "lead")))
    contacts = pl.DataFrame({
        "Record ID": people["id"],
        "First Name": people["first"],
        "Last Name": people["last"],
        "Email": pl.Series(people["email"].tolist(), dtype=pl.String),
        "Job Title": people["title"].astype(str),
        "Company Size": np.array(SIZES)[people["size"]],
        "Industry": np.array(INDUSTRIES)[people["industry"]],
        "Country/Region": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n)],
        "Original Source": np.array(SOURCES)[people["source"]],
        "Create Date": _iso_z(people["created"]),
        "HubSpot Score": np.clip(np.round(legacy), 0, 100).astype(np.int64),
        "Lifecycle Stage": stage,
        "Became a Customer Date": pl.Series(_or_none(converted, _iso_z(np.maximum(conv, 0))), dtype=pl.String),
    })
    # A won-deals table keyed by the contact's email, as a deals export is (lost deals too).
    lost = ~converted & (rng.random(n) < 0.08)
    has_email = np.array([e is not None for e in people["email"]])
    pick = (converted | lost) & has_email
    lost_at = people["created"] + (rng.uniform(20, 90, n) * DAY_US).astype(np.int64)
    closed = np.where(converted, conv, np.minimum(lost_at, int(people["created"].max())))
    deals = pl.DataFrame({
        "Deal ID": np.flatnonzero(pick) + 900000,
        "Associated Contact Email": pl.Series(people["email"][pick].tolist(), dtype=pl.String),
        "Deal Stage": np.where(converted[pick], "closedwon", "closedlost"),
        "Close Date": _iso_z(closed[pick]),
        "Amount": np.round(rng.lognormal(9.0, 0.6, int(pick.sum())), 2),
    })
    return {"contacts.csv": contacts, "deals.csv": deals}


def _salesforce_leads(rng: np.random.Generator, people: dict[str, Any], conv: np.ndarray,
                      p_true: np.ndarray) -> dict[str, pl.DataFrame]:
    n = people["n"]
    converted = conv >= 0
    lo = np.array([SIZE_EMPLOYEES[SIZES[z]][0] for z in people["size"]])
    hi = np.array([SIZE_EMPLOYEES[SIZES[z]][1] for z in people["size"]])
    employees = rng.integers(lo, hi + 1)
    legacy = 30 * (np.array(RATINGS)[people["rating"]] == "Hot") + rng.normal(35, 15, n)
    status = np.where(converted, "Closed - Converted", np.where(rng.random(n) < 0.5, "Working - Contacted", "Open"))
    leads = pl.DataFrame({
        "Id": people["id"],
        "FirstName": people["first"],
        "LastName": people["last"],
        "Email": np.where(people["email"] == None, "", people["email"]).astype(str),  # noqa: E711
        "Title": people["title"].astype(str),
        "Company": np.char.capitalize(people["company"].astype(str)),
        "Industry": np.array(INDUSTRIES)[people["industry"]],
        "NumberOfEmployees": employees.astype(str),
        "LeadSource": np.array(SOURCES)[people["source"]],
        "Rating": np.array(RATINGS)[people["rating"]],
        "Status": status,
        "IsConverted": np.where(converted, "true", "false"),
        "ConvertedDate": np.where(converted, _local_date(np.maximum(conv, 0)), ""),
        "CreatedDate": _iso_offset(people["created"]),
        "Lead_Score__c": np.clip(np.round(legacy), 0, 100).astype(np.int64).astype(str),
    })
    return {"Lead.csv": leads}


def _or_none(keep: np.ndarray, values: np.ndarray) -> list[Any]:
    """values where `keep`, else None (a missing field)."""
    return [str(v) if k else None for k, v in zip(keep, values, strict=True)]


# ---------------------------------------------------------------- time helpers


def _us(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000


def _ts(us: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(us, dtype=np.int64)).cast(pl.Datetime("us", "UTC"))


def _iso_z(us: np.ndarray) -> np.ndarray:
    """HubSpot's style: 2025-03-01T10:22:31.123Z."""
    return _ts(us).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_numpy()


def _iso_offset(us: np.ndarray) -> np.ndarray:
    """Salesforce's style: 2025-03-01T10:22:31.000+0000."""
    return _ts((np.asarray(us) // 1_000_000) * 1_000_000).dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000").to_numpy()


def _local_date(us: np.ndarray) -> np.ndarray:
    """A date-only field: the local date in LOCAL_ZONE."""
    return _ts(us).dt.convert_time_zone(LOCAL_ZONE).dt.strftime("%Y-%m-%d").to_numpy()


def _known_end_of_local_day(us: np.ndarray) -> np.ndarray:
    """When a date-only activity is known: the last second of its local day (the mapping language's rule)."""
    local = _ts(us).dt.convert_time_zone(LOCAL_ZONE)
    end = local.dt.truncate("1d").dt.offset_by("1d").dt.offset_by("-1s")
    return end.dt.convert_time_zone("UTC").dt.epoch("us").to_numpy()
