"""`explain` stage: handoff notes, with SHAP reason codes, for the test period's recommended leads.

Paths come from dvc.yaml (`python -m pipelines.explain --features ... --bundle ... --interim ... --out ...`); params
from the `explain` section and `base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from features.build import SPLIT
from features.schema import LEAD_ID
from features.spec import to_matrix
from models.bundle import SQL, Bundle
from models.handoff import build_notes, note_columns, note_values, notes_from_dicts
from models.notes import compile_templates, notes_markdown
from pipelines.bundle import load_bundle
from pipelines.io import exit_codes, load_params, read_frame, read_json, stage_args, write_frame, write_text


def load_catalog(path: Path | None = None) -> dict[str, Any]:
    """The reason catalog: the packaged models/reasons.yaml unless a path is given."""
    text = path.read_text() if path else resources.files("models").joinpath("reasons.yaml").read_text()
    return yaml.safe_load(text)


def who_and_contact(lead_ids: list[str], interim: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Firmographic text values and note-allowed contact fields, row for row with `lead_ids`, from the canonical
    leads table."""
    source = read_json(interim / "source.json")
    # Categorical source columns and kept columns: what `who` templates may name besides the features.
    firmo = [*source.get("categorical", {}), *source.get("keep", [])]
    allowed = [c for c in source.get("notes_allowed", [])]
    leads = pl.read_parquet(interim / "leads.parquet")
    cols = [c for c in firmo + allowed if c in leads.columns]
    table = pl.DataFrame({LEAD_ID: lead_ids}, schema={LEAD_ID: pl.String}).join(
        leads.select(pl.col(LEAD_ID).cast(pl.String), *cols), on=LEAD_ID, how="left", maintain_order="left")
    present = set(table.columns)
    return table.select([c for c in firmo if c in present]), table.select([c for c in allowed if c in present])


def notes_for(frame: pl.DataFrame, bundle: Bundle, catalog: dict[str, Any], *, all_leads: bool, top: int,
              interim: Path | None) -> pl.DataFrame:
    """Notes (a notes frame, see `models.handoff.build_notes`) for the SQL recommendations in `frame` (or for every
    lead with all_leads), highest probability first."""
    X = to_matrix(frame, bundle.spec)
    p = bundle.probability(X)
    keep = np.ones(frame.height, dtype=bool) if all_leads else bundle.decide(p) == SQL
    chosen = frame.filter(pl.Series(keep))
    who, contact = who_and_contact(chosen[LEAD_ID].to_list(), interim) if interim else (None, None)
    notes = build_notes(bundle, note_values(chosen, who), X[keep], compile_templates(catalog, bundle.spec), top=top,
                        contact=contact)
    return notes.sort(["probability", LEAD_ID], descending=[True, False], maintain_order=True)


def write_notes(notes: pl.DataFrame | Sequence[Mapping[str, Any]], out: Path, *, top: int,
                none_because: str = "") -> None:
    """notes.jsonl (full), notes.csv (CRM import) and notes.md (people), written atomically, from a notes frame (or
    notes as dicts). With no notes the files are still written (empty, the CSV with its header) and notes.md says
    why (`none_because`)."""
    frame = notes if isinstance(notes, pl.DataFrame) else notes_from_dicts(notes)
    write_text(out / "notes.jsonl", "".join(f"{note}\n" for note in frame["note"]))
    columns = note_columns(top)
    flat = (frame.select([pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in columns])
            if frame.height else pl.DataFrame(schema=dict.fromkeys(columns, pl.String)))
    write_frame(flat, out / "notes.csv")
    if frame.height:
        header = f"# Handoff notes\n\n{frame.height} leads recommended to sales, highest score first.\n\n"
    else:
        header = f"# Handoff notes\n\nNo lead recommended to sales{': ' + none_because if none_because else ''}.\n"
    write_text(out / "notes.md", header + "\n".join(notes_markdown(frame)))


def none_recommended(frame: pl.DataFrame, bundle: Bundle) -> str:
    """Why a set of leads produced no SQL, in words: the threshold against the highest score reached."""
    if frame.height == 0:
        return "there were no leads to score"
    best = int(bundle.score(bundle.probability(to_matrix(frame, bundle.spec))).max())
    return (f"none of the {frame.height:,} leads reached the threshold score {bundle.threshold_score} "
            f"({bundle.threshold['policy']} policy); the highest score was {best}")


@exit_codes
def main(argv: list[str] | None = None) -> None:
    args = stage_args(argv, __doc__, "features", "bundle", "interim", "out")
    params = load_params("explain", args.params)
    frame = read_frame(args.features).filter(pl.col(SPLIT) == "test")
    bundle = load_bundle(args.bundle)
    top = int(params["top_reasons"])
    notes = notes_for(frame, bundle, load_catalog(), all_leads=bool(params["all_leads"]), top=top, interim=args.interim)
    why = "" if notes.height else none_recommended(frame, bundle)
    write_notes(notes, args.out, top=top, none_because=why)
    print(f"explain: {notes.height} handoff notes for {frame.height} test-period leads -> {args.out}"
          + (f" ({why})" if why else ""))


if __name__ == "__main__":
    main()
