"""Source mappings and the ingest stage: exports in any layout reach canonical form by configuration alone, bad
files fail with file/column/row, and the two real data sets map as their provenance notes say."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from rich.console import Console

from features import contract as C
from features.mapping import (
    REPEAT_OUTCOME,
    TARGET_UNRECOGNISED,
    UNKNOWN_JOIN_KEY,
    MappingError,
    apply_mapping,
    load_mapping,
)
from features.schema import TS
from pipelines.ingest import print_report, run, validate
from pipelines.io import BadInput

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not SHARED.exists(), reason=f"the shared real data sets are absent ({SHARED})")
UTC = timezone.utc
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PARAMS = {"max_quarantine_share": 0.5}


def mapping(**leads: Any) -> dict[str, Any]:
    """A minimal valid mapping (a target column in the leads file) with `leads` keys overridden."""
    spec: dict[str, Any] = {"path": "leads.csv", "lead_id": "id", "created_at": {"column": "created"},
                            "target": {"column": "won", "positive": [1], "negative": [0]}}
    spec.update(leads)
    return {"name": "t", "leads": spec}


def mapped_leads(m: dict[str, Any], frame: pl.DataFrame) -> C.ContractResult:
    """Apply a mapping to a frame and run the contract, as ingest does (in memory)."""
    mp = apply_mapping(load_mapping(m), {"leads": frame})
    return C.validate(mp.leads, mp.events, mp.outcomes, numeric=mp.numeric, categorical=mp.categorical,
                      legacy_score=mp.legacy_score, passthrough=mp.passthrough, time_formats=mp.time_formats,
                      origins=mp.origins, now=NOW)


def write_mapping(tmp_path: Path, m: dict[str, Any]) -> Path:
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


# ---------------------------------------------------------------- load and validate


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(MappingError, match=r"unknown key leads\.renmae; did you mean 'rename'\?"):
        load_mapping(mapping(renmae={"a": "b"}))


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(MappingError, match=r"unknown key snapshot"):
        load_mapping({**mapping(), "snapshot": "2025-01-01"})


def test_feature_group_must_be_a_business_group() -> None:
    with pytest.raises(MappingError, match=r"group 'fit' is not a business group"):
        load_mapping(mapping(categorical={"industry": {"group": "fit", "description": "Industry"}}))


def test_feature_needs_a_description() -> None:
    with pytest.raises(MappingError, match=r"leads\.numeric\.visits\.description: Field required"):
        load_mapping(mapping(numeric={"visits": {"group": "research"}}))


def test_reason_and_note_templates_are_checked_when_the_mapping_loads() -> None:
    ok = {"group": "research", "description": "Visits", "reason": {"for": "Visited {value|time}", "against": [
        {"if": "value == 0", "text": "Never visited"}, "Only {value|visit}"]}}
    loaded = load_mapping(mapping(numeric={"visits": ok}))
    assert loaded["leads"]["numeric"]["visits"]["reason"]["for"] == "Visited {value|time}"
    with pytest.raises(MappingError, match=r"unknown key leads\.numeric\.visits\.reason\.pro \(known: against, for\)"):
        load_mapping(mapping(numeric={"visits": {**ok, "reason": {"pro": "Visited"}}}))
    with pytest.raises(MappingError, match=r"unknown key leads\.numeric\.visits\.reason\.against\.0\.when"):
        load_mapping(mapping(numeric={"visits": {**ok, "reason": {"against": [{"when": "x", "text": "y"}]}}}))
    with pytest.raises(MappingError, match=r"leads\.who must be a text or a list"):
        load_mapping(mapping(who=[]))


def test_a_target_is_required() -> None:
    m = mapping()
    del m["leads"]["target"]
    with pytest.raises(MappingError, match=r"no target"):
        load_mapping(m)


def test_pii_can_never_be_a_feature() -> None:
    with pytest.raises(MappingError, match=r"\['email'\] .* PII"):
        load_mapping(mapping(pii=["email"], categorical={"email": {"group": "email_domain", "description": "x"}}))


def test_target_can_never_be_a_feature() -> None:
    with pytest.raises(MappingError, match=r"\['won'\] .* the target"):
        load_mapping(mapping(numeric={"won": {"group": "engagement", "description": "x"}}))


def test_created_at_needs_exactly_one_form() -> None:
    with pytest.raises(MappingError, match=r"exactly one of"):
        load_mapping(mapping(created_at={"column": "created", "row_order": True, "start": "2025-01-01",
                                         "end": "2025-02-01"}))
    with pytest.raises(MappingError, match=r"needs `start` and `end`"):
        load_mapping(mapping(created_at={"row_order": True}))


def test_bare_yaml_yes_for_a_text_target_asks_for_quotes() -> None:
    m = yaml.safe_load("name: t\nleads: {path: l.csv, lead_id: id, created_at: {column: c}, "
                       "target: {column: y, positive: [yes]}}")
    frame = pl.DataFrame({"id": ["a"], "c": ["2025-01-01"], "y": ["yes"]})
    with pytest.raises(C.BadInput, match=r"column 'y'.*quote it"):
        apply_mapping(load_mapping(m), {"leads": frame})


def test_row_number_ids_cannot_have_events() -> None:
    m = {**mapping(lead_id={"row_number": True}), "events": {"path": "e.csv"}}
    with pytest.raises(MappingError, match=r"row number"):
        load_mapping(m)


# ---------------------------------------------------------------- apply


def test_renames_value_maps_and_null_values_apply_before_roles() -> None:
    m = mapping(
        rename={"Lead Source": "lead_source", "City": "city"},
        value_maps={"lead_source": {"google": "Google"}, "city": {"Select": None}},
        categorical={"lead_source": {"group": "lead_source", "description": "Source"},
                     "city": {"group": "company_fit", "description": "City"},
                     "job": {"group": "seniority", "description": "Job"}},
    )
    m["null_values"] = ["unknown"]
    frame = pl.DataFrame({"id": ["a", "b", "c"], "created": ["2025-01-01"] * 3, "won": [1, 0, 0],
                          "Lead Source": ["google", "Google", "Olark"], "City": ["Select", "Pune", "unknown"],
                          "job": ["unknown", "admin.", None], "Junk": [1, 2, 3]})
    result = mapped_leads(m, frame)
    assert result.leads["lead_source"].to_list() == ["Google", "Google", "Olark"]
    assert result.leads["city"].to_list() == [None, "Pune", None]
    assert result.leads["job"].to_list() == [None, "admin.", None]
    assert "Junk" not in result.leads.columns and "won" not in result.leads.columns


def test_numeric_value_map_turns_a_sentinel_into_missing() -> None:
    m = mapping(value_maps={"pdays": {999: None}},
                numeric={"pdays": {"group": "recency", "description": "d", "min": 0}})
    frame = pl.DataFrame({"id": ["a", "b"], "created": ["2025-01-01"] * 2, "won": [1, 0], "pdays": [3, 999]})
    assert mapped_leads(m, frame).leads["pdays"].to_list() == [3.0, None]


def test_value_map_keys_are_compared_in_the_column_type() -> None:
    m = mapping(value_maps={"pdays": {"999": None}, "won": {"1": "1"}},
                numeric={"pdays": {"group": "recency", "description": "d"}})
    frame = pl.DataFrame({"id": ["a", "b"], "created": ["2025-01-01"] * 2, "won": [1, 0], "pdays": [3.0, 999.0]})
    assert mapped_leads(m, frame).leads["pdays"].to_list() == [3.0, None]
    with pytest.raises(C.BadInput, match=r"column 'pdays': the mapping's values \['never'\] cannot be compared"):
        apply_mapping(load_mapping(mapping(value_maps={"pdays": {"never": None}})), {"leads": frame})


def test_created_at_format_and_time_zone_are_parsed() -> None:
    m = mapping(created_at={"column": "created", "format": "%d.%m.%Y %H:%M", "timezone": "America/New_York"})
    frame = pl.DataFrame({"id": ["a", "b"], "created": ["15.01.2025 09:30", "not a date"], "won": [1, 0]})
    result = mapped_leads(m, frame)
    assert result.leads["created_at"].to_list() == [datetime(2025, 1, 15, 14, 30, tzinfo=UTC)]
    assert result.quarantine.select("table", "row", "column", "reason").rows() == [
        ("leads", 2, "created", C.UNPARSEABLE_TIMESTAMP), ("outcomes", 2, "id", C.LEAD_QUARANTINED)]


def test_order_by_spreads_pseudo_times_evenly_in_column_order() -> None:
    m = mapping(created_at={"order_by": "num", "start": "2025-01-01", "end": "2025-01-05"})
    frame = pl.DataFrame({"id": ["a", "b", "c", "d", "e"], "num": [50, 10, 40, 20, 30], "won": [0] * 5})
    got = dict(mapped_leads(m, frame).leads.select("lead_id", "created_at").iter_rows())
    assert got == {"b": datetime(2025, 1, 1, tzinfo=UTC), "d": datetime(2025, 1, 2, tzinfo=UTC),
                   "e": datetime(2025, 1, 3, tzinfo=UTC), "c": datetime(2025, 1, 4, tzinfo=UTC),
                   "a": datetime(2025, 1, 5, tzinfo=UTC)}


def test_order_by_ties_share_a_time_and_descending_reverses() -> None:
    m = mapping(created_at={"order_by": "num", "start": "2025-01-01", "end": "2025-01-03", "descending": True})
    frame = pl.DataFrame({"id": ["a", "b", "c"], "num": [3, 1, 1], "won": [0] * 3})
    got = dict(mapped_leads(m, frame).leads.select("lead_id", "created_at").iter_rows())
    assert got["a"] == datetime(2025, 1, 1, tzinfo=UTC)
    assert got["b"] == got["c"] == datetime(2025, 1, 2, tzinfo=UTC)


def test_row_order_pseudo_times_follow_the_file_and_row_number_ids() -> None:
    m = mapping(lead_id={"row_number": True, "prefix": "r"},
                created_at={"row_order": True, "start": "2025-01-01", "end": "2025-01-03"})
    frame = pl.DataFrame({"won": [0, 1, 0]})
    result = mapped_leads(m, frame)
    assert result.leads["lead_id"].to_list() == ["r1", "r2", "r3"]
    assert result.leads["created_at"].to_list() == [datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    assert result.outcomes["converted"].to_list() == [False, True, False]


def test_target_column_gives_outcomes_without_times_and_quarantines_odd_values() -> None:
    m = mapping(target={"column": "won", "positive": ["yes"], "negative": ["no"]})
    frame = pl.DataFrame({"id": ["a", "b", "c"], "created": ["2025-01-01"] * 3, "won": ["yes", "no", "perhaps"]})
    mp = apply_mapping(load_mapping(m), {"leads": frame})
    assert mp.source["has_outcome_times"] is False
    result = mapped_leads(m, frame)
    assert result.outcomes["converted"].to_list() == [True, False]
    assert result.outcomes["converted_at"].null_count() == 2
    bad = result.quarantine.filter(pl.col("table") == "outcomes")
    assert bad.select("row", "column", "reason").rows() == [(3, "won", TARGET_UNRECOGNISED)]
    assert result.leads.height == 3  # the lead itself is fine


def test_leaky_and_undeclared_columns_are_dropped_and_reported_after_outcome_kept() -> None:
    m = mapping(drop_leaky=["Tags"], after_outcome=["campaign"],
                numeric={"visits": {"group": "research", "description": "Visits"}})
    frame = pl.DataFrame({"id": ["a"], "created": ["2025-01-01"], "won": [1], "visits": [3], "Tags": ["Closed"],
                          "campaign": [4], "Magazine": ["No"]})
    mp = apply_mapping(load_mapping(m), {"leads": frame})
    assert mp.dropped["leads"]["leaky"] == ["Tags"]
    assert mp.dropped["leads"]["undeclared"] == ["Magazine"]
    assert set(mp.dropped["leads"]["used_for_roles"]) == {"id", "created", "won"}
    assert mp.source["dropped_leaky"] == ["Tags"] and mp.source["after_outcome"] == ["campaign"]
    assert mapped_leads(m, frame).leads.columns == ["lead_id", "created_at", "visits", "campaign"]


def test_missing_mapped_column_names_the_file_and_column() -> None:
    m = mapping(categorical={"industry": {"group": "company_fit", "description": "Industry"}})
    frame = pl.DataFrame({"id": ["a"], "created": ["2025-01-01"], "won": [1]})
    with pytest.raises(C.BadInput, match=r"file leads\.csv, column 'industry': missing column needed as a "
                                              r"categorical feature"):
        apply_mapping(load_mapping(m), {"leads": frame})


def test_event_type_map_translates_vocabulary_and_the_rest_is_other() -> None:
    m = {"name": "t", "leads": {"path": "l.parquet", "created_at": {"column": "created_at"}},
         "events": {"path": "e.parquet", "lead_id": {"column": "contact"}, "occurred_at": {"column": "when"},
                    "event_type": {"column": "activity", "map": {"Viewed Pricing": "page_pricing"}}},
         "outcomes": {"path": "o.parquet", "converted_at": {"column": "converted_at"}}}
    leads = pl.DataFrame({"lead_id": ["a"], "created_at": [datetime(2025, 1, 1, tzinfo=UTC)]})
    ev = pl.DataFrame({"contact": ["a", "a"], "when": ["2025-01-02", "2025-01-03"],
                       "activity": ["Viewed Pricing", "Chat"]})
    out = pl.DataFrame({"lead_id": ["a"], "converted_at": [datetime(2025, 2, 1, tzinfo=UTC)]})
    mp = apply_mapping(load_mapping(m), {"leads": leads, "events": ev, "outcomes": out})
    result = C.validate(mp.leads, mp.events, mp.outcomes, time_formats=mp.time_formats, now=NOW)
    assert result.events["event_type"].to_list() == ["page_pricing", "other"]
    assert result.outcomes["converted"].to_list() == [True]
    assert mp.source["has_events"] and mp.source["has_outcome_times"]


def test_won_deals_join_keeps_the_earliest_and_quarantines_unknown_keys() -> None:
    m = {"name": "t", "leads": {"path": "l.csv", "lead_id": "id", "created_at": {"column": "created"},
                                "pii": ["email"]},
         "outcomes": {"path": "deals.csv", "join": {"column": "contact", "leads_column": "email"},
                      "converted_at": {"column": "closed"}}}
    leads = pl.DataFrame({"id": ["a", "b"], "created": ["2025-01-01", "2025-01-02"], "email": ["x@a", "y@b"]})
    deals = pl.DataFrame({"contact": ["x@a", "x@a", "nobody@c"], "closed": ["2025-03-05", "2025-02-01", "2025-02-02"]})
    mp = apply_mapping(load_mapping(m), {"leads": leads, "outcomes": deals})
    result = C.validate(mp.leads, outcomes=mp.outcomes, passthrough=mp.passthrough, time_formats=mp.time_formats,
                        now=NOW)
    assert result.outcomes.rows() == [("a", True, datetime(2025, 2, 1, tzinfo=UTC))]
    assert reasons_of(result, "outcomes") == {1: REPEAT_OUTCOME, 3: UNKNOWN_JOIN_KEY}
    assert result.counts["outcomes"]["rows_in"] == 3


def test_a_deal_lost_before_a_later_win_neither_hides_the_win_nor_is_a_bad_row() -> None:
    """A deals export gives lost deals a close date too. That date is no conversion time: a lead whose only deal was
    lost is a clean non-conversion (not quarantined for a conversion time on a lost deal), and a lead that lost a
    deal before winning one keeps the win, not the earlier loss (which would have left it with no outcome at all)."""
    m = {"name": "t", "leads": {"path": "l.csv", "lead_id": "id", "created_at": {"column": "created"},
                                "pii": ["email"]},
         "outcomes": {"path": "deals.csv", "join": {"column": "contact", "leads_column": "email"},
                      "converted": {"column": "stage", "positive": ["won"], "negative": ["lost"]},
                      "converted_at": {"column": "closed"}}}
    leads = pl.DataFrame({"id": ["a", "b"], "created": ["2025-01-01", "2025-01-02"], "email": ["x@a", "y@b"]})
    deals = pl.DataFrame({"contact": ["x@a", "x@a", "y@b", "x@a"], "stage": ["won", "lost", "lost", "won"],
                          "closed": ["2025-03-05", "2025-02-01", "2025-02-03", "2025-04-01"]})
    mp = apply_mapping(load_mapping(m), {"leads": leads, "outcomes": deals})
    result = C.validate(mp.leads, outcomes=mp.outcomes, passthrough=mp.passthrough, time_formats=mp.time_formats,
                        now=NOW)
    assert sorted(result.outcomes.rows()) == [("a", True, datetime(2025, 3, 5, tzinfo=UTC)), ("b", False, None)]
    assert reasons_of(result, "outcomes") == {2: REPEAT_OUTCOME, 4: REPEAT_OUTCOME}


def test_a_deals_key_derived_on_both_sides_matches_emails_written_in_other_cases() -> None:
    """docs/mapping.md's way to join a deals export whose emails differ in case or spaces from the leads': a key
    derived on each side (after `derive`), never kept among the leads' columns (it comes from PII)."""
    m = {"name": "t", "leads": {"path": "l.csv", "lead_id": "id", "created_at": {"column": "created"},
                                "pii": ["Email"], "derive": {"email_key": "lower(trim(Email))"}},
         "outcomes": {"path": "deals.csv", "derive": {"email_key": "lower(trim(Contact))"},
                      "join": {"column": "email_key", "leads_column": "email_key"},
                      "converted": {"column": "stage", "positive": ["won"], "negative": ["lost"]},
                      "converted_at": {"column": "closed"}}}
    leads = pl.DataFrame({"id": ["a", "b"], "created": ["2025-01-01", "2025-01-02"], "Email": ["X@A.com", "y@b.com"]})
    deals = pl.DataFrame({"Contact": [" x@a.COM", "Y@B.COM "], "stage": ["won", "lost"],
                          "closed": ["2025-03-05", "2025-02-01"]})
    mp = apply_mapping(load_mapping(m), {"leads": leads, "outcomes": deals})
    result = C.validate(mp.leads, outcomes=mp.outcomes, passthrough=mp.passthrough, time_formats=mp.time_formats,
                        now=NOW)
    assert sorted(result.outcomes.rows()) == [("a", True, datetime(2025, 3, 5, tzinfo=UTC)), ("b", False, None)]
    assert result.quarantine.height == 0 and "email_key" not in result.leads.columns


