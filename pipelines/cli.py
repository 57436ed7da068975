"""The `leadlift` command line (typer + rich). Exit codes: 0 done, 1 failed, 2 bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from models.threshold import POLICIES
from pipelines.io import PARAMS_FILE, BadInput, exit_codes, load_params, safe_message

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def exits_cleanly(fn: F) -> F:
    """Bad input -> exit 2 (`pipelines.io.exit_codes`, as every stage main); any other failure -> one line and exit 1,
    never a traceback that could echo a row of someone's data."""
    guarded = exit_codes(fn)

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return guarded(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
            print(f"failed: {type(e).__name__}: {safe_message(e)}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


#: `leadlift threshold --policy`: a choice, so a typo is a usage error (exit 2) listing the policies.
Policy = Enum("Policy", {name: name for name in POLICIES}, type=str)  # type: ignore[misc]
ENCODING_HELP = "Text encoding of CSV input (e.g. utf8, cp1252, latin-1); default: detected (UTF-8, else cp1252)."
PARAMS_HELP = "Params file; default ./params.yaml, else leadlift's own defaults (the params.yaml of its project)."


@app.command()
@exits_cleanly
def generate(
    out: Annotated[Path, typer.Option(help="Folder for leads/events/outcomes/truth parquet.")] = Path("data/raw"),
    leads: Annotated[int | None, typer.Option(help="Number of leads [default: params generate.leads].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed: same seed, same bytes [default: params base.seed].")]
    = None,
    start: Annotated[str | None, typer.Option(help="First creation date, YYYY-MM-DD [default: params].")] = None,
    months: Annotated[int | None, typer.Option(help="Months of lead creation [default: params].")] = None,
    params: Annotated[Path, typer.Option(help="Params file the defaults come from.")] = PARAMS_FILE,
) -> None:
    """Write a seeded synthetic CRM export (leads, events, outcomes, and ground truth); defaults from params.yaml."""
    from pipelines.generate import run

    p = load_params("generate", params)
    base = p["base"]
    summary = run(out, leads=int(leads if leads is not None else p["leads"]),
                  seed=int(seed if seed is not None else base["seed"]), start=str(start or p["start"]),
                  months=int(months if months is not None else p["months"]),
                  observation_days=int(base["observation_days"]), horizon_days=int(base["horizon_days"]))
    console.print(summary)


@app.command()
@exits_cleanly
def validate(
    leads: Annotated[Path | None, typer.Option(help="Leads file (CSV or Parquet); default: the mapping's.")] = None,
    events: Annotated[Path | None, typer.Option(help="Events file.")] = None,
    outcomes: Annotated[Path | None, typer.Option(help="Outcomes file.")] = None,
    source: Annotated[Path | None, typer.Option(help="Source mapping YAML for a non-canonical export.")] = None,
    encoding: Annotated[str | None, typer.Option(help=ENCODING_HELP)] = None,
) -> None:
    """Check an export against the data contract and print a readable report; exit 2 on file-level problems.
    With --source, every table the mapping names is checked, from the mapping's paths unless a file is given."""
    from pipelines.ingest import print_report
    from pipelines.ingest import validate as run_validate

    report = run_validate(leads, events, outcomes, source, encoding=encoding)
    print_report(report)
    if report.get("over_max_quarantine_share"):
        raise typer.Exit(2)


class Engine(str, Enum):
    """Where `leadlift score` runs."""

    single = "single"
    spark = "spark"


@app.command()
@exits_cleanly
def score(
    leads: Annotated[Path, typer.Option(help="New leads (CSV or Parquet, canonical columns).")],
    out: Annotated[Path, typer.Option(help="Scored output; .parquet or .csv.")],
    events: Annotated[Path | None, typer.Option(help="Their events.")] = None,
    as_of: Annotated[
        datetime | None, typer.Option(help="Decision time (UTC); default: newest event, else now.")
    ] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Rejected rows; default <out stem>.quarantine.csv.")] = None,
    model: Annotated[
        str, typer.Option(help="Bundle folder or MLflow URI, e.g. models:/leadlift@champion.")
    ] = "data/artifacts",
    chunk_size: Annotated[int, typer.Option(help="Leads per chunk of feature, explanation and note work.")] = 50000,
    partition_leads: Annotated[int | None, typer.Option(
        min=1, help="Leads per partition of a big batch (default 100,000; on two cores, halves scored two at a "
                    "time): memory stays that of one partition.")
    ] = None,
    source: Annotated[Path | None, typer.Option(
        help="Source mapping: --leads and --events are a raw export, mapped by its leads and events sections.")] = None,
    event_source: Annotated[list[str] | None, typer.Option(
        help="NAME=PATH: the file of one event source of a mapping with several (repeatable).")] = None,
    encoding: Annotated[str | None, typer.Option(help=ENCODING_HELP)] = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Score even when model inputs are missing far more often than in training.")] = False,
    max_missing_share: Annotated[float, typer.Option(
        help="Refuse a batch whose model input is missing (or unseen) this much more often than in training.")] = 0.5,
    max_quarantine_share: Annotated[float, typer.Option(
        help="Refuse a batch when more than this share of its leads would be quarantined.")] = 0.5,
    engine: Annotated[Engine, typer.Option(
        help="single: this machine; spark: Apache Spark (Parquet files or folders in, --out is a folder).")
    ] = Engine.single,
    master: Annotated[str, typer.Option(help="Spark master URL (--engine spark).")] = "local[*]",
    buckets: Annotated[
        int | None, typer.Option(help="Spark buckets of leads (--engine spark); default about 200k leads each.")
    ] = None,
) -> None:
    """Score a batch of new leads: probability, 0-100 score, percentile, decision, and reasons for each SQL. Writes
    the scores, the quarantine and a score report (<out stem>.report.json) together, or none of them."""
    if engine is Engine.spark:
        from pipelines.spark import run_score, session

        if quarantine is not None:
            raise BadInput(quarantine, "with --engine spark the quarantine is written to <out>/quarantine")
        if source is not None or event_source:
            raise BadInput(source, "--engine spark scores canonical Parquet; map a raw export with ingest first")
        report = run_score(session(master), str(leads), str(out), events=str(events) if events else None,
                           model=model, as_of=as_of, buckets=buckets, chunk_size=chunk_size,
                           allow_missing=allow_missing, max_missing_share=max_missing_share,
                           max_quarantine_share=max_quarantine_share, console=console)
        console.print(f"rows in {report['rows_in']} = scored {report['scored']} + quarantined "
                      f"{report['quarantined']}; {report['sql']} SQL -> {report['scores']}", highlight=False)
        return
    from pipelines.score import PARTITION_LEADS, score_file, summary_line

    report = score_file(leads, out, events=events, as_of=as_of, quarantine=quarantine, model=model,
                        chunk_size=chunk_size, console=console, mapping=source,
                        event_sources=_name_paths(event_source), encoding=encoding, allow_missing=allow_missing,
                        max_missing_share=max_missing_share, max_quarantine_share=max_quarantine_share,
                        partition_leads=partition_leads or PARTITION_LEADS)
    console.print(f"{summary_line(report)} -> {out}", highlight=False)


def _name_paths(items: list[str] | None) -> dict[str, Path] | None:
    """NAME=PATH options as a dict; a value without "=" is bad input."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise BadInput(None, f"--event-source {item!r}: expected NAME=PATH")
        out[name] = Path(path)
    return out


@app.command()
@exits_cleanly
def threshold(
    policy: Annotated[Policy, typer.Option(help="The threshold policy to try.")],
    model: Annotated[str, typer.Option(help="Bundle folder or MLflow URI.")] = "data/artifacts",
    features: Annotated[Path, typer.Option(help="Features with splits (from featurize).")] = Path(
        "data/features/features.parquet"
    ),
    value_per_conversion: Annotated[float | None, typer.Option()] = None,
    cost_per_handoff: Annotated[float | None, typer.Option()] = None,
    reps: Annotated[int | None, typer.Option()] = None,
    leads_per_rep_per_week: Annotated[int | None, typer.Option()] = None,
    precision_target: Annotated[float | None, typer.Option()] = None,
    recall_target: Annotated[float | None, typer.Option()] = None,
    params: Annotated[Path | None, typer.Option(help=PARAMS_HELP)] = None,
) -> None:
    """What-if: choose a threshold with another policy on the trained bundle and compare it with legacy 70/80."""
    from pipelines.whatif import print_table, what_if

    overrides = {k: v for k, v in {
        "value_per_conversion": value_per_conversion, "cost_per_handoff": cost_per_handoff, "reps": reps,
        "leads_per_rep_per_week": leads_per_rep_per_week, "precision_target": precision_target,
        "recall_target": recall_target}.items() if v is not None}
    print_table(what_if(model, features, policy=policy.value, overrides=overrides, params_path=params))


@app.command()
@exits_cleanly
def explain(
    leads: Annotated[Path, typer.Option(help="Leads to explain (CSV or Parquet).")],
    events: Annotated[Path | None, typer.Option(help="Their events.")] = None,
    as_of: Annotated[datetime | None, typer.Option(help="Decision time (UTC).")] = None,
    lead_id: Annotated[list[str] | None, typer.Option(help="Only these leads (repeatable).")] = None,
    model: Annotated[str, typer.Option(help="Bundle folder or MLflow URI.")] = "data/artifacts",
    encoding: Annotated[str | None, typer.Option(help=ENCODING_HELP)] = None,
) -> None:
    """Print the handoff note (reasons, who, urgency, activity) for leads, SQL or not."""
    from pipelines.score import explain_file

    for text in explain_file(leads, events=events, as_of=as_of, lead_ids=lead_id, model=model, encoding=encoding):
        typer.echo(text)


@app.command("run-source")
@exits_cleanly
def run_source(
    source: Annotated[Path, typer.Option(help="Source mapping YAML (sources/*.yaml).")],
    report: Annotated[Path, typer.Option(help="Where to write the metrics JSON.")],
    workdir: Annotated[Path | None, typer.Option(help="Folder for intermediate files; default a temp folder.")] = None,
    recalibrate_recent: Annotated[
        float | None, typer.Option(help="Also recalibrate on this most recent share of the valid+train period.")
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the runs and register the model in MLflow, as `dvc repro` does."
                                             )] = True,
    params: Annotated[Path | None, typer.Option(help=PARAMS_HELP)] = None,
) -> None:
    """Run ingest, featurize, train, calibrate, evaluate and explain on an export by its mapping alone (no DVC).
    The model registers as leadlift-<name> (leadlift for the synthetic source); `champion` moves only within it."""
    from pipelines.realdata import run_source as run

    result = run(source, report, workdir=workdir, recalibrate_recent=recalibrate_recent, console=console,
                 track=track, params_path=params)
    console.print(result)


@app.command("source-params")
@exits_cleanly
def source_params(source: Annotated[Path, typer.Argument(help="Source mapping YAML (sources/*.yaml).")],
    params: Annotated[Path | None, typer.Option(help=PARAMS_HELP)] = None,
) -> None:
    """Print the `-S` flags that run the DVC pipeline on SOURCE with the mapping's own `params:` overrides:
    dvc exp run $(leadlift source-params sources/mine.yaml). DVC reads only params.yaml; this makes the overrides
    explicit, so `dvc exp show` lists what was actually used. The mapping is checked as `validate` checks it (keys,
    files, the columns it names) first: a broken mapping exits 2 instead of starting a pipeline run."""
    from pipelines.ingest import check_mapping
    from pipelines.realdata import source_flags

    check_mapping(source)
    typer.echo(" ".join(source_flags(source, params)))
    console.print("note: `dvc exp run -S` writes these values into params.yaml in the workspace (DVC's convention: "
                  "the experiment's params live there); `dvc exp show` lists them, `git checkout params.yaml` undoes")


@app.command("generate-export")
@exits_cleanly
def generate_export(
    style: Annotated[str, typer.Option(help="hubspot | salesforce")],
    out: Annotated[Path, typer.Option(help="Folder for the export's CSV files and truth.parquet.")],
    leads: Annotated[int, typer.Option(help="Number of leads.")] = 10000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 42,
) -> None:
    """Write a CRM-shaped export (HubSpot- or Salesforce-style) with its own ground truth, to try a mapping on
    (sources/hubspot.yaml and sources/salesforce.yaml read data/crm/<style>)."""
    from features.crm_export import STYLES
    from pipelines.crm import write_crm_export

    if style not in STYLES:
        raise BadInput(None, f"--style must be one of {list(STYLES)}, got {style!r}")
    console.print(write_crm_export(style, out, leads=leads, seed=seed))


@app.command("mapping-schema")
@exits_cleanly
def mapping_schema(
    out: Annotated[Path | None, typer.Option(help="Write here (default: print).")] = None,
    docs: Annotated[Path | None, typer.Option(help="Also regenerate the reference section of this page, e.g. "
                                                   "docs/mapping.md.")] = None,
) -> None:
    """The JSON Schema of source mappings (committed as docs/mapping.schema.json, for editors)."""
    from pipelines.io import write_text
    from pipelines.schema_doc import END, START, reference_markdown, schema_text

    if out is None:
        typer.echo(schema_text(), nl=False)
    else:
        write_text(out, schema_text())
    if docs is not None:
        text = docs.read_text()
        if START not in text or END not in text:
            raise BadInput(docs, f"no reference section: the page needs the lines {START!r} and {END!r}")
        head, rest = text.split(START, 1)
        write_text(docs, head + reference_markdown().rstrip("\n") + rest.split(END, 1)[1])


if __name__ == "__main__":
    app()
