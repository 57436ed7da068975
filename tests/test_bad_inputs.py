"""The bad-input catalogue (issue 16): no bad file or broken bundle can lose a batch or reach a rep's spreadsheet.

Each case runs the real command on a tiny file and checks what a user would: the exit code; that the message names
the file, column or row (and never echoes a row of data); that rows reconcile (rows in = scored + quarantined); that
no partial or stray file is left; and that every CSV cell a spreadsheet would run as a formula is neutralised.

One bundle serves every case: trained in-process from 1,500 synthetic leads plus a numeric column (`visits`), through
`leadlift run-source` (about 6 s), so a numeric input can be infinite and the model uses events.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from features import contract as C
from pipelines.cli import app
from pipelines.io import DEFAULT_PARAMS, FORMULA_START, TEMP_SUFFIX, load_params, params_file
from tests.conftest import ROOT, tool_env

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

INJECTION = '=HYPERLINK("http://x.example","click")'
PII_NAME, PII_EMAIL = "Hugo Brandt", "hugo.brandt@pii.example"


# ---------------------------------------------------------------- the one bundle, and a batch of new leads


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny bundle (work/artifacts), its mapping and features, and a batch of 200 new leads with events."""
    from pipelines import generate
    from pipelines.realdata import run_source

    tmp = tmp_path_factory.mktemp("bad_inputs")
    with _cwd(ROOT):
        generate.run(tmp / "raw", leads=1500, seed=7, start="2025-01-01", months=12, observation_days=14,
                     horizon_days=60, progress=False)
        generate.run_new_batch(tmp / "new", leads=200, seed=8, as_of=datetime(2026, 1, 15, tzinfo=UTC),
                               observation_days=14, horizon_days=60)
        for folder in ("raw", "new"):
            path = tmp / folder / "leads.parquet"
            pl.read_parquet(path).with_columns(
                (pl.col("legacy_score").fill_null(0) / 10).round(0).alias("visits")).write_parquet(path)
        mapping = yaml.safe_load((ROOT / "sources" / "synthetic.yaml").read_text())
        for table in ("leads", "events", "outcomes"):
            mapping[table]["path"] = str(tmp / "raw" / f"{table}.parquet")
        del mapping["truth"]
        mapping["leads"]["numeric"] = {"visits": {
            "group": "research", "description": "Site visits", "min": 0,
            "reason": {"for": "Visited the site {value|time}", "against": "Only {value|visit} to the site"}}}
        mapping["params"] = {"calibrate": {"bootstrap": 20}}
        (tmp / "tiny.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
        run_source(tmp / "tiny.yaml", tmp / "report.json", workdir=tmp / "work")
    leads = pl.read_parquet(tmp / "new" / "leads.parquet")
    leads.write_csv(tmp / "leads.csv")
    return {"root": tmp, "bundle": tmp / "work" / "artifacts", "features": tmp / "work" / "features.parquet",
            "leads": tmp / "new" / "leads.parquet", "leads_csv": tmp / "leads.csv",
            "events": tmp / "new" / "events.parquet", "mapping": tmp / "tiny.yaml"}


def leads_frame(world: dict[str, Path]) -> pl.DataFrame:
    return pl.read_parquet(world["leads"])


def leads_text(world: dict[str, Path]) -> pl.DataFrame:
    """The batch as the CSV holds it: every cell text, ready to be broken and written back."""
    return pl.read_csv(world["leads_csv"], infer_schema=False)


def cli(*args: str | Path) -> Any:
    """`leadlift ARGS` in-process (the real typer app and its exit codes); .exit_code, .stdout, .stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def score(world: dict[str, Path], folder: Path, *extra: str | Path, leads: Path | None = None,
          events: Path | None | bool = True, out: str = "s.csv", model: Path | None = None) -> Any:
    args: list[str | Path] = ["score", "--leads", leads or world["leads"], "--out", folder / out,
                              "--model", model or world["bundle"]]
    if events is True:
        args += ["--events", world["events"]]
    elif events:
        args += ["--events", events]
    return cli(*args, *extra)


def files(folder: Path) -> set[str]:
    """Every file in the folder, hidden temporaries included."""
    return {p.name for p in folder.iterdir()}


def report_of(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(f"{out.stem}.report.json").read_text())


def assert_reconciles(out: Path) -> dict[str, Any]:
    """rows in = scored + quarantined, in the report and in the files written."""
    report = report_of(out)
    scored = pl.read_parquet(out) if out.suffix == ".parquet" else pl.read_csv(out, infer_schema=False)
    quarantine = Path(report["quarantine_file"])
    q = pl.read_csv(quarantine, infer_schema=False) if quarantine.suffix == ".csv" else pl.read_parquet(quarantine)
    assert report["rows_in"] == report["scored"] + report["quarantined"]
    assert scored.height == report["scored"]
    assert q.filter(pl.col("table") == "leads").height == report["quarantined"]
    return report


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def assert_csv_neutral(path: Path) -> int:
    """No cell starts a formula (numbers such as -3.5 are numbers); returns how many cells were neutralised."""
    neutralised = 0
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            for cell in row:
                assert not (cell[:1] in FORMULA_START and not _number(cell)), f"{path.name}: formula cell {cell!r}"
                neutralised += cell.startswith("'") and cell[1:2] in FORMULA_START
    return neutralised


def assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Traceback" not in message


# ---------------------------------------------------------------- 1. CSV formula injection, Markdown and HTML


def test_a_formula_in_a_text_field_is_neutralised_in_the_scores_csv(world: dict[str, Path], tmp_path: Path) -> None:
    leads_text(world).with_columns(pl.lit(INJECTION).alias("job_title")).write_csv(tmp_path / "inj.csv")
    res = score(world, tmp_path, "--as-of", "2026-01-15T00:00:00", leads=tmp_path / "inj.csv")
    assert res.exit_code == 0, res.stderr
    assert_reconciles(tmp_path / "s.csv")
    sql = pl.read_csv(tmp_path / "s.csv", infer_schema=False).filter(pl.col("decision") == "SQL")
    injected = sql.filter(pl.col("who").str.contains("HYPERLINK", literal=True))["who"]
    assert injected.len() > 0 and injected.str.starts_with("'=HYPERLINK").all()
    assert assert_csv_neutral(tmp_path / "s.csv") >= injected.len()
    assert files(tmp_path) == {"inj.csv", "s.csv", "s.quarantine.csv", "s.report.json"}


def test_parquet_output_keeps_the_raw_text(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_frame(world).with_columns(pl.lit(INJECTION).alias("job_title"))
    leads.write_parquet(tmp_path / "inj.parquet")
    res = score(world, tmp_path, leads=tmp_path / "inj.parquet", out="s.parquet")
    assert res.exit_code == 0, res.stderr
    sql = pl.read_parquet(tmp_path / "s.parquet").filter(pl.col("decision") == "SQL")
    assert sql.filter(pl.col("who").str.starts_with("=HYPERLINK")).height > 0
    assert_reconciles(tmp_path / "s.parquet")


def test_a_formula_lead_id_is_neutralised_in_the_quarantine_csv(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_text(world)
    bad = pl.concat([leads, leads.head(2).with_columns(pl.lit("@SUM(A1:A9)").alias("lead_id")),
                     leads.slice(5, 1).with_columns(pl.lit("+1-2").alias("lead_id"),
                                                    pl.lit("\tnot a date").alias("created_at"))])
    bad.write_csv(tmp_path / "bad.csv")
    res = score(world, tmp_path, leads=tmp_path / "bad.csv")
    assert res.exit_code == 0, res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    assert report["quarantined"] == 3 and report["leads"]["by_reason"] == {
        C.DUPLICATE_LEAD_ID: 2, C.UNPARSEABLE_TIMESTAMP: 1}
    assert assert_csv_neutral(tmp_path / "s.quarantine.csv") == 3
    q = pl.read_csv(tmp_path / "s.quarantine.csv", infer_schema=False).filter(pl.col("table") == "leads")
    assert sorted(q["lead_id"].to_list()) == ["'+1-2", "'@SUM(A1:A9)", "'@SUM(A1:A9)"]


def test_handoff_notes_csv_is_neutralised_and_markdown_escaped(world: dict[str, Path], tmp_path: Path) -> None:
    from pipelines.explain import write_notes

    res = score(world, tmp_path, out="s.parquet")
    assert res.exit_code == 0, res.stderr
    note = json.loads(pl.read_parquet(tmp_path / "s.parquet").filter(pl.col("decision") == "SQL")["note"][0])
    note["lead_id"] = "[click](http://evil.example)"
    note["who"] = '-2+3 <img src=x onerror="alert(1)">'
    note["reasons"][0]["text"] = "=1+2 <script>alert(1)</script>\n# Injected heading **bold** `code`"
    note["contact"] = {"name": "=cmd|' /C calc'!A0"}
    write_notes([note], tmp_path / "handoff", top=3)
    md = (tmp_path / "handoff" / "notes.md").read_text()
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md
    assert "\n# Injected" not in md and "\\# Injected heading \\*\\*bold\\*\\* \\`code\\`" in md
    assert "\\[click\\](http://evil.example)" in md
    assert assert_csv_neutral(tmp_path / "handoff" / "notes.csv") >= 2
    raw = json.loads((tmp_path / "handoff" / "notes.jsonl").read_text())
    assert raw["who"] == note["who"]  # JSONL keeps the raw value
    assert files(tmp_path / "handoff") == {"notes.md", "notes.csv", "notes.jsonl"}


def test_leadlift_explain_prints_escaped_markdown(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_frame(world).head(3).with_columns(pl.lit("<b>CTO</b> [x](http://e.example)").alias("job_title"))
    leads.write_csv(tmp_path / "few.csv")
    res = cli("explain", "--leads", tmp_path / "few.csv", "--events", world["events"], "--model", world["bundle"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count("### Lead") == 3 and "<b>" not in res.stdout and "&lt;b&gt;CTO" in res.stdout
    assert "\\[x\\](http://e.example)" in res.stdout


def test_the_ingest_quarantine_csv_is_neutralised(world: dict[str, Path], tmp_path: Path) -> None:
    from pipelines.ingest import run

    raw = pl.read_parquet(Path(yaml.safe_load(world["mapping"].read_text())["leads"]["path"]))
    dup = raw.head(1).with_columns(pl.lit("=1+1").alias("lead_id"))
    pl.concat([raw, dup, dup]).write_parquet(tmp_path / "leads.parquet")
    mapping = yaml.safe_load(world["mapping"].read_text())
    mapping["leads"]["path"] = str(tmp_path / "leads.parquet")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
    report = run(tmp_path / "m.yaml", tmp_path / "interim", report=None, params={"max_quarantine_share": 0.5},
                 echo=lambda _: None)
    assert report["leads"]["by_reason"] == {C.DUPLICATE_LEAD_ID: 2}
    assert report["leads"]["rows_in"] == report["leads"]["rows_out"] + report["leads"]["quarantined"]
    assert assert_csv_neutral(tmp_path / "interim" / "quarantine.csv") == 2


# ---------------------------------------------------------------- 2. non-finite numbers


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999", "Infinity"])
def test_an_infinite_number_is_quarantined_not_a_crash(world: dict[str, Path], tmp_path: Path, value: str) -> None:
    leads = leads_text(world)
    leads = leads.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(value)).otherwise(pl.col("visits"))
                               .alias("visits"))
    leads.write_csv(tmp_path / "inf.csv")
    res = score(world, tmp_path, leads=tmp_path / "inf.csv")
    assert res.exit_code == 0, res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    assert report["leads"]["by_reason"] == {C.NON_FINITE: 1}
    q = pl.read_csv(tmp_path / "s.quarantine.csv").filter(pl.col("table") == "leads")
    assert q.select("row", "column", "reason").rows() == [(4, "visits", C.NON_FINITE)]


def test_an_infinite_number_in_parquet_is_quarantined_and_nan_is_missing(world: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    leads = leads_frame(world).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(float("inf"))
        .when(pl.int_range(pl.len()) == 1).then(float("nan")).otherwise(pl.col("visits")).alias("visits"))
    leads.write_parquet(tmp_path / "inf.parquet")
    res = score(world, tmp_path, leads=tmp_path / "inf.parquet", out="s.parquet")
    assert res.exit_code == 0, res.stderr
    report = assert_reconciles(tmp_path / "s.parquet")
    assert report["quarantined"] == 1 and report["scored"] == 199  # NaN is a missing value, scored


def test_note_text_formats_any_value() -> None:
    import numpy as np

    from models.handoff import _maybe_int
    from models.reasons import _fmt, activity_summary, fill

    for v in (float("inf"), float("-inf"), float("nan"), np.float64("inf"), None):
        assert _fmt(v) == "unknown" and fill("{x|visit}", {"x": v}) is None and _maybe_int(v) is None
    assert _fmt(1e308).isdigit() and _fmt(2.25) == "2.2"
    assert activity_summary({"page_pricing_30d": float("inf")}, {}) == "No tracked activity in the last 30 days."


# ---------------------------------------------------------------- 3. a broken bundle


def broken_bundle(world: dict[str, Path], tmp_path: Path, *, manifest: bool = True) -> Path:
    b = tmp_path / "b"
    shutil.copytree(world["bundle"], b)
    if not manifest:
        (b / "manifest.json").unlink()
    return b


@pytest.mark.parametrize("manifest", [True, False])
def test_a_truncated_model_exits_2_naming_it(world: dict[str, Path], tmp_path: Path, manifest: bool) -> None:
    b = broken_bundle(world, tmp_path, manifest=manifest)
    text = (b / "model.txt").read_bytes()
    (b / "model.txt").write_bytes(text[: len(text) // 2])
    res = score(world, tmp_path, model=b)
    assert res.exit_code == 2, res.stderr
    assert_names(res.stderr, "model.txt", "truncated")
    assert "[LightGBM]" not in res.stderr and "Fatal" not in res.stderr
    assert files(tmp_path) == {"b"}


def test_a_whole_model_text_the_kernel_cannot_read_exits_2_naming_it(world: dict[str, Path], tmp_path: Path) -> None:
    """Loading parses the model (leadlift's own reader, no LightGBM): a file that looks whole but does not parse is
    bad input at load time, before any lead is read."""
    b = broken_bundle(world, tmp_path, manifest=False)
    text = (b / "model.txt").read_text()
    (b / "model.txt").write_text(text.replace("leaf_value=", "leaf_value=x", 1))
    res = score(world, tmp_path, model=b)
    assert res.exit_code == 2, res.stderr
    assert_names(res.stderr, "model.txt", "not a LightGBM model leadlift can read")
    assert files(tmp_path) == {"b"}


@pytest.mark.parametrize("manifest", [True, False])
def test_a_broken_calibrator_exits_2_naming_it(world: dict[str, Path], tmp_path: Path, manifest: bool) -> None:
    b = broken_bundle(world, tmp_path, manifest=manifest)
    (b / "calibrator.json").write_text('{"calibrator": ')
    res = score(world, tmp_path, model=b)
    assert res.exit_code == 2, res.stderr
    assert_names(res.stderr, "calibrator.json")
    assert "JSONDecodeError" not in res.stderr and files(tmp_path) == {"b"}


def test_a_changed_threshold_fails_the_manifest(world: dict[str, Path], tmp_path: Path) -> None:
    b = broken_bundle(world, tmp_path)
    threshold = json.loads((b / "threshold.json").read_text())
    threshold["threshold_score"] = 1  # valid JSON, same size class, not what was sealed
    (b / "threshold.json").write_text(json.dumps(threshold, indent=2, sort_keys=True) + "\n")
    res = score(world, tmp_path, model=b)
    assert res.exit_code == 2 and files(tmp_path) == {"b"}
    assert_names(res.stderr, "threshold.json", "manifest")


@pytest.mark.parametrize("breakage, expected", [
    ("json", "not valid JSON"), ("traversal", "outside the bundle"), ("unlisted", "does not list")])
def test_a_broken_manifest_exits_2_naming_it(world: dict[str, Path], tmp_path: Path, breakage: str,
                                              expected: str) -> None:
    b = broken_bundle(world, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    if breakage == "traversal":
        manifest["files"]["../../etc/passwd"] = {"sha256": "0" * 64}
    elif breakage == "unlisted":
        del manifest["files"]["calibrator.json"]
    (b / "manifest.json").write_text("{not json" if breakage == "json" else json.dumps(manifest))
    res = score(world, tmp_path, model=b)
    assert res.exit_code == 2 and files(tmp_path) == {"b"}
    assert_names(res.stderr, "manifest.json", expected)


def test_a_missing_bundle_folder_exits_2(world: dict[str, Path], tmp_path: Path) -> None:
    res = score(world, tmp_path, model=tmp_path / "nowhere")
    assert res.exit_code == 2 and files(tmp_path) == set()
    assert_names(res.stderr, "nowhere", "not found")


def test_the_bundle_logged_to_mlflow_is_sealed_too(world: dict[str, Path], tmp_path: Path) -> None:
    """What evaluate logs: the bundle files and a manifest written for the copy, which loads back verified."""
    from models.bundle import bundle_file_names
    from pipelines.bundle import load_bundle_dir, verify_bundle, write_manifest

    packed = tmp_path / "packed"
    packed.mkdir()
    for name in bundle_file_names({p.name for p in world["bundle"].iterdir()}):
        shutil.copy(world["bundle"] / name, packed / name)
    manifest = write_manifest(packed)
    assert set(manifest["files"]) == {"model.txt", "feature_spec.json", "calibrator.json", "threshold.json",
                                      "scorer.json", "baseline.json"}
    assert verify_bundle(packed) and load_bundle_dir(packed).threshold_score >= 0


def test_bundles_that_differ_only_in_threshold_have_the_same_margins(world: dict[str, Path], tmp_path: Path) -> None:
    """What lets evaluate's champion gate skip recomputing the AUC: same model files, same margins; any model file
    changed (and resealed), or a file changed behind its seal, is not the same."""
    from features.errors import BadInput
    from pipelines.bundle import same_margins, write_manifest

    copies = {}
    for name in ("threshold", "model"):
        copies[name] = tmp_path / name
        shutil.copytree(world["bundle"], copies[name])
    threshold = json.loads((copies["threshold"] / "threshold.json").read_text())
    (copies["threshold"] / "threshold.json").write_text(json.dumps({**threshold, "threshold_score": 99}))
    write_manifest(copies["threshold"])
    assert same_margins(world["bundle"], copies["threshold"])
    text = (copies["model"] / "model.txt").read_text()
    (copies["model"] / "model.txt").write_text(text.replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(BadInput, match="model.txt"):
        same_margins(world["bundle"], copies["model"])
    write_manifest(copies["model"])
    assert not same_margins(world["bundle"], copies["model"])


# ---------------------------------------------------------------- 4. one transaction for the outputs


def test_an_unsupported_quarantine_extension_fails_before_any_work(world: dict[str, Path], tmp_path: Path) -> None:
    res = score(world, tmp_path, "--quarantine", tmp_path / "d.q.txt")
    assert res.exit_code == 2 and files(tmp_path) == set()
    assert_names(res.stderr, "d.q.txt", "--quarantine", ".txt")


def test_an_unsupported_out_extension_fails_before_any_work(world: dict[str, Path], tmp_path: Path) -> None:
    res = score(world, tmp_path, out="s.xlsx")
    assert res.exit_code == 2 and files(tmp_path) == set()
    assert_names(res.stderr, "s.xlsx", "--out")


def test_out_and_quarantine_on_the_same_file_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    res = score(world, tmp_path, "--quarantine", tmp_path / "e.csv", out="e.csv")
    assert res.exit_code == 2 and files(tmp_path) == set()
    assert_names(res.stderr, "e.csv", "same file")


def test_out_on_the_input_file_is_refused_and_the_input_kept(world: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(world["leads_csv"], tmp_path / "leads.csv")
    before = (tmp_path / "leads.csv").read_bytes()
    res = cli("score", "--leads", tmp_path / "leads.csv", "--out", tmp_path / "leads.csv", "--model", world["bundle"])
    assert res.exit_code == 2 and (tmp_path / "leads.csv").read_bytes() == before
    assert_names(res.stderr, "leads.csv", "same file")
    assert files(tmp_path) == {"leads.csv"}


def test_out_under_a_file_is_not_a_writable_folder(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a folder")
    res = score(world, tmp_path, out="plain/s.csv")
    assert res.exit_code == 2 and files(tmp_path) == {"plain"}
    assert_names(res.stderr, "plain", "not a writable folder")


def test_a_refused_batch_replaces_neither_existing_output(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("old scores\n")
    (tmp_path / "s.quarantine.csv").write_text("old quarantine\n")
    leads_frame(world).drop("industry").write_parquet(tmp_path / "no_industry.parquet")
    res = score(world, tmp_path, leads=tmp_path / "no_industry.parquet")
    assert res.exit_code == 2
    assert (tmp_path / "s.csv").read_text() == "old scores\n"
    assert (tmp_path / "s.quarantine.csv").read_text() == "old quarantine\n"
    assert not any(name.endswith(TEMP_SUFFIX) for name in files(tmp_path))


def _start_slow_score(world: dict[str, Path], tmp_path: Path) -> subprocess.Popen[str]:
    """`leadlift score` on 3,000 leads in chunks of 100: long enough to be stopped mid-write."""
    from pipelines import generate

    generate.run_new_batch(tmp_path / "big", leads=3000, seed=9, as_of=datetime(2026, 1, 15, tzinfo=UTC),
                           observation_days=14, horizon_days=60)
    path = tmp_path / "big" / "leads.parquet"
    pl.read_parquet(path).with_columns((pl.col("legacy_score").fill_null(0) / 10).round(0).alias("visits")
                                       ).write_parquet(path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "s.csv").write_text("old scores\n")
    cmd = [sys.executable, "-m", "pipelines.cli", "score", "--leads", str(path), "--events",
           str(tmp_path / "big" / "events.parquet"), "--model", str(world["bundle"]), "--out",
           str(tmp_path / "out" / "s.csv"), "--chunk-size", "100"]
    return subprocess.Popen(cmd, cwd=ROOT, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_temp(folder: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not any(n.endswith(TEMP_SUFFIX) for n in files(folder)):
        assert proc.poll() is None, f"finished before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.02)
    time.sleep(0.5)  # well into the chunks


def test_sigterm_mid_write_leaves_no_temporary_and_keeps_the_old_output(world: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    proc = _start_slow_score(world, tmp_path)
    _wait_for_temp(tmp_path / "out", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert files(tmp_path / "out") == {"s.csv"} and (tmp_path / "out" / "s.csv").read_text() == "old scores\n"


def test_a_temporary_left_by_sigkill_is_removed_by_the_next_run(world: dict[str, Path], tmp_path: Path) -> None:
    proc = _start_slow_score(world, tmp_path)
    _wait_for_temp(tmp_path / "out", proc)
    proc.kill()
    proc.communicate(timeout=60)
    left = {n for n in files(tmp_path / "out") if n.endswith(TEMP_SUFFIX)}
    assert left and (tmp_path / "out" / "s.csv").read_text() == "old scores\n"
    live = f".s.csv.{os.getpid()}.abc{TEMP_SUFFIX}"  # a writer still at work (this process) keeps its file
    (tmp_path / "out" / live).write_text("in progress")
    res = score(world, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert files(tmp_path / "out") == {"s.csv", "s.quarantine.csv", "s.report.json", live}
    assert_reconciles(tmp_path / "out" / "s.csv")


# ---------------------------------------------------------------- 5. no silent loss of accuracy


def test_a_missing_feature_column_is_refused_unless_allowed(world: dict[str, Path], tmp_path: Path) -> None:
    leads_frame(world).drop("buying_timeline").write_parquet(tmp_path / "l.parquet")
    res = score(world, tmp_path, leads=tmp_path / "l.parquet")
    assert res.exit_code == 2 and files(tmp_path) == {"l.parquet"}
    assert_names(res.stderr, "l.parquet", "column 'buying_timeline'", "absent", "--allow-missing")
    res = score(world, tmp_path, "--allow-missing", leads=tmp_path / "l.parquet")
    assert res.exit_code == 0 and "warning: model input 'buying_timeline' absent" in res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    gap = next(g for g in report["missing_inputs"] if g["column"] == "buying_timeline")
    assert gap["absent"] and gap["missing"] == 200 and report["warnings"]


def test_categories_of_another_type_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_frame(world).with_columns(pl.col("industry").cast(pl.Categorical).to_physical().cast(pl.Int64))
    leads.write_parquet(tmp_path / "l.parquet")
    res = score(world, tmp_path, leads=tmp_path / "l.parquet")
    assert res.exit_code == 2 and files(tmp_path) == {"l.parquet"}
    assert_names(res.stderr, "l.parquet", "column 'industry'", "never saw")


def test_ids_of_another_form_in_the_leads_only_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    leads_frame(world).with_columns(pl.col("lead_id").str.slice(1).cast(pl.Int64)).write_parquet(tmp_path / "l.parquet")
    res = score(world, tmp_path, leads=tmp_path / "l.parquet")
    assert res.exit_code == 2 and files(tmp_path) == {"l.parquet"}
    assert_names(res.stderr, str(world["events"]), "column 'lead_id'", "unknown lead")


def test_integer_ids_in_both_files_are_cast_alike_and_score_the_same(world: dict[str, Path], tmp_path: Path) -> None:
    as_int = pl.col("lead_id").str.slice(1).cast(pl.Int64)
    leads_frame(world).with_columns(as_int).write_parquet(tmp_path / "l.parquet")
    pl.read_parquet(world["events"]).with_columns(as_int).write_parquet(tmp_path / "e.parquet")
    res = score(world, tmp_path, leads=tmp_path / "l.parquet", events=tmp_path / "e.parquet", out="i.parquet")
    assert res.exit_code == 0, res.stderr
    ref = score(world, tmp_path, out="r.parquet")
    assert ref.exit_code == 0
    ints, strings = pl.read_parquet(tmp_path / "i.parquet"), pl.read_parquet(tmp_path / "r.parquet")
    assert ints["probability"].to_list() == strings["probability"].to_list()
    assert report_of(tmp_path / "i.parquet")["events"]["quarantined"] == 0


def test_no_events_for_a_model_that_uses_them_is_said(world: dict[str, Path], tmp_path: Path) -> None:
    res = score(world, tmp_path, events=False)
    assert res.exit_code == 0
    assert "warning: the model uses events, but no --events file was given" in res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    assert report["events"] == {"file": None, "given": False} and "no events" in res.stderr


def test_the_summary_counts_quarantined_events_by_reason(world: dict[str, Path], tmp_path: Path) -> None:
    events = pl.read_parquet(world["events"])
    extra = pl.concat([
        events.head(3).with_columns(pl.lit("nobody").alias("lead_id")),
        events.head(2).with_columns(pl.lit(None, dtype=events["occurred_at"].dtype).alias("occurred_at")),
    ])
    pl.concat([events, extra]).write_parquet(tmp_path / "e.parquet")
    res = score(world, tmp_path, events=tmp_path / "e.parquet")
    assert res.exit_code == 0, res.stderr
    assert f"events: {events.height + 5} in, 5 quarantined (unknown lead: 3, missing timestamp: 2)" in res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    assert report["events"]["by_reason"] == {C.UNKNOWN_LEAD: 3, C.MISSING_TIMESTAMP: 2}


def test_too_many_quarantined_leads_refuse_the_batch(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_text(world)
    leads.with_columns(pl.when(pl.int_range(pl.len()) < 150).then(pl.lit("soon")).otherwise(pl.col("created_at"))
                       .alias("created_at")).write_csv(tmp_path / "l.csv")
    res = score(world, tmp_path, leads=tmp_path / "l.csv")
    assert res.exit_code == 2 and files(tmp_path) == {"l.csv"}
    assert_names(res.stderr, "l.csv", "150 of 200 leads", "unparseable timestamp")


# ---------------------------------------------------------------- 6. one reader: what validate reads, score reads


def test_latin1_bytes_are_detected_and_read(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_frame(world).with_columns(pl.lit("Jürgen Müller").alias("name"))
    (tmp_path / "l.csv").write_bytes(leads.write_csv().encode("latin-1"))
    res = score(world, tmp_path, leads=tmp_path / "l.csv", out="s.parquet")
    assert res.exit_code == 0, res.stderr
    report = assert_reconciles(tmp_path / "s.parquet")
    assert report["leads"]["read"]["encoding"] == "cp1252"
    note = json.loads(pl.read_parquet(tmp_path / "s.parquet").drop_nulls("note")["note"][0])
    assert note["contact"]["name"] == "Jürgen Müller"


def test_a_wrong_encoding_given_exits_2_naming_the_byte(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_bytes(leads_frame(world).with_columns(pl.lit("Müller").alias("name")).write_csv()
                                     .encode("latin-1"))
    res = score(world, tmp_path, "--encoding", "utf8", leads=tmp_path / "l.csv")
    assert res.exit_code == 2 and files(tmp_path) == {"l.csv"}
    assert_names(res.stderr, "l.csv", "not utf8 text", "byte")
    res = cli("validate", "--leads", tmp_path / "l.csv", "--encoding", "utf8")
    assert res.exit_code == 2 and "not utf8 text" in res.stderr


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_another_separator_is_sniffed_and_scores_the_same(world: dict[str, Path], tmp_path: Path,
                                                          separator: str) -> None:
    leads_frame(world).write_csv(tmp_path / "l.csv", separator=separator)
    assert score(world, tmp_path, leads=tmp_path / "l.csv", out="x.parquet").exit_code == 0
    assert score(world, tmp_path, leads=world["leads_csv"], out="ref.parquet").exit_code == 0
    assert pl.read_parquet(tmp_path / "x.parquet").equals(pl.read_parquet(tmp_path / "ref.parquet"))
    assert report_of(tmp_path / "x.parquet")["leads"]["read"]["separator"] == separator


def _ragged_csv(world: dict[str, Path], path: Path) -> None:
    lines = world["leads_csv"].read_text().splitlines(keepends=True)
    lines[5] = lines[5].rstrip("\n") + ",extra,fields\n"  # data row 5: more fields
    lines[8] = ",".join(lines[8].split(",")[:4]) + "\n"  # data row 8: fewer fields
    path.write_text("".join(lines))


def test_ragged_rows_are_quarantined_with_their_row_number(world: dict[str, Path], tmp_path: Path) -> None:
    _ragged_csv(world, tmp_path / "l.csv")
    res = score(world, tmp_path, leads=tmp_path / "l.csv")
    assert res.exit_code == 0, res.stderr
    report = assert_reconciles(tmp_path / "s.csv")
    assert report["leads"]["by_reason"] == {C.MORE_FIELDS: 1, C.FEWER_FIELDS: 1}
    q = pl.read_csv(tmp_path / "s.quarantine.csv").filter(pl.col("table") == "leads")
    assert q.select("row", "reason").rows() == [(5, C.MORE_FIELDS), (8, C.FEWER_FIELDS)]


def test_validate_and_score_quarantine_the_same_rows(world: dict[str, Path], tmp_path: Path) -> None:
    from pipelines.ingest import validate

    _ragged_csv(world, tmp_path / "l.csv")
    checked = validate(tmp_path / "l.csv", world["events"], None, None, params={"max_quarantine_share": 0.5})
    assert score(world, tmp_path, leads=tmp_path / "l.csv").exit_code == 0
    q = pl.read_csv(tmp_path / "s.quarantine.csv").filter(pl.col("table") == "leads")
    sample = [(r["row"], r["reason"]) for r in checked["quarantine_sample"] if r["table"] == "leads"]
    assert sample == q.select("row", "reason").rows()
    assert checked["events"]["by_reason"] == report_of(tmp_path / "s.csv")["events"]["by_reason"]


def test_an_unbalanced_quote_names_the_row_and_echoes_no_data(world: dict[str, Path], tmp_path: Path) -> None:
    leads = leads_frame(world).with_columns(pl.lit(PII_NAME).alias("name"), pl.lit(PII_EMAIL).alias("email"))
    lines = leads.write_csv().splitlines(keepends=True)
    lines[3] = lines[3].replace(PII_NAME, '"' + PII_NAME)
    (tmp_path / "l.csv").write_text("".join(lines))
    for res in (score(world, tmp_path, leads=tmp_path / "l.csv"), cli("validate", "--leads", tmp_path / "l.csv")):
        assert res.exit_code == 2
        assert_names(res.stderr, "l.csv", "row 3", "quot")
        assert PII_NAME not in res.stderr + res.stdout and PII_EMAIL not in res.stderr + res.stdout
    assert files(tmp_path) == {"l.csv"}


@pytest.mark.parametrize("header, expected", [(False, "empty file"), (True, "no data rows")])
def test_an_empty_or_header_only_file_exits_2(world: dict[str, Path], tmp_path: Path, header: bool,
                                              expected: str) -> None:
    (tmp_path / "l.csv").write_text(world["leads_csv"].read_text().splitlines(keepends=True)[0] if header else "")
    res = score(world, tmp_path, leads=tmp_path / "l.csv")
    assert res.exit_code == 2 and files(tmp_path) == {"l.csv"}
    assert_names(res.stderr, "l.csv", expected)


def test_library_errors_are_shown_without_the_data_they_quote() -> None:
    from pipelines.io import safe_message

    err = Exception(f'could not parse `"{PII_NAME},{PII_EMAIL}\n1,2` as dtype `i64` at column \'b\'\n\nhint')
    message = safe_message(err)
    assert PII_NAME not in message and PII_EMAIL not in message and "column 'b'" in message


# ---------------------------------------------------------------- 7-8. one error path, exit codes


def test_source_params_exits_2_on_an_unknown_key(world: dict[str, Path], tmp_path: Path) -> None:
    mapping = yaml.safe_load(world["mapping"].read_text())
    mapping["leads"]["colour"] = "blue"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
    res = cli("source-params", tmp_path / "m.yaml")
    assert res.exit_code == 2 and res.stdout == ""
    assert_names(res.stderr, "m.yaml", "colour")


def test_source_params_exits_2_on_a_missing_target_column(world: dict[str, Path], tmp_path: Path) -> None:
    mapping = yaml.safe_load(world["mapping"].read_text())
    pl.read_parquet(mapping["leads"]["path"]).head(20).write_csv(tmp_path / "leads.csv")
    mapping["leads"]["path"] = str(tmp_path / "leads.csv")
    mapping["leads"]["target"] = {"column": "Converted", "positive": [1]}
    for table in ("events", "outcomes"):
        mapping.pop(table)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
    res = cli("source-params", tmp_path / "m.yaml")
    assert res.exit_code == 2 and res.stdout == ""
    assert_names(res.stderr, "leads.csv", "column 'Converted'", "target")


def test_source_params_exits_2_on_an_empty_mapping(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("")
    res = cli("source-params", tmp_path / "m.yaml")
    assert res.exit_code == 2 and res.stdout == ""
    assert_names(res.stderr, "m.yaml", "mapping")


def test_source_params_prints_flags_for_a_good_mapping(world: dict[str, Path]) -> None:
    res = cli("source-params", world["mapping"])
    assert res.exit_code == 0, res.stderr
    assert f"base.source={world['mapping']}" in res.stdout and "calibrate.bootstrap=20" in res.stdout


def test_threshold_policy_is_a_choice(world: dict[str, Path]) -> None:
    res = cli("threshold", "--policy", "bogus", "--model", world["bundle"], "--features", world["features"])
    assert res.exit_code == 2 and "bogus" in res.stderr and "expected_value" in res.stderr


def test_evaluate_with_a_missing_bundle_or_notes_exits_2(world: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.evaluate import main

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    argv = ["--features", str(world["features"]), "--bundle", str(tmp_path / "no_bundle"), "--interim",
            str(world["root"] / "work" / "interim"), "--notes", str(tmp_path / "notes.jsonl"), "--assessment",
            str(world["root"] / "report.json"), "--train-run", str(world["bundle"] / "train_run.json"), "--metrics",
            str(tmp_path / "m.json"), "--plots", str(tmp_path / "p"), "--figures", str(tmp_path / "f"), "--registry",
            str(tmp_path / "r.json"), "--params", str(tmp_path / "params.yaml")]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "no_bundle" in err and "Traceback" not in err
    argv[3] = str(world["bundle"])
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "notes.jsonl" in err
    assert files(tmp_path) == {"params.yaml"}


def test_a_models_uri_never_creates_an_mlflow_store(world: dict[str, Path], tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", "--leads", str(world["leads"]), "--out",
                          str(tmp_path / "o.csv"), "--model", "models:/leadlift@champion"], cwd=tmp_path,
                         env={**tool_env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert_names(res.stderr, "models:/leadlift@champion", "no MLflow store")
    assert files(tmp_path) == set()


def test_commands_run_in_an_exports_own_folder_start_from_leadlifts_own_params(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stranger runs `leadlift run-source` where the export lives, with no params.yaml there: it reads leadlift's
    own defaults (and goes on to the mapping: a missing one is bad input naming it, not a traceback) instead of
    stopping on a params file; `--params` names another (a missing one is bad input naming it); a project's own
    params.yaml in the folder wins."""
    monkeypatch.chdir(tmp_path)
    assert params_file() == DEFAULT_PARAMS
    assert load_params("calibrate") == load_params("calibrate", ROOT / "params.yaml")
    res = cli("run-source", "--source", "mine.yaml", "--report", "r.json")
    assert res.exit_code == 2 and "mine.yaml" in res.stderr and "params" not in res.stderr, res.stderr
    res = cli("run-source", "--source", "mine.yaml", "--report", "r.json", "--params", "nope.yaml")
    assert res.exit_code == 2, res.stderr
    assert_names(res.stderr, "nope.yaml", "params file not found")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {"seed": 7}, "calibrate": {"reps": 9}}))
    assert params_file() == Path("params.yaml") and load_params("calibrate") == {"base": {"seed": 7}, "reps": 9}
    assert files(tmp_path) == {"params.yaml"}