def reasons_of(result: C.ContractResult, table: str) -> dict[int, str]:
    q = result.quarantine.filter(pl.col("table") == table)
    return dict(zip(q["row"].to_list(), q["reason"].to_list(), strict=True))


# ---------------------------------------------------------------- the ingest stage on files


def csv_export(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_CSV = (
    "Lead Id;Signup;Visits;Outcome;Tags\n"
    "L1;2025-01-03;4;yes;hot\n"
    "L2;2025-01-04;unknown;no;cold\n"
    "L2;2025-01-05;1;no;cold\n"
    "L4;not-a-date;2;no;cold\n"
    "L5;2025-01-06;-1;yes;hot\n"
    "L6;2025-01-07;0;no;cold\n"
    "L7;2025-01-08;3;yes;hot\n"
    "L8;2025-01-09;2;no;cold\n"
    "L9;2025-01-10;7;no;cold\n"
)


def good_mapping(path: Path) -> dict[str, Any]:
    return {"name": "tiny", "null_values": ["unknown"], "snapshot_at": "2025-06-30",
            "leads": {"path": str(path), "csv": {"separator": ";"}, "lead_id": "Lead Id",
                      "created_at": {"column": "Signup"}, "rename": {"Visits": "visits"},
                      "target": {"column": "Outcome", "positive": ["yes"], "negative": ["no"]},
                      "numeric": {"visits": {"group": "research", "description": "Site visits", "min": 0}},
                      "drop_leaky": ["Tags"]}}


def test_ingest_writes_canonical_tables_quarantine_report_and_source(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = write_mapping(tmp_path, good_mapping(csv_export(tmp_path, GOOD_CSV)))
    out, report_path = tmp_path / "interim", tmp_path / "reports" / "ingest.json"
    report = run(source, out, report=report_path, params=PARAMS)
    printed = capsys.readouterr().out
    assert "leads: 9 in = 5 out + 4 quarantined" in printed and "outcomes: 9 in = 5 out + 4 quarantined" in printed
    leads = pl.read_parquet(out / "leads.parquet")
    assert leads.columns == ["lead_id", "created_at", "visits"]
    assert leads["lead_id"].to_list() == ["L1", "L6", "L7", "L8", "L9"]
    q = pl.read_csv(out / "quarantine.csv")
    assert q.columns == ["table", "row", "lead_id", "column", "reason"]
    assert q.filter(pl.col("table") == "leads").select("row", "column", "reason").rows() == [
        (2, "Lead Id", C.DUPLICATE_LEAD_ID), (3, "Lead Id", C.DUPLICATE_LEAD_ID),
        (4, "Signup", C.UNPARSEABLE_TIMESTAMP), (5, "visits", C.BELOW_MINIMUM)]
    saved = json.loads(report_path.read_text())
    assert saved["leads"]["rows_in"] == saved["leads"]["rows_out"] + saved["leads"]["quarantined"] == 9
    assert saved["leads"]["dropped_columns"]["leaky"] == ["Tags"]
    assert saved == json.loads(json.dumps(report, default=str))
    src = json.loads((out / "source.json").read_text())
    assert set(src) >= {"name", "categorical", "numeric", "pii", "notes_allowed", "after_outcome", "dropped_leaky",
                        "legacy_score", "has_events", "has_outcome_times", "snapshot_at", "truth"}
    assert src["snapshot_at"] == "2025-06-30T00:00:00+00:00" and src["has_events"] is False
    assert pl.read_parquet(out / "events.parquet").height == 0
    assert pl.read_parquet(out / "outcomes.parquet")["converted"].to_list() == [True, False, True, False, False]


def test_canonical_parquet_with_the_synthetic_mapping(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    created = [datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2)]
    pl.DataFrame({"lead_id": ["L1", "L2"], "created_at": created, "industry": ["software", "retail"],
                  "employee_band": ["1-10", "11-50"], "region": ["na", "emea"], "job_title": ["CEO", "Intern"],
                  "lead_source": ["paid", "organic"], "email_domain_kind": ["corporate", "student"],
                  "buying_timeline": ["<3m", None], "legacy_score": [80, 20], "name": ["Ann", "Bo"],
                  "email": ["a@x.example", "b@y.example"]}).write_parquet(raw / "leads.parquet")
    pl.DataFrame({"lead_id": ["L1", "L2", "L9"], "occurred_at": created + [created[0]],
                  "event_type": ["page_pricing", "chat_started", "meeting"]}).write_parquet(raw / "events.parquet")
    pl.DataFrame({"lead_id": ["L1", "L2"], "converted": [True, False],
                  "converted_at": [datetime(2025, 3, 1, tzinfo=UTC), None]},
                 schema_overrides={"converted_at": TS}).write_parquet(raw / "outcomes.parquet")
    report = run(ROOT / "sources" / "synthetic.yaml", tmp_path / "interim", report=None, params=PARAMS, root=tmp_path)
    assert report["events"]["by_reason"] == {C.UNKNOWN_LEAD: 1} and report["events"]["other_event_types"] == 1
    assert report["events"]["other_event_names"] == {"chat_started": 1}
    src = json.loads((tmp_path / "interim" / "source.json").read_text())
    assert src["legacy_score"] is True and src["truth"] == "data/raw/truth.parquet"
    assert src["categorical"]["job_title"]["parse"] == "seniority"
    assert src["snapshot_at"] == "2025-03-01T00:00:00+00:00"  # the newest timestamp seen


def test_a_wrong_stated_separator_is_bad_input_naming_file_and_column(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, GOOD_CSV))
    m["leads"]["csv"] = {"separator": ","}
    with pytest.raises(BadInput, match=r"file .*leads\.csv, column 'Lead Id;Signup.*separated by ';'"):
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)


