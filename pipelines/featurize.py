"""Stage `featurize`: point-in-time features, labels, the time split, the feature spec and the leak guard.

Paths come from dvc.yaml (`python -m pipelines.featurize --interim ... --out ... --spec ... --report ...`); params
from the `featurize` section and `base`.

Reads the canonical tables and source.json that ingest wrote, and writes data/features/features.parquet (every lead,
out-of-scope ones with split null), the feature spec and a report whose scope counts add up to the leads.
Exit 2 on bad input, when too many conversions fall outside the label's window (with values of
base.observation_days and base.horizon_days that pass), when train holds fewer conversions than
featurize.min_train_positives, or when the leak guard refuses a column.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from features.build import (
    CENSORED,
    CONVERTED_BEFORE_T0,
    IN_SCOPE,
    LABEL,
    SCOPE,
    SPLIT,
    SPLITS,
    T0,
    build_features,
    feature_columns,
    label_leads,
    time_split,
)
from features.leakguard import closest_to_limit, find_leaks
from features.schema import (
    CONVERTED_AT,
    CREATED_AT,
    EVENTS_SCHEMA,
    LEAD_ID,
    LEGACY_SCORE,
    OCCURRED_AT,
    utc,
)
from features.spec import make_spec
from features.timing import (
    Conversions,
    check_split_conversions,
    check_timing,
    check_train_positives,
    conversions,
    timing_lines,
    timing_report,
)
from pipelines.io import BadInput, exit_codes, load_params, read_json, stage_args, write_frame, write_json


def featurize(
    leads_lf: pl.LazyFrame,
    events_lf: pl.LazyFrame,
    outcomes_lf: pl.LazyFrame,
    source: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Features + scope + label + split for every lead, the spec, and the report.

    Raises TimingError (too many conversions outside the label's window), BadInput (too few train conversions) or
    LeakError (the guard). `params` is the featurize section with `base` inside (as `load_params("featurize")`
    returns it).
    """
    snapshot_at, snapshot_basis = _snapshot(source, leads_lf, events_lf, outcomes_lf)
    has_outcome_times = bool(source.get("has_outcome_times", True))
    conv = conversions(leads_lf, outcomes_lf, snapshot_at=snapshot_at) if has_outcome_times else None
    timing = target_timing(conv, params)
    labeled = labeled_features(leads_lf, events_lf, outcomes_lf, source, params, snapshot_at=snapshot_at)
    frame = time_split(labeled, **split_shares(params)).collect().select(frame_columns(labeled))
    spec, report = describe(frame, source, params, snapshot_at=snapshot_at, snapshot_basis=snapshot_basis,
                            timing=timing)
    return frame, spec, report


def target_timing(conv: Conversions | None, params: dict[str, Any]) -> dict[str, Any]:
    """Where the conversions fall against the label's window (None: the source has no outcome times); raises
    TimingError, with values that work, when too many fall outside it. Checked before any feature is built."""
    if conv is None:
        return {"has_outcome_times": False}
    base = params["base"]
    timing = {"has_outcome_times": True, **timing_report(conv, observation_days=int(base["observation_days"]),
                                                         horizon_days=int(base["horizon_days"]))}
    shares = split_shares(params)
    train_share = shares["train"] / sum(shares.values())
    check_timing(conv, timing, max_lost_share=float(params.get("max_lost_conversion_share", 0.25)),
                 min_positives=int(round(int(params.get("min_train_positives", 100)) / max(train_share, 1e-9))))
    return timing


