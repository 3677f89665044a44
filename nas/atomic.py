"""Atomic file writes, the one implementation every writer uses (run store, checkpoints, int8
programs, reports, the data cache): the bytes go to a temporary file in the same directory,
which is renamed over the target, so a reader or a crash never sees a partial file.

`durable=True` also fsyncs the file before the rename and the directory after it, so that the
new file survives a power cut (what a database row that names it needs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *, durable: bool = False) -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`. A temporary
    name of its own (mkstemp) per call, so threads and processes writing the same path at once
    do not share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> Path:
    """`data` written atomically to `path` (see `write_with`)."""
    return write_with(path, lambda fh: fh.write(data), durable=durable)