def test_an_unstated_separator_is_sniffed_from_the_file(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, GOOD_CSV))
    del m["leads"]["csv"]
    report = run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)
    assert report["leads"]["read"] == {"encoding": "utf8", "separator": ";"}
    assert report["leads"]["rows_in"] == 9 and report["leads"]["quarantined"] == 4


def test_empty_file_is_bad_input(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, ""))
    with pytest.raises(BadInput, match=r"leads\.csv: empty file"):
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)


def test_missing_column_is_bad_input(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, GOOD_CSV.replace("Signup", "Created")))
    with pytest.raises(BadInput, match=r"leads\.csv, column 'Signup': missing column needed as created_at; the file "
                                       r"has: .*'Created'"):
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)


def test_a_row_with_more_fields_than_the_header_is_quarantined_with_its_row(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, GOOD_CSV.replace("L6;2025-01-07;0;no;cold", "L6;2025-01-07;0;no;cold;x")))
    report = run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params={"max_quarantine_share": 0.9})
    assert report["leads"]["by_reason"][C.MORE_FIELDS] == 1 and report["leads"]["rows_in"] == 9
    q = pl.read_csv(tmp_path / "out" / "quarantine.csv").filter(pl.col("table") == "leads")
    assert q.filter(pl.col("reason") == C.MORE_FIELDS)["row"].to_list() == [6]
    assert "L6" not in pl.read_parquet(tmp_path / "out" / "leads.parquet")["lead_id"].to_list()


