"""The mapping language for strangers' exports: derived columns, several activity sources with filters and lookup
joins, the export's own event types with values and reason groups, date-only times, blanks, value maps for missing
values, seniority abbreviations and note templates checked at load. Tiny frames built in code."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from features import contract as C
from features.build import build_features, parse_seniority
from features.mapping import MappingError, apply_mapping, load_mapping
from features.schema import TS
from features.spec import make_spec
from models.reasons import render, source_catalog
from pipelines.ingest import run
from pipelines.io import BadInput

UTC = timezone.utc
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PARAMS = {"max_quarantine_share": 0.5}


def leads_section(**extra: Any) -> dict[str, Any]:
    return {"path": "leads.csv", "lead_id": "id", "created_at": {"column": "created"}, **extra}


def with_events(events: Any, leads: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"name": "t", "leads": leads or leads_section(), "events": events,
            "outcomes": {"path": "o.csv", "lead_id": "id", "converted_at": {"column": "won"}}, **top}


def check(m: dict[str, Any], tables: dict[str, pl.DataFrame]) -> tuple[Any, C.ContractResult]:
    """Apply a mapping to frames and run the contract, as ingest does (in memory)."""
    mp = apply_mapping(load_mapping(m), tables)
    result = C.validate(mp.leads, mp.events, mp.outcomes, numeric=mp.numeric, categorical=mp.categorical,
                        passthrough=mp.passthrough, time_formats=mp.time_formats, origins=mp.origins, now=NOW,
                        event_types=mp.event_types)
    return mp, result


LEADS = pl.DataFrame({"id": ["a", "b", "c", "d"], "created": ["2025-03-01T09:00:00Z"] * 4,
                      "email": ["x@uni.EDU", "y@gmail.com", None, "z@acme.io"]})
OUTCOMES = pl.DataFrame({"id": ["a"], "won": ["2025-04-01"]})


# ---------------------------------------------------------------- derive


def test_the_two_derive_examples_of_the_issue_work_as_written() -> None:
    text = """
name: t
leads:
  path: leads.csv
  lead_id: id
  created_at: {column: created}
  derive:
    email_domain_kind: "CASE WHEN lower(split_part(email, '@', 2)) LIKE '%.edu' THEN 'student' WHEN lower(split_part(email, '@', 2)) IN ('gmail.com', 'yahoo.com') THEN 'free-mail' WHEN email IS NULL THEN NULL ELSE 'corporate' END"
  categorical: {email_domain_kind: {group: email_domain, description: Domain kind}}
  pii: [email]
events:
  path: ev.csv
  lead_id: id
  occurred_at: {column: at}
  derive:
    activity: "CASE WHEN \\"Activity Type\\" = 'PAGE_VIEW' THEN 'PAGE_VIEW:' || regexp_replace(\\"Page URL\\", '^https?://[^/]+', '') ELSE \\"Activity Type\\" END"
  event_type: {column: activity, map: {"PAGE_VIEW:/pricing": page_pricing}}