def labeled_features(leads_lf: pl.LazyFrame, events_lf: pl.LazyFrame, outcomes_lf: pl.LazyFrame,
                     source: dict[str, Any], params: dict[str, Any], *, snapshot_at: datetime) -> pl.LazyFrame:
    """Features, scope, label (and legacy score) of every lead. Each row depends only on that lead, its events
    and its outcome, so any partition of the leads by id, with their events and outcomes, gives the same rows."""
    base = params["base"]
    windows = [int(w) for w in params["windows"]]
    feats = build_features(leads_lf, events_lf, source, observation_days=int(base["observation_days"]),
                           windows=windows)
    labeled = label_leads(feats, outcomes_lf, horizon_days=int(base["horizon_days"]), snapshot_at=snapshot_at,
                          has_outcome_times=bool(source.get("has_outcome_times", True)))
    leads_cols = leads_lf.collect_schema().names()
    legacy = [LEGACY_SCORE] if source.get("legacy_score") and LEGACY_SCORE in leads_cols else []
    if legacy:
        labeled = labeled.join(leads_lf.select(LEAD_ID, LEGACY_SCORE), on=LEAD_ID, how="left", maintain_order="left")
    return labeled.select(LEAD_ID, T0, SCOPE, LABEL, *legacy, *feature_columns(source, windows))


def frame_columns(labeled: pl.LazyFrame | pl.DataFrame) -> list[str]:
    """The training frame's columns in file order: the split goes after t0."""
    names = labeled.collect_schema().names()
    return [LEAD_ID, T0, SPLIT, *[c for c in names if c not in (LEAD_ID, T0, SPLIT)]]


def split_shares(params: dict[str, Any]) -> dict[str, float]:
    shares = params.get("split", {})
    return {"train": shares.get("train", 0.6), "valid": shares.get("valid", 0.2), "test": shares.get("test", 0.2)}