def test_created_at_column_of_the_wrong_type_is_bad_input_with_row(tmp_path: Path) -> None:
    text = "Lead Id;Signup;Visits;Outcome;Tags\nL1;03/01/2025;4;yes;x\nL2;04/01/2025;4;no;x\n"
    m = good_mapping(csv_export(tmp_path, text))
    with pytest.raises(BadInput, match=r"column 'Signup', row 1: not one of 2 values parses as a timestamp"):
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)


def test_too_many_quarantined_rows_fail_after_writing_the_quarantine(tmp_path: Path) -> None:
    m = good_mapping(csv_export(tmp_path, GOOD_CSV))
    with pytest.raises(BadInput, match=r"4 of 9 leads rows \(44\.4%\) were quarantined, more than "
                                       r"ingest\.max_quarantine_share=0\.2"):
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params={"max_quarantine_share": 0.2})
    assert pl.read_csv(tmp_path / "out" / "quarantine.csv").height == 8  # leads and their outcomes
    assert not (tmp_path / "out" / "leads.parquet").exists()


def test_numbers_after_the_inference_window_still_read_as_numbers(tmp_path: Path) -> None:
    rows = [f"L{i};2025-01-01;{i};no;x" for i in range(1, 1500)] + ["L1500;2025-01-01;5228.1;yes;x"]
    m = good_mapping(csv_export(tmp_path, "Lead Id;Signup;Visits;Outcome;Tags\n" + "\n".join(rows) + "\n"))
    report = run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)
    assert report["leads"]["quarantined"] == 0
    assert pl.read_parquet(tmp_path / "out" / "leads.parquet")["visits"].max() == pytest.approx(5228.1)