outcomes: {path: o.csv, lead_id: id, converted_at: {column: won}}
"""  # noqa: E501
    events = pl.DataFrame({"id": ["a", "a", "b"], "at": ["2025-03-02T10:00:00Z"] * 3,
                           "Activity Type": ["PAGE_VIEW", "PAGE_VIEW", "EMAIL_OPEN"],
                           "Page URL": ["https://acme.example/pricing", "http://acme.example/careers", None]})
    _, result = check(yaml.safe_load(text), {"leads": LEADS, "events": events, "outcomes": OUTCOMES})
    assert result.leads["email_domain_kind"].to_list() == ["student", "free-mail", None, "corporate"]
    assert result.events["event_type"].to_list() == ["page_pricing", "other", "other"]


def test_a_derived_column_can_be_value_mapped_and_used_as_a_feature() -> None:
    m = {"name": "t", "leads": leads_section(
        derive={"domain": "lower(split_part(email, '@', 2))"}, value_maps={"domain": {"gmail.com": "free-mail"}},
        categorical={"domain": {"group": "email_domain", "description": "Domain"}},
        target={"column": "id", "positive": ["a"]})}
    m["leads"]["pii"] = ["email"]
    _, result = check(m, {"leads": LEADS})
    assert result.leads["domain"].to_list() == ["uni.edu", "free-mail", None, "acme.io"]


@pytest.mark.parametrize(("expression", "message"), [
    ("lower(mail)", r"leads\.derive\.kind: 'lower\(mail\)' names the column 'mail', which this table does not have; "
                    r"available: 'id', 'created', 'email', 'num'"),
    ("lower(num)", r"leads\.derive\.kind: 'lower\(num\)' cannot be evaluated on this table: .*expected `String`, "
                   r"got `i32`.*available columns"),
])  # fmt: skip
def test_a_derive_that_cannot_run_is_bad_input_naming_key_expression_columns_and_why(expression: str,
                                                                                     message: str) -> None:
    m = {"name": "t", "leads": leads_section(derive={"kind": expression}, target={"column": "id", "positive": ["a"]})}
    with pytest.raises(BadInput, match=message):
        apply_mapping(load_mapping(m), {"leads": LEADS.with_columns(pl.lit(1).alias("num"))})


def test_sql_that_does_not_parse_is_refused_when_the_mapping_loads() -> None:
    m = {"name": "t", "leads": leads_section(derive={"kind": "lower(email"}, target={"column": "id",
                                                                                      "positive": ["a"]})}
    with pytest.raises(MappingError, match=r"leads\.derive\.kind: cannot read the SQL expression 'lower\(email'"):
        load_mapping(m)


# ---------------------------------------------------------------- several sources, filter, lookup join


def campaign_mapping() -> dict[str, Any]:
    return with_events([
        {"name": "calls", "path": "calls.csv", "lead_id": "who", "occurred_at": {"column": "day"},
         "derive": {"kind": "CASE WHEN outcome = 'Connected' THEN 'call_connected' ELSE 'other' END"},
         "event_type": "kind", "value": "seconds"},
        {"name": "members", "path": "members.csv", "lead_id": "lead", "occurred_at": {"column": "added"},
         "derive": {"kind": "'campaign_member'"}, "event_type": "kind"},
        {"name": "responses", "path": "members.csv", "lead_id": "lead", "occurred_at": {"column": "responded"},
         "join": {"path": "campaigns.csv", "on": {"campaign": "Id"}, "columns": {"Type": "campaign_type"}},
         "filter": "responded IS NOT NULL",
         "derive": {"kind": "CASE WHEN campaign_type = 'Webinar' THEN 'webinar' ELSE 'other' END"},
         "event_type": "kind"},
    ], event_types={
        "call_connected": {"group": "sales_calls", "description": "Connected calls", "high_intent": True,
                           "value": {"description": "Seconds on connected calls", "unit": "seconds"},
                           "reason": {"for": "Talked with sales {call_connected_30d|time} in 30 days"}},
        "campaign_member": {"group": "engagement", "description": "Campaign memberships"}},
        groups={"sales_calls": {"label": "Sales calls", "reason": {"against": "Not reached by phone yet"}}})


CALLS = pl.DataFrame({"who": ["a", "a", "zz"], "day": ["2025-03-03", "2025-03-04", "2025-03-04"],
                      "outcome": ["Connected", "No Answer", "Connected"], "seconds": [300.0, 0.0, 60.0]})
MEMBERS = pl.DataFrame({"lead": ["a", "b", "c"], "campaign": ["C1", "C2", "C1"],
                        "added": ["2025-03-02T08:00:00Z"] * 3, "responded": ["2025-03-05", None, "not a date"]})
CAMPAIGNS = pl.DataFrame({"Id": ["C1", "C2"], "Type": ["Webinar", "Email"]})


def campaign_tables() -> dict[str, pl.DataFrame]:
    return {"leads": LEADS, "events:calls": CALLS, "events:members": MEMBERS, "events:responses": MEMBERS,
            "events:responses.join1": CAMPAIGNS, "outcomes": OUTCOMES}


def test_several_event_sources_are_unioned_through_one_contract() -> None:
    mp, result = check(campaign_mapping(), campaign_tables())
    ev = result.events.sort("occurred_at", "event_type")
    assert sorted(ev["event_type"].to_list()) == sorted(
        ["call_connected", "other", "campaign_member", "campaign_member", "campaign_member", "webinar"])
    assert ev.filter(pl.col("event_type") == "call_connected")["value"].to_list() == [300.0]
    # The same file twice: a membership at its creation time, a response at its (date-only) response date.
    assert ev.filter(pl.col("event_type") == "webinar")["occurred_at"].to_list() == [
        datetime(2025, 3, 5, 23, 59, 59, tzinfo=UTC)]
    assert mp.skipped["events:responses"].collect().item() == 1  # b never responded: skipped, not quarantined


def test_quarantine_reasons_name_the_event_source() -> None:
    _, result = check(campaign_mapping(), campaign_tables())
    bad = result.quarantine.filter(pl.col("table").str.starts_with("events")).sort("table")
    assert bad.select("table", "row", "column", "reason").rows() == [
        ("events:calls", 3, "who", C.UNKNOWN_LEAD),
        ("events:responses", 3, "responded", C.UNPARSEABLE_TIMESTAMP)]


def test_a_lookup_table_with_a_repeated_key_is_refused() -> None:
    tables = campaign_tables()
    tables["events:responses.join1"] = pl.concat([CAMPAIGNS, CAMPAIGNS])
    with pytest.raises(BadInput, match=r"column 'Id': a lookup table's join key must be unique"):
        check(campaign_mapping(), tables)


def test_yaml_reads_a_bare_on_key_of_a_join_as_the_word() -> None:
    m = yaml.safe_load(yaml.safe_dump(campaign_mapping()).replace("'on':", "on:"))
    assert True in m["events"][2]["join"]
    assert load_mapping(m)["events"][2]["join_tables"][0]["on"] == {"campaign": "Id"}


def test_event_sources_need_their_own_names_and_a_value_needs_a_declared_meaning() -> None:
    m = campaign_mapping()
    m["events"][1]["name"] = "calls"
    with pytest.raises(MappingError, match=r"two sources are named 'calls'"):
        load_mapping(m)
    m = campaign_mapping()
    del m["event_types"]["call_connected"]["value"]
    with pytest.raises(MappingError, match=r"event source 'calls' gives a `value` column, but no declared event type"):
        load_mapping(m)


def test_ingest_reports_skipped_rows_and_per_source_counts(tmp_path: Path) -> None:
    for name, frame in campaign_tables().items():
        if "." not in name:
            frame.write_csv(tmp_path / f"{name.split(':')[-1]}.csv")
    CAMPAIGNS.write_csv(tmp_path / "campaigns.csv")
    m = campaign_mapping()
    m["leads"]["path"], m["outcomes"]["path"] = "leads.csv", "outcomes.csv"
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(m))
    report = run(tmp_path / "map.yaml", tmp_path / "out", params=PARAMS, root=tmp_path, echo=lambda _: None)
    ev = report["events"]
    assert ev["skipped_by_filter"] == {"responses": 1}
    assert ev["rows_in"] == ev["rows_out"] + ev["quarantined"] == 3 + 3 + 2
    assert ev["sources"]["calls"] == {"rows_in": 3, "rows_out": 2, "quarantined": 1}
    q = pl.read_csv(tmp_path / "out" / "quarantine.csv")
    assert set(q["table"]) == {"events:calls", "events:responses"}


# ---------------------------------------------------------------- times


def test_date_only_events_are_known_at_the_end_of_their_day_in_the_stated_zone() -> None:
    m = with_events({"path": "ev.csv", "lead_id": "id", "occurred_at": {"column": "day",
                                                                         "timezone": "America/New_York"},
                     "event_type": "kind"})
    events = pl.DataFrame({"id": ["a"], "day": ["2025-03-15"], "kind": ["demo_request"]})
    _, result = check(m, {"leads": LEADS, "events": events, "outcomes": OUTCOMES})
    assert result.events["occurred_at"].to_list() == [datetime(2025, 3, 16, 3, 59, 59, tzinfo=UTC)]
    # t0 = created + 14 days = 2025-03-15 09:00 UTC: a demo dated that day is not yet known then.
    feats = build_features(result.leads.lazy(), result.events.lazy(), {"has_events": True}, observation_days=14,
                           windows=[7]).collect()
    assert feats.filter(pl.col("lead_id") == "a")["demo_request_7d"].item() == 0
    later = build_features(result.leads.lazy(), result.events.lazy(), {"has_events": True}, observation_days=15,
                           windows=[7]).collect()
    assert later.filter(pl.col("lead_id") == "a")["demo_request_7d"].item() == 1


def test_timestamps_with_a_numeric_offset_or_z_parse_without_a_format() -> None:
    frame = pl.DataFrame({"t": ["2025-03-01T10:22:31.000+0000", "2025-03-01T10:22:31Z", "2025-03-01T11:22:31+01:00",
                                "2025-03-01T10:22:31.000Z"]})
    parsed = frame.select(C.timestamp_expr("t", pl.String()))["t"]
    assert parsed.to_list() == [datetime(2025, 3, 1, 10, 22, 31, tzinfo=UTC)] * 4


# ---------------------------------------------------------------- declared event types


def declared_source() -> dict[str, Any]:
    mp = load_mapping(campaign_mapping())
    return {"name": "t", "has_events": True, "categorical": {}, "numeric": {},
            "event_types": mp["event_types"], "groups": mp["groups"]}


def test_declared_types_get_counts_recency_and_value_sums_like_built_in_ones() -> None:
    leads = pl.LazyFrame({"lead_id": ["a", "b"], "created_at": [datetime(2025, 3, 1, tzinfo=UTC)] * 2},
                         schema_overrides={"created_at": TS})
    events = pl.LazyFrame({"lead_id": ["a", "a", "a", "b"],
                           "occurred_at": [datetime(2025, 3, d, tzinfo=UTC) for d in (2, 10, 20, 3)],
                           "event_type": ["call_connected", "call_connected", "call_connected", "campaign_member"],
                           "value": [100.0, 50.0, 999.0, None]}, schema_overrides={"occurred_at": TS})
    out = build_features(leads, events, declared_source(), observation_days=14, windows=[7, 30]).collect()
    a = out.filter(pl.col("lead_id") == "a").row(0, named=True)
    assert (a["call_connected_7d"], a["call_connected_30d"]) == (1, 2)
    assert (a["call_connected_value_7d"], a["call_connected_value_30d"]) == (50.0, 150.0)
    assert a["days_since_call_connected"] == pytest.approx(5.0)
    assert a["days_since_high_intent"] == pytest.approx(5.0)  # declared high_intent: true
    b = out.filter(pl.col("lead_id") == "b").row(0, named=True)
    assert b["campaign_member_30d"] == 1 and b["call_connected_value_30d"] == 0.0


def test_declared_types_are_described_in_the_spec_with_their_group_and_reason() -> None:
    source = declared_source()
    frame = build_features(pl.LazyFrame({"lead_id": ["a"], "created_at": [datetime(2025, 3, 1, tzinfo=UTC)]},
                                        schema_overrides={"created_at": TS}),
                           pl.LazyFrame(schema=C.empty_events().schema), source, observation_days=14,
                           windows=[30]).collect()
    spec = make_spec(frame, source, observation_days=14, horizon_days=60, windows=[30])
    f = {x["name"]: x for x in spec["features"]}
    assert f["call_connected_30d"]["group"] == "sales_calls"
    assert f["call_connected_30d"]["reason"]["for"] == "Talked with sales {call_connected_30d|time} in 30 days"
    assert f["call_connected_value_30d"]["unit"] == "seconds"
    assert "Connected calls" in f["call_connected_30d"]["description"]
    assert spec["event_types"][-1] == "other" and "call_connected" in spec["event_types"]


def test_a_mappings_reason_group_has_its_label_and_sentences_in_notes() -> None:
    spec = {"groups": declared_source()["groups"], "declared_event_types": declared_source()["event_types"]}
    catalog = source_catalog({"groups": {}}, spec)
    assert catalog["groups"]["sales_calls"]["label"] == "Sales calls"
    assert render("sales_calls", "against", {}, catalog) == "Not reached by phone yet"
    text = render("sales_calls", "for", {"call_connected_30d": 3}, catalog, top_feature="call_connected_30d",
                  spec_templates={"call_connected_30d": {"for": "Talked with sales {call_connected_30d|time} in 30 "
                                                                 "days"}})
    assert text == "Talked with sales 3 times in 30 days"


def test_a_declared_type_cannot_take_a_built_in_name_and_map_targets_must_be_known() -> None:
    m = campaign_mapping()
    m["event_types"]["page_pricing"] = {"group": "engagement", "description": "x"}
    with pytest.raises(MappingError, match=r"event_types\.page_pricing: a declared event type must be a new"):
        load_mapping(m)
    m = with_events({"path": "e.csv", "event_type": {"column": "k", "map": {"Call": "phone_call"}}})
    with pytest.raises(MappingError, match=r"targets \['phone_call'\] are not event types.*declare your own"):
        load_mapping(m)


# ---------------------------------------------------------------- blanks, value maps, parse errors


def test_blank_quoted_csv_fields_are_missing_and_a_missing_rating_can_count_as_cold(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text('"Id","Created","Rating","Won"\n"a","2025-01-01","","2025-02-01"\n'
                                        '"b","2025-01-02","Hot",""\n')
    m = {"name": "t", "snapshot_at": "2025-06-01", "leads": {
        "path": "leads.csv", "lead_id": "Id", "created_at": {"column": "Created"},
        "value_maps": {"Rating": {None: "Cold"}},
        "derive": {"won": "Won IS NOT NULL"},
        "target": {"column": "won", "positive": [True], "converted_at": {"column": "Won"}},
        "categorical": {"Rating": {"group": "buying_timeline", "description": "Rating"}}}}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(m))
    report = run(tmp_path / "map.yaml", tmp_path / "out", params=PARAMS, root=tmp_path, echo=lambda _: None)
    assert report["leads"]["quarantined"] == 0 and report["outcomes"]["quarantined"] == 0
    assert pl.read_parquet(tmp_path / "out" / "leads.parquet")["Rating"].to_list() == ["Cold", "Hot"]
    out = pl.read_parquet(tmp_path / "out" / "outcomes.parquet")
    assert out["converted"].to_list() == [True, False] and out["converted_at"].null_count() == 1


def test_value_map_keys_that_can_never_match_are_refused() -> None:
    with pytest.raises(MappingError, match=r"value_maps\.Rating: the key \"\" can never match.*key `null`"):
        load_mapping({"name": "t", "leads": leads_section(value_maps={"Rating": {"": "Cold"}},
                                                          target={"column": "id", "positive": ["a"]})})
    with pytest.raises(MappingError, match=r"value_maps\.Rating: the key 'unknown' can never match, because "
                                           r"null_values"):
        load_mapping({"name": "t", "null_values": ["unknown"], "leads": leads_section(
            value_maps={"Rating": {"unknown": "Cold"}}, target={"column": "id", "positive": ["a"]})})


def test_too_many_unparseable_values_name_their_column(tmp_path: Path) -> None:
    rows = "".join(f"L{i},2025-01-0{i % 9 + 1},1,{'2025-02-01' if i < 3 else '31.01.2025'}\n" for i in range(9))
    (tmp_path / "leads.csv").write_text("Id,Created,Won,WonOn\n" + rows)
    m = {"name": "t", "leads": {"path": "leads.csv", "lead_id": "Id", "created_at": {"column": "Created"},
                                "target": {"column": "Won", "positive": [1], "converted_at": {"column": "WonOn"}}}}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(BadInput, match=r"top reasons: \{'unparseable timestamp \(WonOn\)': 6\}"):
        run(tmp_path / "map.yaml", tmp_path / "out", params=PARAMS, root=tmp_path, echo=lambda _: None)


# ---------------------------------------------------------------- seniority


@pytest.mark.parametrize(("title", "level"), [
    ("Mgr, Marketing Ops", "manager"), ("Sr. Mgr Demand Gen", "manager"), ("Dir, Sales", "director"),
    ("Sr. Dir Engineering", "director"), ("SVP Marketing", "vp"), ("EVP, Operations", "vp"), ("CRO", "executive"),
    ("CMO", "executive"), ("CISO", "executive"), ("Chief Revenue Officer", "executive"),
    ("Vice President, Sales", "vp"), ("Marketing Intern", "student"), ("Data Analyst", "individual_contributor"),
])  # fmt: skip
def test_seniority_reads_common_abbreviations(title: str, level: str) -> None:
    assert pl.DataFrame({"t": [title]}).select(parse_seniority(pl.col("t")).alias("s"))["s"].item() == level


def test_a_mapping_can_add_its_own_seniority_patterns() -> None:
    frame = pl.DataFrame({"t": ["GM, EMEA", "Principal Engineer"]})
    assert frame.select(parse_seniority(pl.col("t")).alias("s"))["s"].to_list() == ["individual_contributor"] * 2
    ours = {"executive": [r"\bgm\b"], "manager": ["principal"]}
    assert frame.select(parse_seniority(pl.col("t"), ours).alias("s"))["s"].to_list() == ["executive", "manager"]
    m = {"name": "t", "leads": leads_section(target={"column": "id", "positive": ["a"]}, categorical={
        "title": {"group": "seniority", "description": "Title", "parse": "seniority",
                  "patterns": {"executive": [r"\bgm\b"]}}})}
    assert load_mapping(m)["leads"]["categorical"]["title"]["patterns"] == {"executive": [r"\bgm\b"]}
    m["leads"]["categorical"]["title"]["patterns"] = {"executive": ["(unclosed"]}
    with pytest.raises(MappingError, match=r"patterns\.executive: '\(unclosed' is not a regular expression"):
        load_mapping(m)


# ---------------------------------------------------------------- templates checked at load


def template_mapping(**leads: Any) -> dict[str, Any]:
    return {"name": "t", "leads": leads_section(
        target={"column": "id", "positive": ["a"]}, rename={"Country/Region": "country"}, keep=["country"],
        categorical={"industry": {"group": "company_fit", "description": "Industry"}}, **leads)}


def test_a_placeholder_that_names_nothing_is_refused_at_load_naming_the_template() -> None:
    with pytest.raises(MappingError, match=r"template leads\.who\[0\] '\{industry\} in \{Country/Region\}': "
                                           r"\{Country/Region\} is not a placeholder.*rename"):
        load_mapping(template_mapping(who=["{industry} in {Country/Region}"]))
    with pytest.raises(MappingError, match=r"template leads\.what_happened\[1\] .*\{visits\} names no feature, kept "
                                           r"column or derived column"):
        load_mapping(template_mapping(what_happened=["Fine", {"if": "visits > 0", "text": "Came back"}]))


def test_templates_may_name_features_kept_and_derived_columns() -> None:
    m = template_mapping(who=["{industry} in {country}, {domain}", "{seniority_label} at {industry}"],
                         what_happened=["{page_pricing_30d|pricing view} and {days_since_meeting} days"],
                         derive={"domain": "split_part(email, '@', 2)"})
    loaded = load_mapping(m)
    assert "domain" in loaded["leads"]["keep"]  # a derived column a template uses is carried to the note


def test_a_placeholder_that_names_nothing_exits_2_from_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    (tmp_path / "map.yaml").write_text(yaml.safe_dump(template_mapping(who="{Country/Region}")))
    result = CliRunner().invoke(app, ["validate", "--source", str(tmp_path / "map.yaml")])
    assert result.exit_code == 2
    assert "template leads.who[0]" in result.output + str(result.stderr_bytes or b"")


def test_feature_frames_of_the_synthetic_source_are_unchanged() -> None:
    """Byte-identical synthetic features: this digest was computed with the code before the mapping language grew
    (derive, several sources, declared types), on the same tiny seeded export."""
    from features.synthetic import generate_chunks

    chunk = next(generate_chunks(400, seed=3, start="2025-01-01", months=4, observation_days=14, horizon_days=60))
    source = yaml.safe_load((Path(__file__).resolve().parents[1] / "sources" / "synthetic.yaml").read_text())["leads"]
    source = {"name": "synthetic", "has_events": True, "categorical": source["categorical"], "numeric": {}}
    frame = build_features(chunk.leads.lazy(), chunk.events.lazy(), source, observation_days=14,
                           windows=[1, 7, 30, 90]).collect()
    digest = frame.hash_rows(seed=1).to_numpy()
    assert frame.columns == GOLDEN_COLUMNS
    assert int(np.bitwise_xor.reduce(digest)) == GOLDEN_DIGEST


GOLDEN_COLUMNS: list[str] = [
    'lead_id', 't0', 'industry', 'employee_band', 'region', 'seniority', 'lead_source', 'email_domain_kind',
    'buying_timeline', 'is_student_domain', 'page_pricing_1d', 'page_pricing_7d', 'page_pricing_30d',
    'page_pricing_90d', 'page_product_1d', 'page_product_7d', 'page_product_30d', 'page_product_90d',
    'page_docs_1d', 'page_docs_7d', 'page_docs_30d', 'page_docs_90d', 'page_careers_1d', 'page_careers_7d',
    'page_careers_30d', 'page_careers_90d', 'page_blog_1d', 'page_blog_7d', 'page_blog_30d', 'page_blog_90d',
    'email_open_1d', 'email_open_7d', 'email_open_30d', 'email_open_90d', 'email_click_1d', 'email_click_7d',
    'email_click_30d', 'email_click_90d', 'email_reply_1d', 'email_reply_7d', 'email_reply_30d', 'email_reply_90d',
    'form_fill_1d', 'form_fill_7d', 'form_fill_30d', 'form_fill_90d', 'content_download_1d', 'content_download_7d',
    'content_download_30d', 'content_download_90d', 'webinar_1d', 'webinar_7d', 'webinar_30d', 'webinar_90d',
    'demo_request_1d', 'demo_request_7d', 'demo_request_30d', 'demo_request_90d', 'trial_start_1d',
    'trial_start_7d', 'trial_start_30d', 'trial_start_90d', 'meeting_1d', 'meeting_7d', 'meeting_30d',
    'meeting_90d', 'other_1d', 'other_7d', 'other_30d', 'other_90d', 'days_since_page_pricing',
    'days_since_page_product', 'days_since_page_docs', 'days_since_page_careers', 'days_since_page_blog',
    'days_since_email_open', 'days_since_email_click', 'days_since_email_reply', 'days_since_form_fill',
    'days_since_content_download', 'days_since_webinar', 'days_since_demo_request', 'days_since_trial_start',
    'days_since_meeting', 'days_since_other', 'days_since_high_intent', 'velocity_7d_vs_prior_23d', 'breadth_90d',
    'careers_only_90d',
]
GOLDEN_DIGEST = 12405771128862663265


def test_a_number_column_mapped_as_a_time_is_checked_not_silently_emptied() -> None:
    m = {"name": "t", "leads": leads_section(target={"column": "id", "positive": ["a"]})}
    frame = pl.DataFrame({"id": ["a", "b"], "created": [12742, 20250101]})
    with pytest.raises(BadInput, match=r"column 'created', row 1: not one of 2 values parses as a timestamp .*; the "
                                       r"first is '12742'"):
        C.raise_on_file_problems(*_checked_leads(m, frame))


def _checked_leads(m: dict[str, Any], frame: pl.DataFrame) -> tuple[C.Checked, dict[str, Any]]:
    mp = apply_mapping(load_mapping(m), {"leads": frame})
    chk = C.annotate_leads(mp.leads, time_format=mp.time_formats.get("created_at"), limit=NOW,
                           origins=mp.origins["leads"])
    return chk, C.summary(chk).collect().row(0, named=True)