def describe(frame: pl.DataFrame, source: dict[str, Any], params: dict[str, Any], *, snapshot_at: datetime,
             snapshot_basis: str, timing: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The feature spec (categories from the train rows) and the report with the target timing (`target_timing`)
    and the leak guard's findings; raises BadInput when train or valid hold too few conversions to learn from."""
    min_positives = int(params.get("min_train_positives", 100))
    base = params["base"]
    observation_days, horizon_days = int(base["observation_days"]), int(base["horizon_days"])
    windows = [int(w) for w in params["windows"]]
    train_mask = (frame[SPLIT] == "train").fill_null(False)
    spec = make_spec(frame, source, observation_days=observation_days, horizon_days=horizon_days, windows=windows,
                     train_mask=train_mask)
    report = _report(frame, snapshot_at=snapshot_at, snapshot_basis=snapshot_basis, spec=spec)
    report["target_timing"] = timing
    train = frame.filter(train_mask)
    check_train_positives(int(train[LABEL].sum() or 0), minimum=min_positives, train_rows=train.height)
    check_split_conversions({k: (v["leads"], v["conversions"]) for k, v in report["splits"].items()},
                            min_valid_positives=int(params.get("min_valid_positives", 10)))
    allow = list(params.get("leak_allow") or [])
    auc_max = float(params.get("leak_auc_max", 0.95))
    valid = frame.filter(pl.col(SPLIT) == "valid")
    findings = find_leaks(train, train[LABEL].to_numpy(), spec, auc_max=auc_max, allow=allow,
                          after_outcome=source.get("after_outcome") or [], valid=valid,
                          valid_label=valid[LABEL].to_numpy(), t0=T0)
    report["leak_guard"] = {"auc_max": auc_max, "allow": allow, "findings": [f.as_dict() for f in findings],
                            "highest_auc_train": closest_to_limit(train, train[LABEL].to_numpy(), spec)}
    return spec, report


def _snapshot(source: dict[str, Any], leads: pl.LazyFrame, events: pl.LazyFrame,
              outcomes: pl.LazyFrame) -> tuple[datetime, str]:
    """snapshot_at from source.json; without one, the newest timestamp in the data (said so in the report)."""
    return snapshot_time(source, lambda: [
        leads.select(pl.col(CREATED_AT).max()).collect().item(),
        events.select(pl.col(OCCURRED_AT).max()).collect().item(),
        outcomes.select(pl.col(CONVERTED_AT).max()).collect().item(),
    ])


def snapshot_time(source: dict[str, Any], newest_in_data: Callable[[], list[datetime | None]]) -> tuple[datetime, str]:
    """snapshot_at from source.json, else the newest of the data's created_at, occurred_at and converted_at
    (asked for only when needed: an engine computes them its own way)."""
    raw = source.get("snapshot_at")
    if raw:
        ts = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return utc(ts), "source"
    known = [t for t in newest_in_data() if t is not None]
    if not known:
        raise ValueError("no snapshot_at in source.json and no timestamps in the data to infer it from")
    return max(known), "inferred: newest timestamp in the data"


def _report(frame: pl.DataFrame, *, snapshot_at: datetime, snapshot_basis: str, spec: dict[str, Any]) -> dict[str, Any]:
    scope_counts = dict(frame.group_by(SCOPE).len().iter_rows())
    report: dict[str, Any] = {
        "source": spec.get("source"),
        "leads": frame.height,
        "in_scope": int(scope_counts.get(IN_SCOPE, 0)),
        "converted_before_t0": int(scope_counts.get(CONVERTED_BEFORE_T0, 0)),
        "censored": int(scope_counts.get(CENSORED, 0)),
        "snapshot_at": snapshot_at.isoformat(),
        "snapshot_basis": snapshot_basis,
        "observation_days": spec["observation_days"],
        "horizon_days": spec["horizon_days"],
        "windows": spec["windows"],
        "has_events": spec["has_events"],
        "features": len(spec["features"]),
        "splits": {},
    }
    for name in SPLITS:
        part = frame.filter(pl.col(SPLIT) == name)
        conversions = int(part[LABEL].sum() or 0)
        report["splits"][name] = {
            "leads": part.height,
            "conversions": conversions,
            "rate": round(conversions / part.height, 6) if part.height else None,
            "t0_min": part[T0].min().isoformat() if part.height else None,  # type: ignore[union-attr]
            "t0_max": part[T0].max().isoformat() if part.height else None,  # type: ignore[union-attr]
        }
    return report


def _read_inputs(interim: Path) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame, dict[str, Any]]:
    source_file = interim / "source.json"
    if not source_file.exists():
        raise BadInput(source_file, "not found; run ingest first")
    source = read_json(source_file)
    tables: dict[str, pl.LazyFrame] = {}
    for name in ("leads", "outcomes"):
        path = interim / f"{name}.parquet"
        if not path.exists():
            raise BadInput(path, "not found; run ingest first")
        tables[name] = pl.scan_parquet(path)
    events_path = interim / "events.parquet"
    if events_path.exists():
        events = pl.scan_parquet(events_path)
    elif source.get("has_events", True):
        raise BadInput(events_path, "not found, but source.json says the source has events")
    else:
        events = pl.LazyFrame(schema=EVENTS_SCHEMA)
    for name, lf, needed in (("leads", tables["leads"], (LEAD_ID, CREATED_AT)),
                             ("outcomes", tables["outcomes"], (LEAD_ID,))):
        cols = lf.collect_schema().names()
        for col in needed:
            if col not in cols:
                raise BadInput(interim / f"{name}.parquet", "required column is missing", column=col)
    return tables["leads"], events, tables["outcomes"], source


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "interim", "out", "spec", "report")
    leads, events, outcomes, source = _read_inputs(args.interim)
    frame, spec, report = featurize(leads, events, outcomes, source, load_params("featurize", args.params))
    for line in timing_lines(report["target_timing"]):
        print(line)
    write_frame(frame, args.out / "features.parquet")
    write_json(args.spec, spec)
    write_json(args.report, report)
    splits = ", ".join(f"{k} {v['leads']:,} ({v['conversions']:,} converted)" for k, v in report["splits"].items())
    print(f"featurize: {report['leads']:,} leads = {report['in_scope']:,} in scope + "
          f"{report['converted_before_t0']:,} converted before t0 + {report['censored']:,} censored; {splits}; "
          f"{report['features']} features")
    for f in report["leak_guard"]["findings"]:
        print(f"leak guard: allowed {f['column']}: {f['reason']}")


if __name__ == "__main__":
    main()