def test_numbers_written_with_a_decimal_comma_are_read_with_csv_decimal(tmp_path: Path) -> None:
    """`csv: {decimal: ","}`: thousands grouped by '.', space or apostrophe and a decimal comma, in a numeric feature,
    the legacy score and an event value; a text that is still no number is quarantined naming its value. Without the
    option the same file reads 1.200 as 1.2 (why the option exists)."""
    leads = ("Lead Id;Signup;Mitarbeiter;Punkte;Outcome\n"
             "L1;2025-01-03;1.200;72,0;yes\nL2;2025-01-04;45;10;no\nL3;2025-01-05;2 500,5;5,0;no\n"
             "L4;2025-01-06;1'000;;yes\nL5;2025-01-07;viele;3;no\n")
    events = "Lead Id;At;Typ;Minuten\nL1;2025-01-03 10:00:00;call;12,5\nL2;2025-01-04 11:00:00;call;1.000,25\n"
    m = good_mapping(csv_export(tmp_path, leads))
    m["event_types"] = {"call": {"group": "engagement", "description": "Calls", "noun": ["call", "calls"],
                                 "value": {"description": "Minutes on calls", "unit": "minutes"}}}
    m["leads"].update(csv={"separator": ";", "decimal": ","}, rename={}, legacy_score="Punkte",
                      numeric={"Mitarbeiter": {"group": "company_fit", "description": "Employees", "min": 0}})
    m["events"] = {"path": str(csv_export(tmp_path, events, "events.csv")), "csv": {"decimal": ","},
                   "lead_id": "Lead Id", "occurred_at": {"column": "At"}, "event_type": "Typ", "value": "Minuten"}
    report = run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)
    out = pl.read_parquet(tmp_path / "out" / "leads.parquet").sort("lead_id")
    assert out["lead_id"].to_list() == ["L1", "L2", "L3", "L4"]
    assert out["Mitarbeiter"].to_list() == [1200.0, 45.0, 2500.5, 1000.0]
    assert out["legacy_score"].to_list() == [72, 10, 5, None]
    assert pl.read_parquet(tmp_path / "out" / "events.parquet").sort("lead_id")["value"].to_list() == [12.5, 1000.25]
    bad = pl.read_csv(tmp_path / "out" / "quarantine.csv").filter(pl.col("table") == "leads")
    assert bad.select("row", "column").rows() == [(5, "Mitarbeiter")] and report["leads"]["quarantined"] == 1
    del m["leads"]["csv"]["decimal"], m["events"]
    m["leads"]["legacy_score"] = None
    csv_export(tmp_path, leads.replace("72,0", "72").replace("2 500,5", "7").replace("5,0", "5"))
    run(write_mapping(tmp_path, m), tmp_path / "out2", report=None, params={"max_quarantine_share": 0.9})
    assert pl.read_parquet(tmp_path / "out2" / "leads.parquet").sort("lead_id")["Mitarbeiter"][0] == 1.2
    m["leads"]["csv"] = {"separator": ",", "decimal": ","}
    with pytest.raises(MappingError, match="decimal ',' needs another separator"):
        load_mapping(m)


