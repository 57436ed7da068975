"""Benchmark the handoff notes alone: the columnar renderer against the row-by-row reference it replaced.

    python benchmarks/bench_notes.py --small            # 5k and 20k new leads, bundle from a 4,000-lead pipeline
    python benchmarks/bench_notes.py --sizes 1000000    # the 1M batch of bench_score.py (made there once)

The bundle and the batches are bench_score.py's (same --small / --sizes / --repo / --data). For each batch, the SQL
rows of every 50,000-lead chunk are prepared as `pipelines.score.score_chunk` prepares them (features, matrix,
decision, firmographic and contact columns), then timed separately:

- explain: `models.handoff.explain_rows` and the bundle's score (TreeSHAP contributions, points): shared by both;
- columnar: `models.notes.render_notes` (reasons, sentences, JSON note, flat columns) for every SQL row;
- reference: `models.handoff.reference_notes` plus `json.dumps(sort_keys=True)` and `note_row` per note, as
  score_chunk did before, on the first --reference-rows SQL rows of each chunk, extrapolated to all of them (said
  so); the notes of those rows are compared byte for byte with the columnar ones.

Wall and CPU seconds are printed (the machine is shared; CPU time counts both cores). Timings are never asserted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_score import batch_folder, batch_options, trained_repo  # noqa: E402

CHUNK = 50_000


def prepared_chunks(folder: Path, repo: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The bundle and, per chunk of CHUNK leads, its SQL rows as score_chunk hands them to the note renderer."""
    import numpy as np
    import polars as pl

    from features.build import build_features
    from features.schema import LEAD_ID
    from features.spec import to_matrix
    from models.bundle import SQL
    from models.handoff import note_values
    from pipelines.bundle import load_bundle

    bundle = load_bundle(repo / "data" / "artifacts")
    source = bundle.spec["source_roles"]
    as_of = datetime.fromisoformat(json.loads((folder / "manifest.json").read_text())["as_of"])
    leads_all = pl.read_parquet(folder / "leads.parquet")
    events = pl.scan_parquet(folder / "events.parquet")
    out = []
    for start in range(0, leads_all.height, CHUNK):
        leads = leads_all.slice(start, CHUNK)
        chunk_events = events.filter(pl.col(LEAD_ID).is_in(leads[LEAD_ID].implode()))
        feats = build_features(leads.lazy(), chunk_events, source, as_of=as_of, windows=bundle.spec["windows"],
                               observation_days=int(bundle.spec["observation_days"])).collect()
        feats = leads.select(LEAD_ID).join(feats, on=LEAD_ID, how="left", maintain_order="left")
        X = to_matrix(feats, bundle.spec)
        sql = np.flatnonzero(bundle.decide(bundle.probability(X)) == SQL)
        firmo = [c for c in [*source.get("categorical", {}), *source.get("keep", [])] if c in leads.columns]
        allowed = [c for c in source.get("notes_allowed", []) if c in leads.columns]
        picked = leads[sql]
        out.append({"features": feats[sql], "who": picked.select(firmo), "contact": picked.select(allowed),
                    "values": note_values(feats[sql], picked.select(firmo)), "X": X[sql]})
    return bundle, out


def bench(folder: Path, repo: Path, reference_rows: int) -> dict[str, Any]:
    from models.handoff import explained, note_row, reference_notes
    from models.notes import compile_templates, render_notes
    from pipelines.explain import load_catalog

    bundle, chunks = prepared_chunks(folder, repo)
    catalog = load_catalog()
    templates = compile_templates(catalog, bundle.spec)
    render_notes(chunks[0]["values"].head(20), explained(bundle, chunks[0]["X"][:20]), templates)  # warm caches
    timed: dict[str, list[float]] = {"explain": [0.0, 0.0], "columnar": [0.0, 0.0], "reference": [0.0, 0.0]}

    def clock(name: str, start: tuple[float, float]) -> None:
        timed[name][0] += time.perf_counter() - start[0]
        timed[name][1] += time.process_time() - start[1]

    sql = compared = 0
    for chunk in chunks:
        t = (time.perf_counter(), time.process_time())
        ex = explained(bundle, chunk["X"])
        clock("explain", t)
        t = (time.perf_counter(), time.process_time())
        notes = render_notes(chunk["values"], ex, templates, contact=chunk["contact"])
        clock("columnar", t)
        k = min(reference_rows, len(chunk["X"]))
        some = type(ex)(*(getattr(ex, f)[:k] if f != "groups" else ex.groups for f in ex.__dataclass_fields__))
        t = (time.perf_counter(), time.process_time())
        reference = reference_notes(chunk["features"].head(k).to_dicts(), some, bundle.spec, catalog,
                                    who=chunk["who"].head(k).to_dicts(), contact=chunk["contact"].head(k).to_dicts())
        lines = [json.dumps(n, sort_keys=True) for n in reference]
        _ = [note_row(n) for n in reference]
        clock("reference", t)
        if notes["note"].head(k).to_list() != lines:
            raise SystemExit("the columnar notes differ from the reference's")
        sql += len(chunk["X"])
        compared += k
    return {"sql": sql, "compared": compared, "timed": timed}


def main() -> None:
    ap = batch_options(__doc__, small="5k and 20k", full="100000 1000000")
    ap.add_argument("--reference-rows", type=int, default=2000,
                    help="SQL rows per chunk the row-by-row reference renders (then extrapolated)")
    args = ap.parse_args()
    sizes = args.sizes or ([5_000, 20_000] if args.small else [100_000, 1_000_000])
    data_root = args.data / f"leadlift_bench_score_{'small' if args.small else 'full'}"
    repo, _ = trained_repo((args.repo or data_root / "leadlift_bench_score_repo").resolve(), small=args.small)
    print(f"bench_notes: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; bundle {repo}/data/artifacts")
    for n in sizes:
        folder, manifest, note = batch_folder(n, repo, data_root)
        r = bench(folder, repo, args.reference_rows)
        sql, timed = r["sql"], r["timed"]
        scale = sql / max(r["compared"], 1)
        print(f"\n== {manifest['leads']:,} new leads ({note}): {sql:,} SQL notes; load average "
              f"{os.getloadavg()[0]:.1f} ==")
        print(f"explain (TreeSHAP, points; both renderers need it): {timed['explain'][0]:7.2f} s wall, "
              f"{timed['explain'][1]:7.2f} s CPU")
        wall, cpu = timed["columnar"]
        print(f"columnar notes (models.notes.render_notes):        {wall:7.2f} s wall, {cpu:7.2f} s CPU, "
              f"{sql / wall:,.0f} notes/s, {cpu / sql * 1e6:.1f} us CPU per note")
        ref_wall, ref_cpu = (v * scale for v in timed["reference"])
        print(f"row-by-row reference (+ json.dumps, note_row):     {ref_wall:7.2f} s wall, {ref_cpu:7.2f} s CPU, "
              f"{sql / ref_wall:,.0f} notes/s (EXTRAPOLATED from {r['compared']:,} notes, identical bytes)")
        print(f"ratio reference / columnar: {ref_wall / wall:.1f}x wall, {ref_cpu / cpu:.1f}x CPU")


if __name__ == "__main__":
    main()
