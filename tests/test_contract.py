"""The data contract on tiny canonical frames: row-level problems are quarantined with a reason and the counts
reconcile; file-level problems raise BadInput naming the file, the column and the row."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from features import contract as C
from features.schema import EVENT_TYPE, OTHER_EVENT, TS

UTC = timezone.utc
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def ts(day: int, month: int = 1) -> datetime:
    return datetime(2025, month, day, tzinfo=UTC)


def leads(**extra: list[object]) -> pl.DataFrame:
    base: dict[str, list[object]] = {
        "lead_id": ["a", "b", "c"],
        "created_at": [ts(1), ts(2), ts(3)],
    }
    base.update(extra)
    return pl.DataFrame(base, schema_overrides={"created_at": TS})


def events(ids: list[str], kinds: list[str | None] | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {"lead_id": ids, "occurred_at": [ts(5)] * len(ids), "event_type": kinds or ["page_pricing"] * len(ids)},
        schema_overrides={"occurred_at": TS, "event_type": pl.String},
    )


def reasons(result: C.ContractResult, table: str) -> dict[int, str]:
    q = result.quarantine.filter(pl.col("table") == table)
    return dict(zip(q["row"].to_list(), q["reason"].to_list(), strict=True))


def assert_reconciles(result: C.ContractResult) -> None:
    for table, c in result.counts.items():
        assert c["rows_in"] == c["rows_out"] + c["quarantined"], table
        assert c["rows_out"] == getattr(result, table).height, table
        assert sum(c["by_reason"].values()) == c["quarantined"], table


# ---------------------------------------------------------------- row level


def test_clean_tables_pass_unchanged_and_reconcile() -> None:
    out = pl.DataFrame({"lead_id": ["a", "b"], "converted": [True, False], "converted_at": [ts(9), None]},
                       schema_overrides={"converted_at": TS})
    result = C.validate(leads(), events(["a", "b", "a"]), out, now=NOW)
    assert result.quarantine.height == 0
    assert result.leads.height == 3 and result.events.height == 3 and result.outcomes.height == 2
    assert result.leads.schema["created_at"] == TS
    assert result.max_timestamp == ts(9)
    assert_reconciles(result)


def test_clean_fast_path_without_quarantine_gives_the_same_rows() -> None:
    frame = leads(legacy_score=["7", "8", "9"])
    checked = C.annotate_leads(frame, legacy_score=True, limit=NOW)
    fast = C.clean(checked, any_quarantined=False).collect()
    assert fast.equals(C.clean(checked).collect()) and fast.schema["legacy_score"] == pl.Int64


def test_duplicate_lead_id_quarantines_every_copy() -> None:
    result = C.validate(pl.DataFrame({"lead_id": ["a", "b", "a", "c"], "created_at": ["2025-01-01"] * 4}), now=NOW)
    assert reasons(result, "leads") == {1: C.DUPLICATE_LEAD_ID, 3: C.DUPLICATE_LEAD_ID}
    assert result.leads["lead_id"].to_list() == ["b", "c"]
    assert_reconciles(result)


def test_null_or_empty_lead_id_is_quarantined() -> None:
    result = C.validate(pl.DataFrame({"lead_id": ["a", None, ""], "created_at": ["2025-01-01"] * 3}), now=NOW)
    assert reasons(result, "leads") == {2: C.MISSING_LEAD_ID, 3: C.MISSING_LEAD_ID}
    assert result.quarantine["column"].to_list() == ["lead_id", "lead_id"]


def test_unparseable_and_missing_created_at_are_quarantined_with_their_row() -> None:
    frame = pl.DataFrame({"lead_id": ["a", "b", "c", "d"],
                          "created_at": ["2025-01-01", "31/01/2025", None, "2025-01-02T10:00:00+02:00"]})
    result = C.validate(frame, now=NOW)
    assert reasons(result, "leads") == {2: C.UNPARSEABLE_TIMESTAMP, 3: C.MISSING_TIMESTAMP}
    assert result.leads.filter(pl.col("lead_id") == "d")["created_at"].item() == datetime(2025, 1, 2, 8, tzinfo=UTC)


def test_timestamp_after_snapshot_is_future_and_quarantined() -> None:
    frame = leads()
    result = C.validate(frame, events(["a", "b"]).with_columns(
        pl.Series("occurred_at", [ts(5), ts(20, 2)], dtype=TS)), snapshot_at=ts(1, 2))
    assert reasons(result, "events") == {2: C.FUTURE_TIMESTAMP}
    later = C.validate(frame.with_columns(pl.Series("created_at", [ts(1), ts(2), datetime(2099, 1, 1, tzinfo=UTC)])),
                       now=NOW)
    assert reasons(later, "leads") == {3: C.FUTURE_TIMESTAMP}


def test_event_for_unknown_or_quarantined_lead_is_quarantined() -> None:
    frame = pl.DataFrame({"lead_id": ["a", "b", "b"], "created_at": [ts(1)] * 3}, schema_overrides={"created_at": TS})
    result = C.validate(frame, events(["a", "zz", "b", None]), now=NOW)
    assert reasons(result, "events") == {2: C.UNKNOWN_LEAD, 3: C.LEAD_QUARANTINED, 4: C.MISSING_LEAD_ID}
    assert result.events["lead_id"].to_list() == ["a"]
    assert_reconciles(result)


def test_negative_or_non_numeric_count_is_quarantined() -> None:
    frame = leads(visits=["3", "-1", "lots"])
    result = C.validate(frame, numeric={"visits": {"min": 0}}, now=NOW)
    assert reasons(result, "leads") == {2: C.BELOW_MINIMUM, 3: C.NON_NUMERIC}
    assert result.leads["visits"].to_list() == [3.0]
    assert result.leads.schema["visits"] == pl.Float64


def test_numeric_column_without_bounds_keeps_negative_values() -> None:
    result = C.validate(leads(rate=[-1.5, 0.0, 2.0]), numeric={"rate": {}}, now=NOW)
    assert result.quarantine.height == 0


def test_legacy_score_outside_0_to_100_is_quarantined() -> None:
    result = C.validate(leads(legacy_score=[0, 101, -3]), legacy_score=True, now=NOW)
    assert reasons(result, "leads") == {2: C.LEGACY_SCORE_RANGE, 3: C.LEGACY_SCORE_RANGE}
    assert result.leads.schema["legacy_score"] == pl.Int64


def test_non_numeric_legacy_score_is_quarantined_and_missing_is_allowed() -> None:
    result = C.validate(leads(legacy_score=["70", "high", None]), legacy_score=True, now=NOW)
    assert reasons(result, "leads") == {2: C.NON_NUMERIC}
    assert result.leads["legacy_score"].to_list() == [70, None]


def test_unknown_event_type_is_kept_as_other_and_counted() -> None:
    result = C.validate(leads(), events(["a", "b", "c", "a"], ["page_pricing", "chat_started", "fax", None]), now=NOW)
    assert result.events[EVENT_TYPE].to_list() == ["page_pricing", OTHER_EVENT, OTHER_EVENT]
    assert result.counts["events"]["other_event_types"] == 2
    assert reasons(result, "events") == {4: C.MISSING_EVENT_TYPE}


def test_row_with_several_problems_is_quarantined_once() -> None:
    frame = pl.DataFrame({"lead_id": [None, "b"], "created_at": ["garbage", "2025-01-01"], "n": ["-5", "1"]})
    result = C.validate(frame, numeric={"n": {"min": 0}}, now=NOW)
    assert reasons(result, "leads") == {1: C.MISSING_LEAD_ID}
    assert_reconciles(result)


def test_outcome_problems_are_quarantined() -> None:
    out = pl.DataFrame({
        "lead_id": ["a", "a", "b", "c", "zz"],
        "converted": ["true", "true", "maybe", "false", "true"],
        "converted_at": ["2025-02-01", "2025-02-02", None, "2025-02-03", None],
    })  # fmt: skip
    result = C.validate(leads(), outcomes=out, now=NOW)
    assert reasons(result, "outcomes") == {
        1: C.DUPLICATE_LEAD_ID, 2: C.DUPLICATE_LEAD_ID, 3: C.MISSING_CONVERTED, 4: C.CONVERTED_AT_NOT_CONVERTED,
        5: C.UNKNOWN_LEAD,
    }  # fmt: skip
    assert_reconciles(result)


def test_mixed_problems_reconcile_per_table() -> None:
    frame = pl.DataFrame({"lead_id": ["a", "b", "b", None, "e"],
                          "created_at": ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "x"],
                          "legacy_score": [10, 20, 30, 40, 500]})
    ev = events(["a", "b", "e", "q", "a"], ["meeting", "webinar", "form_fill", "email_open", "smoke_signal"])
    result = C.validate(frame, ev, legacy_score=True, now=NOW)
    assert result.counts["leads"] == {"rows_in": 5, "rows_out": 1, "quarantined": 4, "by_reason": {
        C.DUPLICATE_LEAD_ID: 2, C.MISSING_LEAD_ID: 1, C.UNPARSEABLE_TIMESTAMP: 1}, "by_reason_and_column": {
            "duplicate lead_id (lead_id)": 2, "missing lead_id (lead_id)": 1, "unparseable timestamp (created_at)": 1}}
    assert result.counts["events"]["rows_out"] == 2 and result.counts["events"]["quarantined"] == 3
    assert_reconciles(result)


def test_time_zone_of_naive_timestamps_is_honoured() -> None:
    frame = pl.DataFrame({"lead_id": ["a"], "created_at": ["01/07/2025 12:00"]})
    fmt = C.TimeFormat(format="%d/%m/%Y %H:%M", timezone="Europe/Berlin")
    result = C.validate(frame, time_formats={"created_at": fmt}, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert result.leads["created_at"].item() == datetime(2025, 7, 1, 10, tzinfo=UTC)


# ---------------------------------------------------------------- file level


def test_missing_required_column_raises_naming_file_and_column() -> None:
    frame = pl.DataFrame({"lead_id": ["a"], "signup": ["2025-01-01"]})
    with pytest.raises(C.BadInput, match=r"file leads\.csv, column 'created_at': missing required column"):
        C.validate(frame, files={"leads": "leads.csv"}, now=NOW)


def test_missing_required_column_message_uses_the_source_column_name() -> None:
    frame = pl.DataFrame({"lead_id": ["a"]})
    with pytest.raises(C.BadInput, match=r"column 'Signup Date'"):
        C.validate(frame, origins={"leads": {"created_at": "Signup Date"}}, now=NOW)


@pytest.mark.parametrize("header", ["lead_id;created_at;industry", "lead_id\tcreated_at"])
def test_one_column_whose_header_holds_a_separator_is_a_wrong_delimiter(header: str) -> None:
    with pytest.raises(C.BadInput, match=r"file x\.csv, column .*: the file was read as one column.*separator"):
        C.check_layout([header], file="x.csv", expected_separator=",")


def test_semicolon_file_read_with_semicolon_is_fine() -> None:
    C.check_layout(["lead_id;created_at"], file="x.csv", expected_separator=";")
    C.check_layout(["lead_id", "created_at"], file="x.csv")


def test_leads_without_rows_raise() -> None:
    frame = pl.DataFrame(schema={"lead_id": pl.String, "created_at": pl.String})
    with pytest.raises(C.BadInput, match=r"file l\.csv: no data rows"):
        C.validate(frame, files={"leads": "l.csv"}, now=NOW)


def test_created_at_without_any_parseable_value_raises_with_the_first_row() -> None:
    frame = pl.DataFrame({"lead_id": ["a", "b", "c"], "created_at": [None, "13/01/2025", "14/01/2025"]})
    with pytest.raises(C.BadInput,
                       match=r"file l\.csv, column 'created_at', row 2: not one of 2 values parses as a timestamp.*"
                             r"'13/01/2025'"):
        C.validate(frame, files={"leads": "l.csv"}, now=NOW)


def test_created_at_all_empty_raises() -> None:
    frame = pl.DataFrame({"lead_id": ["a", "b"], "created_at": [None, None]},
                         schema_overrides={"created_at": pl.String})
    with pytest.raises(C.BadInput, match=r"column 'created_at': every value is empty"):
        C.validate(frame, now=NOW)


def test_numeric_column_of_text_raises() -> None:
    with pytest.raises(C.BadInput, match=r"column 'visits', row 1: not one of 3 values parses as a number"):
        C.validate(leads(visits=["many", "few", "some"]), numeric={"visits": {}}, now=NOW)


def test_occurred_at_without_any_parseable_value_raises() -> None:
    ev = pl.DataFrame({"lead_id": ["a"], "occurred_at": ["yesterday"], "event_type": ["meeting"]})
    with pytest.raises(C.BadInput, match=r"file e\.csv, column 'occurred_at', row 1"):
        C.validate(leads(), ev, files={"events": "e.csv"}, now=NOW)


def test_outcomes_without_converted_or_time_raise() -> None:
    with pytest.raises(C.BadInput, match=r"needs 'converted' or 'converted_at'"):
        C.validate(leads(), outcomes=pl.DataFrame({"lead_id": ["a"], "stage": ["won"]}), now=NOW)