def test_a_wall_clock_time_its_zone_skips_is_quarantined_saying_so(tmp_path: Path) -> None:
    """02:30 on the night Berlin's clocks go forward does not exist there: the row is quarantined for that, in the
    leads (parsed by the contract) and in the events (parsed by the mapping), while a text that is no time at all
    stays "unparseable"; the same wall-clock time in UTC is fine."""
    leads = ("Lead Id;Signup;Visits;Outcome\nL1;29.03.2025 02:30;1;yes\nL2;30.03.2025 02:30;1;no\n"
             "L3;kein Datum;1;no\nL4;30.03.2025 03:30;2;no\nL5;31.03.2025 09:00;3;yes\n")
    events = "Lead Id;At;Typ\nL1;30/03/2025 02:15;meeting\nL4;30/03/2025 04:15;meeting\nL5;31/03/2025 10:00;meeting\n"
    m = good_mapping(csv_export(tmp_path, leads))
    m["leads"]["created_at"] = {"column": "Signup", "format": "%d.%m.%Y %H:%M", "timezone": "Europe/Berlin"}
    m["events"] = {"path": str(csv_export(tmp_path, events, "events.csv")), "lead_id": "Lead Id",
                   "occurred_at": {"column": "At", "format": "%d/%m/%Y %H:%M", "timezone": "Europe/Berlin"},
                   "event_type": "Typ"}
    run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)
    q = pl.read_csv(tmp_path / "out" / "quarantine.csv")
    reasons = {(t, r, c): why for t, r, c, why in q.select("table", "row", "column", "reason").iter_rows()}
    assert reasons[("leads", 2, "Signup")] == C.NONEXISTENT_LOCAL_TIME
    assert reasons[("leads", 3, "Signup")] == C.UNPARSEABLE_TIMESTAMP
    assert reasons[("events", 1, "At")] == C.NONEXISTENT_LOCAL_TIME
    assert set(pl.read_parquet(tmp_path / "out" / "events.parquet")["lead_id"]) == {"L4", "L5"}
    m["leads"]["created_at"]["timezone"] = "UTC"
    run(write_mapping(tmp_path, m), tmp_path / "out2", report=None, params=PARAMS)
    q2 = pl.read_csv(tmp_path / "out2" / "quarantine.csv").filter(pl.col("table") == "leads")
    assert q2.select("row", "reason").rows() == [(3, C.UNPARSEABLE_TIMESTAMP)]


