"""The run journal: one JSON line per oracle query, appended and fsync'ed as it happens.

``run_dir/journal.jsonl`` starts with a header line (what was run: the run's settings as
``nasflow.spec.RunSpec`` JSON, or the library loop's own) followed by one line per query. A killed run loses nothing that
reached the journal; resuming re-runs the deterministic loop and answers the journaled
queries from here instead of the oracle (see ``nasflow.loop``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .atomic import atomic_write
from .core import Evaluation
from .errors import NasflowError
from .spec import json_safe, mismatch

FILE_NAME = "journal.jsonl"
FORMAT = "nasflow-journal"
VERSION = 1


class JournalError(NasflowError):
    """A run directory that cannot be created or resumed."""




def query_record(index: int, arch_text: str, evaluation: Evaluation, seconds: float, epochs: Optional[int] = None,
                 scout: bool = False) -> dict:
    """One query's journal line. An evaluation at a fidelity (a scheduled run's) adds ``fidelity`` and the training
    ``epochs`` it was charged, and ``scout`` where the schedule chose the cell itself (``Job.scout``: the searcher is
    not told it); a full-fidelity query's line is the one journals had before fidelities existed."""
    record = {
        "i": index,
        "arch": arch_text,
        "valid": evaluation.valid,
        "test": evaluation.test,
        "cost": evaluation.cost,
        "extra": evaluation.extra,
        "seconds": seconds,
    }
    if evaluation.fidelity is not None:
        record["fidelity"] = evaluation.fidelity
    if epochs is not None:
        record["epochs"] = epochs
    if scout:
        record["scout"] = True
    return json_safe(record)


def record_evaluation(record: dict) -> Evaluation:
    """The evaluation a journal line holds; a line without ``fidelity`` (any run journaled before fidelities
    existed) is at the oracle's full fidelity."""
    return Evaluation(valid=record["valid"], test=record["test"], cost=record["cost"], extra=dict(record["extra"]),
                      fidelity=record.get("fidelity"))


def _valid_query(record, index: int) -> bool:
    keys = ("i", "arch", "valid", "test", "cost", "extra", "seconds")
    return (
        isinstance(record, dict)
        and all(k in record for k in keys)
        and record["i"] == index
        and isinstance(record["arch"], str)
        and isinstance(record["valid"], (int, float))
        and isinstance(record["extra"], dict)
    )


class Journal:
    """An open journal: the header, the queries already recorded, and an append handle."""

    def __init__(self, path: Path, header: dict, records: list[dict], notice: Optional[str] = None):
        self.path = path
        self.header = header
        self.records = records
        self.notice = notice  # set when a corrupted tail was dropped on resume
        self._file = open(path, "a", encoding="utf-8")

    @classmethod
    def create(cls, run_dir, header: dict) -> "Journal":
        run_dir = Path(run_dir)
        path = run_dir / FILE_NAME
        if path.exists():
            raise JournalError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            header = json_safe({"format": FORMAT, "version": VERSION, **header})
            atomic_write(path, json.dumps(header) + "\n")
        except OSError as e:
            raise JournalError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
        return cls(path, header, [])

    @classmethod
    def resume(cls, run_dir, header: Optional[dict] = None) -> "Journal":
        """Open an existing journal; ``header`` (if given) must agree on every identity setting (``nasflow.spec``)."""
        run_dir = Path(run_dir)
        path = run_dir / FILE_NAME
        stored, records, good_lines, bad_line = _read(path)
        wrong = mismatch(stored, header) if header is not None else None
        if wrong is not None:
            raise JournalError(f"{run_dir} was made with {wrong}; "
                               f"resume it with its own settings or start a new run with another --out")
        budget = (header or {}).get("budget")
        if isinstance(budget, int) and len(records) > budget:
            # refused before anything is rewritten: a smaller budget would replace the results of the
            # queries already made with a shorter run's
            raise JournalError(
                f"{run_dir} already holds {len(records)} queries, more than a budget of {budget}; "
                f"resume with a budget of at least {len(records)}, or without --budget"
            )
        notice = None
        if bad_line is not None:
            total = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
            atomic_write(path, "".join(good_lines))
            notice = (
                f"journal line {bad_line} of {path} is corrupted; resuming after the last good line "
                f"({len(records)} queries kept, {total - bad_line + 1} line(s) dropped)"
            )
        return cls(path, stored, records, notice)

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(json_safe(record)) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records.append(record)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_header(run_dir) -> dict:
    """The header of the journal in ``run_dir`` (what the run was started with)."""
    return _read(Path(run_dir) / FILE_NAME)[0]


def _read(path: Path):
    """(header, query records, the good lines as text, 1-based number of the first bad line or None)."""
    if not path.is_file():
        raise JournalError(f"no journal at {path}; is {path.parent} a nasflow run directory?")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    except OSError as e:
        raise JournalError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise JournalError(f"{path} does not start with a nasflow journal header; it cannot be resumed")
    records, good = [], [lines[0] if lines[0].endswith("\n") else lines[0] + "\n"]
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line) if line.endswith("\n") else None
        except ValueError:
            record = None
        if not _valid_query(record, len(records)):
            return header, records, good, number
        records.append(record)
        good.append(line)
    return header, records, good, None
