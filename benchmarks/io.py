"""File helpers every part of the harness writes and keys caches with: atomic writes (text, bytes, JSON,
CSV, torch files), the content hash of a JSON-like value and the hash of a file's bytes. (Reading torch
files is the model libraries' job: ``sigma.serialization`` and ``detectors.train_state`` load with
``weights_only=True``.)

Atomic: a file is written under a temporary name unique to the process and thread, then renamed over
the target, so a reader (or a resumed run after SIGKILL) sees the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

HASH_LENGTH = 12  # hex digits of cache keys and folder names


def _tmp_name(path: Path) -> Path:
    # unique per process and thread: ranks, DataLoader workers and writer threads may write the same file
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path`, on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write text or bytes to `path` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if absent) for the block: a second process that
    asks for the same lock waits until the first leaves it (e.g. two jobs that need the same cache folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def finite_or_none(obj: Any) -> Any:
    """NaN / inf floats as None, recursively: JSON outputs stay standard JSON (undefined metrics are null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 1) -> str:
    """Standard JSON text (NaN / inf as null, paths and other objects as strings)."""
    return json.dumps(finite_or_none(obj), indent=indent, default=str, ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> Path:
    """Atomic JSON file, newline-terminated (see :func:`to_json`)."""
    return atomic_write(path, to_json(obj, indent) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file; an unreadable one is an error naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); delete it or rerun the command "
                         "that writes it") from exc


def write_csv(path: str | os.PathLike[str], table: Any, *, index: bool = False) -> Path:
    """A pandas DataFrame, or a list of row dicts, as CSV (atomically)."""
    import pandas as pd

    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    with atomic_open(path, "w") as fh:
        frame.to_csv(fh, index=index)
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save atomically (fsynced: checkpoints are what a resumed run starts from)."""
    import torch

    with atomic_open(path, "wb", fsync=True) as fh:
        torch.save(obj, fh)
    return Path(path)


def content_hash(obj: Any, length: int = HASH_LENGTH) -> str:
    """SHA-256 of a JSON-like value in canonical form (sorted keys), cut to `length` hex digits."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_hash(path: str | os.PathLike[str], length: int | None = None) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks; cut to `length` digits when given."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length] if length else h.hexdigest()
