"""The `ingest` stage: read an export per its source mapping, canonicalise it, check the data contract, quarantine.

    python -m pipelines.ingest --source sources/synthetic.yaml --out data/interim --report reports/ingest.json

(the paths as dvc.yaml gives them; params from the `ingest` section and `base`.)

Writes data/interim/{leads,events,outcomes}.parquet (canonical, clean rows only), source.json (the resolved column
roles), quarantine.csv (table, row, lead_id, column, reason) and the report, and prints "leads: N in = M out + Q
quarantined" per table. A file-level problem raises BadInput (exit 2) naming the file, column and row; so does a
quarantined share above `ingest.max_quarantine_share` (the quarantine file is written first, to read why).

Only the leads are held in memory. Events and outcomes stream: one pass collects the facts (rows by reason, parse
failures, the newest timestamp), a second sinks the clean rows to Parquet (a plain typed copy, with no filter and
no lead lookup, when nothing was quarantined), and the quarantined rows are streamed to CSV only if there are any.
Bad rows are found with vectorised expressions, never a Python loop over rows. Events in the export's usual
time order (not grouped by lead) make the lead lookup cache-unfriendly: see benchmarks/bench_ingest.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from features import contract as C
from features.mapping import (
    EVENTS,
    Mapped,
    ReadSpec,
    apply_mapping,
    canonical_mapping,
    finalize,
    load_mapping,
    read_spec,
    sections,
)
from features.schema import CONVERTED_AT, CREATED_AT, OCCURRED_AT
from pipelines.io import (
    BadInput,
    atomic_path,
    csv_safe,
    exit_codes,
    load_params,
    params_file,
    safe_message,
    stage_args,
    write_frame,
    write_json,
)

DEFAULT_MAX_QUARANTINE_SHARE = 0.5
QUARANTINE_SAMPLE = 20


# ---------------------------------------------------------------- reading


def read_table(spec: ReadSpec, *, root: Path | None = None, facts: dict[str, Any] | None = None) -> pl.LazyFrame:
    """Scan one file as the mapping says (CSV types inferred from the whole file unless told otherwise).

    A CSV's encoding and separator are detected when the mapping does not state them (UTF-8 when the whole file
    decodes as UTF-8, else Windows-1252; the separator among , ; tab | that splits the first lines consistently). One
    pass over every record finds rows with more or fewer fields than the header: they get a reason (the contract
    quarantines them with their row number) instead of failing the file. Quoting that never closes is a file-level
    problem. `facts`, when given, receives what was detected (encoding, separator, ragged rows)."""
    path = _resolve(spec.path, root)
    if not path.is_file():
        raise BadInput(path, f"file not found (the {spec.table} path of the source mapping, relative to "
                             f"{root or Path.cwd()})")
    if path.stat().st_size == 0:
        raise BadInput(path, "empty file: no header and no rows")
    if spec.format == "parquet":
        with _polars_errors(path):
            frame = pl.scan_parquet(path)
            frame.collect_schema()
        return frame
    spec, ragged = _csv_structure(path, spec)
    if facts is not None:
        facts.update(encoding=spec.encoding, separator=spec.separator, ragged_rows=len(ragged))
    options: dict[str, Any] = {
        "separator": spec.separator, "quote_char": spec.quote, "null_values": list(spec.null_values) or None,
        "infer_schema_length": spec.infer_schema_length, "schema_overrides": spec.schema_overrides,
        "truncate_ragged_lines": True,
    }  # fmt: skip
    with _polars_errors(path):
        if spec.encoding in ("utf8", "utf8-lossy"):
            frame = pl.scan_csv(path, encoding=spec.encoding, **options)  # type: ignore[arg-type]
        else:  # polars reads UTF-8 only: transcode other encodings in memory
            frame = pl.read_csv(path.read_bytes().decode(str(spec.encoding)).encode("utf8"), **options).lazy()
        names = frame.collect_schema().names()
        if ragged:
            frame = _mark_ragged(frame, ragged, path)
    missing = [c for c in (spec.schema_overrides or {}) if c not in names]
    if missing and len(names) > 1:
        raise BadInput(path, f"the mapping's schema names a column the file does not have; it has {names}",
                       column=missing[0])
    return frame


#: Separators a CSV is sniffed for, in order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")
#: Encoding of a CSV that is not UTF-8: Windows-1252, the superset of Latin-1 that spreadsheet exports use.
FALLBACK_ENCODING = "cp1252"
_SNIFF_BYTES = 1 << 16
_SNIFF_ROWS = 20


def sniff_separator(sample: str, quote: str | None = '"') -> str:
    """The separator that splits the header into the most fields and the next rows into as many (',' when none
    splits the header at all). `sample` is the start of the file; its last, possibly cut, line is ignored."""
    lines = sample.splitlines(keepends=True)
    text = "".join(lines[:-1]) if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")) else sample
    best, best_key = ",", (0, 1)
    for sep in SEPARATORS:
        rows = list(itertools.islice(_csv_reader(io.StringIO(text, newline=""), sep, quote, strict=False),
                                     _SNIFF_ROWS))
        if not rows or len(rows[0]) < 2:
            continue
        key = (sum(len(r) == len(rows[0]) for r in rows[1:]), len(rows[0]))
        if key > best_key:
            best, best_key = sep, key
    return best


def _csv_structure(path: Path, spec: ReadSpec) -> tuple[ReadSpec, dict[int, str]]:
    """(spec with encoding and separator resolved, {data row: reason} for rows whose field count differs from the
    header's). One pass over every record with Python's csv reader (about 100 MB/s), which also refuses quoting
    polars would read as one endless field."""
    encodings = [spec.encoding] if spec.encoding else ["utf8", FALLBACK_ENCODING, "latin-1"]
    for i, encoding in enumerate(encodings):
        python_encoding = {"utf8": "utf-8-sig", "utf8-lossy": "utf-8-sig"}.get(encoding, encoding)
        errors = "replace" if encoding == "utf8-lossy" else "strict"
        try:
            with path.open(encoding=python_encoding, errors=errors, newline="") as fh:
                separator = spec.separator or sniff_separator(fh.read(_SNIFF_BYTES), spec.quote)
                fh.seek(0)
                ragged = _ragged_rows(_csv_reader(fh, separator, spec.quote, strict=True), path)
        except UnicodeDecodeError as e:
            if i + 1 < len(encodings):
                continue
            raise BadInput(path, f"not {encoding} text (byte {e.start} cannot be decoded); set the encoding "
                                 "(csv.encoding in the source mapping, or --encoding)") from None
        return replace(spec, encoding=encoding, separator=separator), ragged
    raise AssertionError("unreachable")


def _csv_reader(fh: Any, separator: str, quote: str | None, *, strict: bool) -> Any:
    if quote is None:
        return csv.reader(fh, delimiter=separator, quoting=csv.QUOTE_NONE, strict=strict)
    return csv.reader(fh, delimiter=separator, quotechar=quote, strict=strict)


def _ragged_rows(reader: Any, path: Path) -> dict[int, str]:
    width: int | None = None
    ragged: dict[int, str] = {}
    row = 0
    try:
        for row, fields in enumerate(reader):
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                ragged[row] = C.MORE_FIELDS if len(fields) > width else C.FEWER_FIELDS
    except csv.Error as e:
        what = ("a quoted field is never closed" if "end of data" in str(e) else
                "a quote inside a field is not doubled or not followed by the separator")
        raise BadInput(path, f"cannot be read: {what} (from data row {row + 1} on); check the quoting and the "
                             "separator", row=row + 1) from None
    return ragged


def _mark_ragged(frame: pl.LazyFrame, ragged: dict[int, str], path: Path) -> pl.LazyFrame:
    """Give ragged rows their reason, by data row; the reader and polars must agree on the rows to number them."""
    rows = frame.select(pl.len()).collect().item()
    last = max(ragged)
    if last > rows:
        raise BadInput(path, f"cannot be read consistently: polars sees {rows} data rows, the CSV reader at least "
                             f"{last}; check the line endings and the quoting", row=last)
    table = pl.DataFrame({C.ROW: list(ragged), "_ragged": list(ragged.values())},
                         schema={C.ROW: pl.UInt32, "_ragged": pl.String}).lazy()
    return (
        frame.with_row_index(C.ROW, offset=1)
        .join(table, on=C.ROW, how="left", maintain_order="left")
        .rename({"_ragged": C.REASON})
        .with_columns(pl.lit(None, dtype=pl.String).alias(C.REASON_COLUMN))
    )


# ---------------------------------------------------------------- checking


@dataclass
class Ingested:
    """Everything the contract found, before anything is written. The events stay lazy: their clean and
    quarantined rows are streamed to disk by `run`, never held in memory."""

    mapping: dict[str, Any]
    mapped: Mapped
    files: dict[str, str]
    tables: dict[str, C.Checked]
    facts: dict[str, dict[str, Any]]
    #: source.json: the resolved mapping, snapshot_at filled.
    source: dict[str, Any]
    report: dict[str, Any]

    def quarantine(self) -> pl.LazyFrame:
        """Quarantined rows of every table, leads first, each in file order; tables without any are not scanned."""
        parts = [C.quarantine(chk) for t, chk in self.tables.items() if self.report[t]["quarantined"]]
        return pl.concat(parts) if parts else C.empty_quarantine().lazy()


def check(
    mapping: dict[str, Any],
    *,
    paths: Mapping[str, Path] | None = None,
    root: Path | None = None,
    max_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
    now: datetime | None = None,
    encoding: str | None = None,
) -> Ingested:
    """Read, map and check every table; raise BadInput on a file-level problem. `paths` override the mapping's, by
    section key (leads, events or events:<name>, outcomes), and `encoding` the encoding of the files they give.

    The leads are collected (one row per lead); events and outcomes get one streaming pass for their facts here.
    """
    paths = dict(paths or {})
    keys = list(sections(mapping))
    specs = {t: read_spec(mapping, t, path=str(paths[t]) if t in paths else None) for t in keys}
    if encoding:
        specs = {t: replace(spec, encoding=encoding) if t in paths else spec for t, spec in specs.items()}
    files = {t: str(_resolve(specs[t].path, root)) for t in keys}
    read: dict[str, dict[str, Any]] = {t: {} for t in keys}
    frames = {t: read_table(specs[t], root=root, facts=read[t]) for t in keys}
    with _located(files.get("leads", "leads")), _polars_errors(Path(files["leads"])):
        mapped = apply_mapping(mapping, frames, files=files)
    sources = [spec["key"] for spec in mapping.get("events") or []]
    if sources:
        files[EVENTS] = ", ".join(files[k] for k in sources)
    files.setdefault("outcomes", files["leads"])  # a target column lives in the leads file
    limit = C.limit_time(mapping.get("snapshot_at"), now)
    fmts = mapped.time_formats

    with _located(files["leads"]), _polars_errors(Path(files["leads"])):
        lead_check = C.annotate_leads(
            mapped.leads, numeric=mapped.numeric, categorical=mapped.categorical, legacy_score=mapped.legacy_score,
            passthrough=mapped.passthrough, time_format=fmts.get(CREATED_AT), limit=limit,
            origins=mapped.origins["leads"], file=files["leads"],
        )  # fmt: skip
        leads = lead_check.annotated.collect()
        lead_check = C.Checked("leads", files["leads"], leads.lazy(), lead_check.columns, lead_check.parsed,
                               lead_check.timestamp)
        facts = {"leads": C.summary(lead_check).collect().row(0, named=True)}
        C.raise_on_file_problems(lead_check, facts["leads"])
        ids = C.lead_ids(leads)
    checked: dict[str, C.Checked] = {"leads": lead_check}
    later = (("events", mapped.events, C.annotate_events, OCCURRED_AT),
             ("outcomes", mapped.outcomes, C.annotate_outcomes, CONVERTED_AT))
    for table, frame, annotate, ts_col in later:
        if frame is None:
            continue
        extra = {"event_types": mapped.event_types} if table == "events" else {}
        with _located(files[table]), _polars_errors(Path(files[table].split(", ")[0])):
            chk = annotate(frame, leads=ids, time_format=fmts.get(ts_col), limit=limit,  # type: ignore[operator]
                           origins=mapped.origins[table], file=files[table], **extra)
            facts[table] = C.summary(chk).collect().row(0, named=True)
            C.raise_on_file_problems(chk, facts[table])
            if table == "events":
                n_other, names = C.other_summary(C.other_event_types(chk).collect())
                facts[table].update(other_event_types=n_other, other_event_names=names)
                if C.SOURCE in chk.annotated.collect_schema():
                    facts[table]["sources"] = _per_source(chk)
        checked[table] = chk
    with _polars_errors(Path(files["leads"])):
        skipped = {key: int(lf.collect().item()) for key, lf in mapped.skipped.items()}
    for table, table_facts in facts.items():
        table_facts["skipped"] = {k: n for k, n in skipped.items() if k == table or k.startswith(f"{table}:")}
    newest = [f["max_timestamp"] for f in facts.values() if f.get("max_timestamp") is not None]
    source = finalize(mapped.source, newest=max(newest) if newest else None)
    report = _report(mapping, mapped, files, facts, max_share, source, read)
    return Ingested(mapping, mapped, files, checked, facts, source, report)


def _per_source(chk: C.Checked) -> dict[str, dict[str, int]]:
    """rows in, out and quarantined per event source (the list form of `events:`)."""
    rows = (chk.annotated.group_by(C.SOURCE)
            .agg(pl.len().alias("rows_in"), pl.col(C.REASON).is_not_null().sum().alias("quarantined"))
            .sort(C.SOURCE).collect())
    return {str(r[C.SOURCE]): {"rows_in": int(r["rows_in"]), "rows_out": int(r["rows_in"] - r["quarantined"]),
                               "quarantined": int(r["quarantined"])} for r in rows.iter_rows(named=True)}


def _report(mapping: Mapping[str, Any], mapped: Mapped, files: Mapping[str, str],
            facts: Mapping[str, Mapping[str, Any]], max_share: float, source: Mapping[str, Any],
            read: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "source": mapping["name"], "max_quarantine_share": max_share, "snapshot_at": source["snapshot_at"],
        "has_events": source["has_events"], "has_outcome_times": source["has_outcome_times"],
        "time_basis": source["time_basis"]["kind"],
    }  # fmt: skip
    for table, table_facts in facts.items():
        entry = C.counts(table_facts)
        entry["file"] = files[table]
        entry["quarantined_share"] = entry["quarantined"] / entry["rows_in"] if entry["rows_in"] else 0.0
        entry["dropped_columns"] = mapped.dropped.get(table, {})
        if table == "events":
            entry["other_event_names"] = table_facts["other_event_names"]
            if table_facts.get("sources"):
                entry["sources"] = table_facts["sources"]
        # Rows a mapping's `filter` skipped are not rows of the table: counted here, never quarantined.
        entry["skipped_by_filter"] = {k.partition(":")[2] or k: n for k, n in table_facts["skipped"].items()}
        reads = {k: v for k, v in (read or {}).items() if v and (k == table or k.startswith(f"{table}:"))}
        if table in reads:
            entry["read"] = {k: reads[table].get(k) for k in ("encoding", "separator")}
        elif reads:  # several event sources: how each file was read
            entry["read"] = {k.partition(":")[2]: {f: v.get(f) for f in ("encoding", "separator")}
                             for k, v in reads.items()}
        report[table] = entry
    if "events" not in report:
        report["events"] = {"rows_in": 0, "rows_out": 0, "quarantined": 0, "by_reason": {}, "other_event_types": 0,
                            "note": "the source has no events table"}
    report["over_max_quarantine_share"] = [t for t in C.TABLES if t in facts
                                           and report[t]["quarantined_share"] > max_share]
    return report


# ---------------------------------------------------------------- the stage


def run(
    source: Path,
    out_dir: Path,
    *,
    report: Path | None = None,
    params: Mapping[str, Any] | None = None,
    root: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Ingest the export described by the mapping `source` into `out_dir`; return the report (also written)."""
    mapping = _load(source)
    max_share = _max_share(params)
    result = check(mapping, root=root, max_share=max_share)
    out_dir = Path(out_dir)
    summary = result.report
    with atomic_path(out_dir / "quarantine.csv") as tmp, _polars_errors(Path(result.files["leads"])):
        csv_safe(result.quarantine()).sink_csv(tmp)
    for line in reconciliation_lines(summary):
        echo(line)
    if summary["over_max_quarantine_share"]:
        table = summary["over_max_quarantine_share"][0]
        t = summary[table]
        top = sorted(t["by_reason_and_column"].items(), key=lambda kv: -kv[1])[:3]
        raise BadInput(t["file"], f"{t['quarantined']} of {t['rows_in']} {table} rows ({t['quarantined_share']:.1%}) "
                                  f"were quarantined, more than ingest.max_quarantine_share={max_share}; top reasons: "
                                  f"{dict(top)}; see {out_dir / 'quarantine.csv'}")
    for table in C.TABLES:
        path = out_dir / f"{table}.parquet"
        chk = result.tables.get(table)
        if chk is None:
            write_frame(C.empty_events() if table == "events" else C.empty_outcomes(), path)
            continue
        rows = C.clean(chk, any_quarantined=summary[table]["quarantined"] > 0)
        with atomic_path(path) as tmp, _polars_errors(Path(result.files[table])):
            rows.sink_parquet(tmp, statistics=True)
    _reconcile(summary, out_dir)
    write_json(out_dir / "source.json", result.source)
    summary = {**summary, "mapping": str(source), "out": str(out_dir)}
    if report is not None:
        write_json(report, summary)
    return summary


def validate(
    leads: Path | None = None,
    events: Path | None = None,
    outcomes: Path | None = None,
    source: Path | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    root: Path | None = None,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Run every ingest check on files without writing anything; return the report (with a sample of bad rows).

    With a source mapping every table it names is checked: the given files replace the mapping's paths, the others
    are read from the mapping. Without one the files must be canonical already. Raises BadInput on a file-level
    problem (the CLI exits 2).
    """
    if source is not None:
        mapping = _load(source)
        if outcomes is not None and mapping["leads"].get("target") is not None:
            raise BadInput(outcomes, f"the mapping {source} takes the target from a leads column (leads.target); "
                                     "it has no outcomes table to check this file against")
        paths = _override_paths(mapping, source, leads=leads, events=events)
        if outcomes is not None:
            paths["outcomes"] = outcomes
    else:
        if leads is None:
            raise BadInput(None, "give --leads (or --source, a mapping that names the files)")
        cols = read_table(canonical_spec("leads", leads, encoding=encoding), root=root)
        out_cols = None
        if outcomes is not None:
            out_cols = read_table(canonical_spec("outcomes", outcomes, encoding=encoding),
                                  root=root).collect_schema().names()
        mapping = canonical_mapping(leads=[c for c in cols.collect_schema().names() if c not in _INTERNAL],
                                    events=events is not None, outcomes=out_cols)
        paths = {t: p for t, p in (("leads", leads), ("events", events), ("outcomes", outcomes)) if p is not None}
    result = check(mapping, paths=paths, root=root, max_share=_max_share(params), encoding=encoding)
    report = dict(result.report)
    report["quarantine_sample"] = result.quarantine().head(QUARANTINE_SAMPLE).collect().to_dicts()
    report["mapping"] = str(source) if source else None
    return report


def _override_paths(mapping: Mapping[str, Any], source: Path, *, leads: Path | None, events: Path | None,
                    event_sources: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Files given on the command line, by section key: --events replaces a single events source's file,
    --event-source NAME=PATH one source of a list."""
    paths: dict[str, Path] = {"leads": leads} if leads is not None else {}
    keys = [s["key"] for s in mapping.get("events") or []]
    if events is not None:
        if keys != [EVENTS]:
            names = [k.partition(":")[2] for k in keys] or ["(none)"]
            raise BadInput(events, f"the mapping {source} has {'no' if not keys else 'several'} event sources "
                                   f"({', '.join(names)}); give each file as --event-source NAME=PATH")
        paths[EVENTS] = events
    for name, path in (event_sources or {}).items():
        key = f"{EVENTS}:{name}" if f"{EVENTS}:{name}" in keys else name
        if key not in keys:
            raise BadInput(path, f"--event-source {name}: the mapping {source} has no event source of that name; it "
                                 f"has {[k.partition(':')[2] or k for k in keys]}")
        paths[key] = path
    return paths


@dataclass(frozen=True)
class MappedBatch:
    """Raw export files of new leads through a mapping's leads and events sections (no target needed)."""

    leads: pl.DataFrame
    events: pl.DataFrame | None
    #: table, row, lead_id, column, reason: the rows the mapping and the contract refused.
    quarantine: pl.DataFrame
    report: dict[str, Any]


def map_batch(source: Path, *, leads: Path, events: Path | None = None,
              event_sources: Mapping[str, Path] | None = None, root: Path | None = None,
              now: datetime | None = None, encoding: str | None = None) -> MappedBatch:
    """Apply a mapping to a raw export of new leads, as ingest does (same steps, same reasons), without a target.

    Only the event sources given are read; with none, the batch has no events. Rows in = clean + quarantined per
    table (rows a `filter` skipped are counted apart, in the report). Columns that are never model inputs (PII, keep,
    after_outcome, the legacy score) may be absent: the report lists them (`dropped_columns.not_in_file`).
    """
    mapping = _load(source, require_target=False)
    mapping["outcomes"] = None
    mapping["leads"]["target"] = None
    mapping["leads"]["derive_if_present"] = True
    mapping["leads"]["passthrough_if_present"] = True
    paths = _override_paths(mapping, source, leads=leads, events=events, event_sources=event_sources)
    given = [s for s in mapping.get("events") or [] if s["key"] in paths]
    mapping["events"] = given or None
    result = check(mapping, paths=paths, root=root, max_share=1.0, now=now, encoding=encoding)
    with _polars_errors(Path(leads)):
        # Leads keep their file row, so later checks (created after the as-of time) still point into the file.
        clean = {t: chk.annotated.filter(pl.col(C.REASON).is_null()).select(
            *([C.ROW] if t == "leads" else []), *chk.columns).collect() for t, chk in result.tables.items()}
        bad = result.quarantine().collect()
    return MappedBatch(clean["leads"], clean.get("events"), bad, result.report)


def canonical_spec(table: str, path: str | Path, *, encoding: str | None = None) -> ReadSpec:
    """How a file already in canonical form is read, by `validate` without a mapping and by `score`: the same reader
    as ingest (encoding and separator detected unless given, ragged rows marked), CSV cells as text."""
    mapping = canonical_mapping(leads=[], events=table == "events", outcomes=[] if table == "outcomes" else None)
    spec = read_spec(mapping, table, path=str(path))
    return replace(spec, encoding=encoding) if encoding else spec


def check_mapping(source: Path, *, root: Path | None = None) -> dict[str, Any]:
    """A mapping checked as `validate` checks it, short of the rows: its keys, its files, and every column it names
    (read from the files' headers and schemas). Raises BadInput naming the mapping or the file; returns the mapping."""
    mapping = _load(source)
    specs = {key: read_spec(mapping, key) for key in sections(mapping)}
    files = {key: str(_resolve(spec.path, root)) for key, spec in specs.items()}
    frames = {key: read_table(spec, root=root) for key, spec in specs.items()}
    with _located(files.get("leads", str(source))), _polars_errors(Path(files.get("leads", str(source)))):
        apply_mapping(mapping, frames, files=files)
    return mapping


def reconciliation_lines(report: Mapping[str, Any]) -> list[str]:
    """"leads: 9240 in = 9240 out + 0 quarantined", one line per table."""
    lines = []
    for table in C.TABLES:
        t = report.get(table)
        if t is None:
            continue
        line = f"{table}: {t['rows_in']} in = {t['rows_out']} out + {t['quarantined']} quarantined"
        skipped = sum((t.get("skipped_by_filter") or {}).values())
        if skipped:
            line += f" ({skipped} more rows skipped by the mapping's filter)"
        if t.get("other_event_types"):
            line += f" ({t['other_event_types']} with an event type outside the vocabulary, kept as 'other')"
        lines.append(line)
    return lines


def print_report(report: Mapping[str, Any], *, console: Any | None = None) -> None:
    """A readable rich report of `validate` (or `run`): reconciliation, reasons, dropped columns, sample bad rows."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]source[/] {report.get('source')}  snapshot_at {report.get('snapshot_at')}  "
                  f"events: {'yes' if report.get('has_events') else 'no'}  "
                  f"outcome times: {'yes' if report.get('has_outcome_times') else 'no'}  "
                  f"created_at from: {report.get('time_basis')}")
    table = Table(title="rows in = rows out + quarantined")
    for col in ("table", "file", "in", "out", "quarantined", "share", "reasons"):
        table.add_column(col, justify="right" if col in ("in", "out", "quarantined", "share") else "left")
    over = set(report.get("over_max_quarantine_share", []))
    for name in C.TABLES:
        t = report.get(name)
        if not t or "file" not in t:
            continue
        share = f"{t['quarantined_share']:.1%}"
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(t["by_reason"].items(), key=lambda kv: -kv[1])) or "-"
        table.add_row(name, str(t["file"]), f"{t['rows_in']:,}", f"{t['rows_out']:,}", f"{t['quarantined']:,}",
                      f"[red]{share}[/]" if name in over else share, reasons)
    console.print(table)
    for name in C.TABLES:
        read = (report.get(name) or {}).get("read") or {}
        # one file's facts, or (several event sources) one entry per source
        for label, facts in ([(name, read)] if "encoding" in read else [(f"{name} {k}", v) for k, v in read.items()]):
            sep = {"\t": "tab"}.get(str(facts.get("separator")), repr(facts.get("separator")))
            console.print(f"{label}: read as {facts.get('encoding')} text separated by {sep}")
    events = report.get("events") or {}
    if events.get("other_event_types"):
        names = ", ".join(f"{k} ({v})" for k, v in (events.get("other_event_names") or {}).items())
        console.print(f"[yellow]{events['other_event_types']:,} events kept as 'other'[/]: {names}")
    for name in C.TABLES:
        skipped = (report.get(name) or {}).get("skipped_by_filter") or {}
        if any(skipped.values()):
            console.print(f"{name}: rows skipped by the mapping's filter (not quarantined): "
                          + ", ".join(f"{k} {v:,}" for k, v in skipped.items()))
        per_source = (report.get(name) or {}).get("sources") or {}
        for source_name, t in per_source.items():
            console.print(f"{name}:{source_name}: {t['rows_in']:,} in = {t['rows_out']:,} out + "
                          f"{t['quarantined']:,} quarantined")
    for name in C.TABLES:
        dropped = (report.get(name) or {}).get("dropped_columns") or {}
        for kind in ("leaky", "undeclared", "leaky_not_in_file"):
            if dropped.get(kind):
                console.print(f"{name}: {kind.replace('_', ' ')} columns dropped: {', '.join(dropped[kind])}")
    if over:
        console.print(f"[bold red]quarantined share above {report['max_quarantine_share']} in {sorted(over)}: "
                      "ingest would refuse this export[/]")
    sample = report.get("quarantine_sample") or []
    if sample:
        bad = Table(title=f"first {len(sample)} quarantined rows")
        for col in ("table", "row", "lead_id", "column", "reason"):
            bad.add_column(col)
        cols = ("table", "row", "lead_id", "column", "reason")
        for r in sample:
            bad.add_row(*("" if r[c] is None else str(r[c]) for c in cols))
        console.print(bad)


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "source", "out", "report")
    run(args.source, args.out, report=args.report, params=load_params("ingest", args.params))


# ---------------------------------------------------------------- helpers


def read_mapping_yaml(source: Path) -> Any:
    """A mapping file's YAML as parsed, not yet validated; missing or broken is bad input naming it."""
    try:
        return yaml.safe_load(Path(source).read_text())
    except FileNotFoundError:
        raise BadInput(source, "source mapping not found") from None
    except yaml.YAMLError as e:
        raise BadInput(source, f"not valid YAML: {e}") from None


def _load(source: Path, *, require_target: bool = True) -> dict[str, Any]:
    raw = read_mapping_yaml(source)
    with _located(str(source)):
        return load_mapping(raw, origin=str(source), require_target=require_target)


def _max_share(params: Mapping[str, Any] | None) -> float:
    if params is None:
        params = load_params("ingest") if params_file().exists() else {}
    section = params.get("ingest", params)
    return float(section.get("max_quarantine_share", DEFAULT_MAX_QUARANTINE_SHARE))


_INTERNAL = (C.ROW, C.REASON, C.REASON_COLUMN)


def _resolve(path: str | Path, root: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or root is None else root / p


def _reconcile(report: Mapping[str, Any], out_dir: Path) -> None:
    """Rows written must equal rows out: count them back from the Parquet footers."""
    for table in ("leads", "events", "outcomes"):
        t = report.get(table)
        if t is None or "file" not in t:
            continue
        written = pl.scan_parquet(out_dir / f"{table}.parquet").select(pl.len()).collect().item()
        if written != t["rows_out"] or t["rows_in"] != t["rows_out"] + t["quarantined"]:
            raise RuntimeError(f"{table}: reconciliation failed: wrote {written} rows, report says {t}")


@contextmanager
def _located(file: str) -> Iterator[None]:
    """A BadInput from pure code (which sees frames, not files) names `file`."""
    try:
        yield
    except BadInput as e:
        raise e.located(file) from None


#: polars' CSV reader on a value that does not fit the column's read type: it names the column, never the row.
_NOT_OF_TYPE = re.compile(r"could not parse .* at column '([^']+)'")


@contextmanager
def _polars_errors(file: Path) -> Iterator[None]:
    """A file polars cannot read (bad CSV quoting, a type override that does not fit, not Parquet) -> BadInput."""
    try:
        yield
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.SchemaError,
            pl.exceptions.InvalidOperationError, OSError) as e:
        message = safe_message(e)
        typed = _NOT_OF_TYPE.search(message)
        if typed:
            raise BadInput(file, "a value does not parse as the type this column is read with (the mapping's "
                                 "`schema:`, or the type csv.infer_schema_length rows suggested), and the reader "
                                 "names no row; leave the column out of `schema:` (a declared numeric feature is "
                                 "parsed by the contract, which quarantines each bad row naming it), or for numbers "
                                 "written with a decimal comma set csv: {decimal: ','}",
                           column=typed.group(1)) from None
        raise BadInput(file, f"cannot be read: {message}") from None


if __name__ == "__main__":
    main()