def test_score_source_accounts_for_every_event_row(world: dict[str, Path], tmp_path: Path) -> None:
    """Through a mapping whose events filter skips some rows, at an as-of time some leads were created after: every
    row of the events file is an event scored, one quarantined (those of the late leads with them) or one the filter
    skipped, and the report and the summary line say which."""
    mapping = yaml.safe_load(world["mapping"].read_text())
    mapping["events"]["filter"] = "event_type <> 'page_docs'"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    created = leads_frame(world)["created_at"].sort()
    as_of = created[len(created) * 3 // 4]
    res = cli("score", "--source", tmp_path / "m.yaml", "--leads", world["leads"], "--events", world["events"],
              "--model", world["bundle"], "--out", tmp_path / "s.csv", "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%S"),
              "--max-quarantine-share", "0.9")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "s.report.json").read_text())
    events = pl.read_parquet(world["events"]).with_columns(pl.col("lead_id").cast(pl.String))
    skipped = events.filter(pl.col("event_type") == "page_docs").height
    ev = report["events"]
    assert skipped > 0 and ev["skipped_by_filter"] == {"events": skipped}
    assert ev["rows_in"] + skipped == events.height and ev["rows_in"] == ev["rows_out"] + ev["quarantined"]
    late = pl.read_csv(tmp_path / "s.quarantine.csv").filter(pl.col("reason") == "created after the as-of time")
    assert late.height > 0
    of_late = events.filter(pl.col("lead_id").is_in(late["lead_id"].cast(pl.String).implode())
                            & (pl.col("event_type") != "page_docs")).height
    assert of_late > 0 and ev["by_reason"].get("lead quarantined", 0) >= of_late
    assert f"{skipped} more skipped by the mapping's filter" in res.stderr