def test_validate_writes_nothing_and_print_report_reads_well(tmp_path: Path) -> None:
    leads = csv_export(tmp_path, GOOD_CSV)
    source = write_mapping(tmp_path, good_mapping(tmp_path / "elsewhere.csv"))
    before = sorted(p.name for p in tmp_path.iterdir())
    report = validate(leads, None, None, source, params=PARAMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert report["leads"]["quarantined"] == 4 and len(report["quarantine_sample"]) == 8
    buf = io.StringIO()
    print_report(report, console=Console(file=buf, width=200))
    text = buf.getvalue()
    assert "rows in = rows out + quarantined" in text and "duplicate lead_id: 2" in text and "Tags" in text


def test_validate_canonical_csv_without_a_mapping(tmp_path: Path) -> None:
    leads = csv_export(tmp_path, "lead_id,created_at,industry\na,2025-01-01,software\na,2025-01-02,retail\n"
                                 "c,2025-01-03T10:00:00Z,\n")
    ev = csv_export(tmp_path, "lead_id,occurred_at,event_type\na,2025-01-02,meeting\nc,2025-01-04,chat\n", "ev.csv")
    report = validate(leads, ev, None, None, params=PARAMS)
    assert report["leads"]["by_reason"] == {C.DUPLICATE_LEAD_ID: 2}
    assert report["events"]["by_reason"] == {C.LEAD_QUARANTINED: 1} and report["events"]["other_event_types"] == 1


def test_validate_raises_bad_input_on_a_file_level_problem(tmp_path: Path) -> None:
    leads = csv_export(tmp_path, 'lead_id,created_at,name\na,2025-01-01,"Ann Example\nb,2025-01-02,Bo\n')
    with pytest.raises(BadInput, match=r"leads\.csv, row 1: cannot be read: a quoted field is never closed") as e:
        validate(leads, None, None, None, params=PARAMS)
    assert "Ann" not in str(e.value) and "Bo" not in str(e.value)


def test_a_value_that_does_not_fit_a_schema_type_names_the_column_and_the_way_out(tmp_path: Path) -> None:
    """polars stops at the first value of a `schema:` column it cannot parse and names no row: the message names the
    file and column, says why there is no row, and points at what does name rows (never the value itself)."""
    m = good_mapping(csv_export(tmp_path, GOOD_CSV.replace("L9;2025-01-10;7;", "L9;2025-01-10;7,5;")))
    m["leads"]["schema"] = {"Visits": "float"}
    m["null_values"] = []
    with pytest.raises(BadInput, match=r"leads\.csv, column 'Visits': a value does not parse as the type this "
                                       r"column is read with .*`schema:`.*decimal: ','") as e:
        run(write_mapping(tmp_path, m), tmp_path / "out", report=None, params=PARAMS)
    assert "7,5" not in str(e.value)


def test_no_python_module_names_a_real_data_set() -> None:
    """Real data sets are reached through mappings only: their paths and names stay out of the package code."""
    pattern = re.compile(r"(?i:x-education|x_education|bank-additional|bank_marketing|shared/data)|Leads\.csv")
    offenders = [str(p.relative_to(ROOT)) for pkg in ("features", "models", "pipelines")
                 for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# ---------------------------------------------------------------- the real data sets, by configuration alone


@needs_shared_data
def test_x_education_maps_to_canonical_form(tmp_path: Path) -> None:
    report = run(ROOT / "sources" / "x_education.yaml", tmp_path, report=None, params=PARAMS, root=ROOT)
    assert report["leads"]["rows_in"] == 9240 == report["leads"]["rows_out"] + report["leads"]["quarantined"]
    leads = pl.read_parquet(tmp_path / "leads.parquet")
    outcomes = pl.read_parquet(tmp_path / "outcomes.parquet")
    assert leads.height == outcomes.height == 9240
    assert outcomes["converted"].mean() == pytest.approx(0.385, abs=0.002)
    leaky = {"Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity"}
    assert not leaky & set(leads.columns) and not {c for c in leads.columns if "Asymmetrique" in c}
    assert leaky <= set(report["leads"]["dropped_columns"]["leaky"])
    text = leads.select(pl.col(pl.String)).drop("lead_id")
    assert not any((text[c] == "Select").any() for c in text.columns)
    assert leads["lead_source"].is_in(["google"]).sum() == 0
    src = json.loads((tmp_path / "source.json").read_text())
    assert src["has_events"] is False and src["has_outcome_times"] is False
    assert src["time_basis"]["kind"] == "order_by" and leads["created_at"].n_unique() == 9240


@needs_shared_data
def test_bank_marketing_maps_to_canonical_form(tmp_path: Path) -> None:
    report = run(ROOT / "sources" / "bank_marketing.yaml", tmp_path, report=None, params=PARAMS, root=ROOT)
    assert report["leads"]["rows_in"] == 41188 == report["leads"]["rows_out"] + report["leads"]["quarantined"]
    leads = pl.read_parquet(tmp_path / "leads.parquet")
    outcomes = pl.read_parquet(tmp_path / "outcomes.parquet")
    assert outcomes["converted"].mean() == pytest.approx(0.1127, abs=0.001)
    assert "duration" not in leads.columns and report["leads"]["dropped_columns"]["leaky"] == ["duration"]
    assert leads["lead_id"][:2].to_list() == ["bank-1", "bank-2"] and leads["lead_id"].is_unique().all()
    assert leads["created_at"].is_sorted()
    assert leads["pdays"].null_count() == 39673 and leads["pdays"].max() < 999
    assert leads["job"].null_count() == 330 and not (leads["education"] == "unknown").any()
    assert leads.schema["nr_employed"] == pl.Float64
