"""A results folder as saved: the resolved suite, the environment and the run records.

Everything in it is untrusted data: records are checked on reading, snapshots are read
without pickle, and run folders are found only through paths checked to stay inside.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..engine import snapshot
from ..errors import UserError
from ..render import leaderboard, tuning
from . import files, readback, record, schema


@dataclasses.dataclass
class Results:
    """A results folder as saved: the resolved suite, the environment, the run records."""

    out: Path
    suite: dict
    env: dict
    records: list[dict]
    warnings: list[str] = dataclasses.field(default_factory=list)  # one line per skipped file
    _snapshots: dict = dataclasses.field(default_factory=dict, repr=False)
    _board: leaderboard.Board | None = dataclasses.field(default=None, repr=False)
    _tuning: object = dataclasses.field(default=None, repr=False)

    @property
    def title(self) -> str:
        return f"{self.suite.get('name', self.out.name)}: leaderboard"

    @property
    def metrics(self) -> list[str]:
        return schema.metric_names(self.suite.get("metrics")) or list(leaderboard.metric_info(self.records))

    @property
    def order(self) -> list[str]:
        return [r["label"] for r in self.suite.get("runs", [])]

    def board(self) -> leaderboard.Board:
        """The leaderboard of the records (built once; records are not changed after load)."""
        if self._board is None:
            self._board = leaderboard.build(self.records, self.metrics, self.suite.get("primary_metric"), self.title)
            self.warnings.extend(self._board.notes)
        return self._board

    def tuning(self):
        """The rows of tuning.csv (a pandas DataFrame; empty without a search), built once:
        its bootstrap bands are the costly part of a report."""
        if self._tuning is None:
            self._tuning = tuning.frame(self.records, self.order)
        return self._tuning

    def run_dir(self, rec: dict) -> Path:
        return files.inside(self.out, "runs", rec["run_id"])  # checked: run_id comes from a file

    def snapshot(self, rec: dict) -> dict:
        """A run's snapshot arrays ({} if it has none or a bad one), read once per report."""
        if rec["run_id"] not in self._snapshots:
            path = self.run_dir(rec) / snapshot.SNAPSHOT
            arrays = {}
            if path.is_file():
                try:
                    arrays = snapshot.load(path)
                except snapshot.BadSnapshot as err:
                    self.warnings.append(f"{path}: {err}; its figures are left out")
            self._snapshots[rec["run_id"]] = arrays
        return self._snapshots[rec["run_id"]]


def load(out: Path) -> Results:
    """Read a results folder; a clear error if it is not one."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"{out}: no such results folder")
    warnings: list[str] = []
    records = record.read_records(out, warnings)
    if not records:
        raise UserError(*warnings, f"{out}: no run records found (expected {out}/runs/*/{record.RECORD}); "
                        f"is this a folder written by `genbench run`?")
    return Results(out, readback.suite(out, warnings), readback.env(out, warnings), records, warnings)
