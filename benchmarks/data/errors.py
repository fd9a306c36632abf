"""Errors and skip accounting shared by every reader."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data. The message names the file (or key/value) that was wrong and what would be right."""

    def __init__(self, message: str, *, path: str | Path | None = None, reason: str = "invalid"):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(message)


@dataclass
class SkipLog:
    """Counts and records items skipped in a long stream when the user asked to keep going.

    Every skip is logged at WARNING level, counted by reason, and (when `path` is set) appended to a
    JSON-lines file, so nothing is silently dropped. `fields` are written on every line (e.g. which
    generator skipped the item, on which dataset); several logs may share one file.
    """

    path: Path | None = None
    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    fields: dict[str, str] = field(default_factory=dict)

    def record(self, item_id: str, error: Exception) -> None:
        reason = getattr(error, "reason", type(error).__name__)
        with self._lock:
            self.counts[reason] += 1
            where = "".join(f" [{k} {v}]" for k, v in self.fields.items())
            log.warning("skipped %s%s (%s): %s", item_id, where, reason, error)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    line = {**self.fields, "id": item_id, "reason": reason, "error": str(error)}
                    fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, int]:
        return dict(self.counts)
