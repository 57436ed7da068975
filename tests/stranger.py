"""A small export shaped like the real B2B ones that surprised leadlift: a stranger's data for the trust tests.

- Leads as a CSV with its own column names, and the wins in a **separate won-deals table** joined by email.
- **Slow, spread-out conversions**: a third convert within two weeks of creation, the rest over months, so the
  default decision time (14 days) and horizon (60 days) lose far more than a quarter of them.
- **Strong drift**: the conversion rate climbs from about 5% to about 35% over the period, and the lead sources
  change places.
- **Won-deals attributes copied into the leads** ("Deal Amount", "Deal Product"): empty for every non-converter and
  for most converters too, so only their presence gives the outcome away.
- An **id-like categorical** ("Owner", 500 levels) with a small real effect: in sample it looks like a leak, out of
  fold it is weak.
- Small: a few thousand leads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from scipy.special import expit

START = datetime(2024, 1, 1)
DAYS = 540
INDUSTRIES = ("software", "retail", "health", "finance", "logistics", "education")
INDUSTRY_EFFECT = (0.8, -0.4, 0.3, 0.5, 0.0, -0.8)
SOURCES = ("organic", "paid", "referral", "event", "outbound")
#: Lead-source effects at the start and at the end of the period: they change places (drift).
SOURCE_EFFECT_START = (0.5, -0.6, 1.0, 0.2, -0.8)
SOURCE_EFFECT_END = (-0.2, 0.4, 0.6, 0.9, -0.5)
OWNERS = 500
COUNTRIES = ("US", "UK", "DE", "FR", "IN", "BR", "JP", "CA")


def write_export(folder: Path, *, n: int = 3000, seed: int = 7, copied_deal_share: float = 0.4) -> Path:
    """Write leads.csv, won_deals.csv and a first mapping (mapping.yaml) as a new user would write it: every column
    declared as a feature, the won-deals attributes left unmarked, default params. Returns the mapping's path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    day = np.sort(rng.uniform(0, DAYS, n))
    created = [START + timedelta(days=float(d)) for d in day]
    frac = day / DAYS
    industry = rng.integers(0, len(INDUSTRIES), n)
    source = rng.integers(0, len(SOURCES), n)
    owner = rng.integers(0, OWNERS, n)
    owner_skill = rng.normal(0.0, 0.35, OWNERS)
    size = np.exp(rng.normal(4.0, 1.3, n)).round()
    country = rng.integers(0, len(COUNTRIES), n)
    src_effect = (1 - frac) * np.take(SOURCE_EFFECT_START, source) + frac * np.take(SOURCE_EFFECT_END, source)
    logit = (-3.0 + 2.4 * frac + np.take(INDUSTRY_EFFECT, industry) + src_effect + owner_skill[owner]
             + 0.35 * (np.log(size) - 4.0) + rng.normal(0.0, 0.5, n))
    converts = rng.random(n) < expit(logit)
    lag = np.where(rng.random(n) < 0.33, rng.uniform(0, 14, n), 14 + rng.exponential(45, n))
    won_at = [c + timedelta(days=float(g)) for c, g in zip(created, lag, strict=True)]
    snapshot = START + timedelta(days=DAYS + 20)
    won = converts & np.array([w <= snapshot for w in won_at])
    emails = [f"lead{i}@company{i % 997}.example" for i in range(n)]
    copied = won & (rng.random(n) < copied_deal_share)
    amount = np.where(copied, np.exp(rng.normal(9.0, 0.6, n)).round(), np.nan)
    product = pl.Series(rng.choice(["Starter", "Pro", "Enterprise"], n)).zip_with(pl.Series(copied),
                                                                               pl.Series([None] * n, dtype=pl.String))
    pl.DataFrame({
        "Lead ID": [f"LD-{i:05d}" for i in range(n)],
        "Email": emails,
        "Created Date": [c.strftime("%Y-%m-%dT%H:%M:%SZ") for c in created],
        "Industry": np.take(INDUSTRIES, industry),
        "Lead Source": np.take(SOURCES, source),
        "Owner": [f"owner-{o:03d}" for o in owner],
        "Country": np.take(COUNTRIES, country),
        "Company Size": size,
        "Deal Amount": pl.Series(amount).fill_nan(None),
        "Deal Product": product,
    }).write_csv(folder / "leads.csv")
    idx = np.flatnonzero(won)
    pl.DataFrame({
        "Contact Email": [emails[i] for i in idx],
        "Won On": [won_at[i].strftime("%Y-%m-%d") for i in idx],
        "Amount": np.exp(rng.normal(9.0, 0.6, idx.size)).round(),
    }).write_csv(folder / "won_deals.csv")
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping(folder, snapshot=snapshot), sort_keys=False))
    return path


def mapping(folder: Path, *, snapshot: datetime) -> dict[str, Any]:
    """The mapping a new user writes from the README: all columns as features, nothing marked leaky."""
    def feature(group: str, description: str) -> dict[str, str]:
        return {"group": group, "description": description}

    return {
        "name": "stranger_b2b",
        "snapshot_at": snapshot.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "leads": {
            "path": str(folder / "leads.csv"),
            "lead_id": "Lead ID",
            "created_at": {"column": "Created Date"},
            "rename": {"Lead Source": "lead_source", "Company Size": "company_size", "Deal Amount": "deal_amount",
                       "Deal Product": "deal_product", "Industry": "industry", "Owner": "owner",
                       "Country": "country", "Email": "email"},
            "categorical": {
                "industry": feature("company_fit", "Industry"),
                "lead_source": feature("lead_source", "Lead source"),
                "owner": feature("lead_source", "Lead owner"),
                "country": feature("company_fit", "Country"),
                "deal_product": feature("buying_timeline", "Product"),
            },
            "numeric": {
                "company_size": feature("company_fit", "Employees"),
                "deal_amount": feature("buying_timeline", "Amount"),
            },
            "pii": ["email"],
        },
        "outcomes": {
            "path": str(folder / "won_deals.csv"),
            "join": {"column": "Contact Email", "leads_column": "email"},
            "converted_at": {"column": "Won On"},
        },
    }


def set_params(path: Path, **sections: dict[str, Any]) -> None:
    """Merge `params:` overrides into a mapping file (section -> values)."""
    m = yaml.safe_load(path.read_text())
    params = m.setdefault("params", {})
    for name, values in sections.items():
        params.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(m, sort_keys=False))


def mark_leaky(path: Path, *columns: str) -> None:
    """Move feature columns to drop_leaky, as the guard's message tells the user to."""
    m = yaml.safe_load(path.read_text())
    leads = m["leads"]
    for c in columns:
        leads["categorical"].pop(c, None)
        leads["numeric"].pop(c, None)
    leads["drop_leaky"] = sorted({*leads.get("drop_leaky", []), *columns})
    path.write_text(yaml.safe_dump(m, sort_keys=False))
