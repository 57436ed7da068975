"""The one error class for bad input. Every layer raises it; every stage main and CLI command turns it into exit 2."""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """Input leadlift cannot use as given: the message names the file, the column and the row where they are known.

    `features/` raises it from pure checks (file may then be None, and `pipelines` fills it in); `pipelines/` raises it
    for files, paths and options. `pipelines.io.exit_codes` prints it and exits 2.
    """

    def __init__(self, file: str | Path | None, what: str, *, column: str | None = None,
                 row: int | None = None) -> None:
        self.file = None if file is None else str(file)
        self.column = column
        self.row = row
        self.what = what
        where = [f"file {self.file}"] if self.file else []
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {what}" if where else what)

    def located(self, file: str | Path) -> BadInput:
        """The same problem, naming `file` when the raiser could not (pure code sees frames, not files)."""
        if self.file:
            return self
        return type(self)(file, self.what, column=self.column, row=self.row)
