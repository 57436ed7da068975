"""`explain` stage: handoff notes, with SHAP reason codes, for the test period's recommended leads.

Paths come from dvc.yaml (`python -m pipelines.explain --features ... --bundle ... --interim ... --out ...`); params
from the `explain` section and `base`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from features.build import SPLIT
from features.schema import LEAD_ID
from features.spec import to_matrix
from models.bundle import SQL, Bundle
from models.handoff import build_notes, note_markdown, note_row
from pipelines.bundle import load_bundle
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_text


def load_catalog(path: Path | None = None) -> dict[str, Any]:
    """The reason catalog: the packaged models/reasons.yaml unless a path is given."""
    text = path.read_text() if path else resources.files("models").joinpath("reasons.yaml").read_text()
    return yaml.safe_load(text)


def who_and_contact(lead_ids: list[str], interim: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Firmographic text values and note-allowed contact fields, per lead, from the canonical leads table."""
    source = read_json(interim / "source.json")
    # Categorical source columns and kept columns: what `who` templates may name besides the features.
    firmo = [*source.get("categorical", {}), *source.get("keep", [])]
    allowed = [c for c in source.get("notes_allowed", [])]
    leads = pl.read_parquet(interim / "leads.parquet")
    cols = [c for c in firmo + allowed if c in leads.columns]
    table = pl.DataFrame({LEAD_ID: lead_ids}).join(leads.select([LEAD_ID, *cols]), on=LEAD_ID, how="left",
                                                   maintain_order="left")
    rows = table.to_dicts()
    who = [{c: r[c] for c in firmo if c in r} for r in rows]
    contact = [{c: r[c] for c in allowed if c in r} for r in rows]
    return who, contact


def notes_for(frame: pl.DataFrame, bundle: Bundle, catalog: dict[str, Any], *, all_leads: bool, top: int,
              interim: Path | None) -> list[dict[str, Any]]:
    """Notes for the SQL recommendations in `frame` (or for every lead with all_leads)."""
    X = to_matrix(frame, bundle.spec)
    p = bundle.probability(X)
    keep = [i for i, d in enumerate(bundle.decide(p)) if all_leads or d == SQL]
    chosen = frame[keep]
    rows = chosen.to_dicts()
    who, contact = who_and_contact(chosen[LEAD_ID].to_list(), interim) if interim else (None, None)
    notes = build_notes(bundle, rows, X[keep], catalog, top=top, who=who, contact=contact)
    return sorted(notes, key=lambda n: (-n["probability"], n["lead_id"]))


def write_notes(notes: list[dict[str, Any]], out: Path, *, top: int) -> None:
    """notes.jsonl (full), notes.csv (CRM import) and notes.md (people), written atomically."""
    write_text(out / "notes.jsonl", "".join(json.dumps(n, sort_keys=True) + "\n" for n in notes))
    # Schema from every row: an optional field (the reason against) can be empty for the first hundreds of notes.
    flat = (pl.DataFrame([note_row(n, top=top) for n in notes], infer_schema_length=None) if notes
            else pl.DataFrame({LEAD_ID: []}))
    write_frame(flat, out / "notes.csv")
    header = f"# Handoff notes\n\n{len(notes)} leads recommended to sales, highest score first.\n\n"
    write_text(out / "notes.md", header + "\n".join(note_markdown(n) for n in notes))


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "bundle", "interim", "out")
    params = load_params("explain", args.params)
    frame = read_frame(args.features).filter(pl.col(SPLIT) == "test")
    bundle = load_bundle(args.bundle)
    top = int(params["top_reasons"])
    notes = notes_for(frame, bundle, load_catalog(), all_leads=bool(params["all_leads"]), top=top, interim=args.interim)
    write_notes(notes, args.out, top=top)
    print(f"explain: {len(notes)} handoff notes for {frame.height} test-period leads -> {args.out}")


if __name__ == "__main__":
    main()
