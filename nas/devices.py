"""Devices shared by workers: who may time latency on a device, and who may train on it.

Within a process the gate (`nas.gate.GATE`) keeps training threads out while one thread times
latency. Across processes (worker processes of the parallel executors, or several runs on one
machine) each device has a lock file in a shared directory (`use_device_locks`): training holds
it shared, a latency measurement exclusively, and a waiting measurement keeps new trainers out.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import torch

from .gate import GATE

__all__ = ["device_access", "device_lock", "use_device_locks"]


#: Workers that share a device take this lock (one per device) around a measurement, so that
#: latency is never timed while another measurement runs on the same device in this process.
_LOCKS: dict[str, threading.Lock] = {}

#: Set in worker processes by the parallel executors (`use_device_locks`): a directory holding
#: one lock file per device, shared by every process on the machine that uses the same directory.
_LOCK_DIR: Path | None = None


def device_lock(device: str | torch.device) -> threading.Lock:
    return _LOCKS.setdefault(str(torch.device(device)), threading.Lock())


def use_device_locks(directory: str | os.PathLike[str] | None) -> None:
    """Share devices between processes through lock files in `directory` (None: this process
    is alone). Latency measurements then hold their device's lock exclusively and training holds
    it shared (`device_access`), so latency is never timed while another process trains or times
    on the same device."""
    global _LOCK_DIR
    _LOCK_DIR = Path(directory) if directory is not None else None


@contextlib.contextmanager
def device_access(device: str | torch.device, *, exclusive: bool) -> Iterator[None]:
    """Hold `device`: exclusively to time latency, shared to train.

    In this process the gate (`nas.gate.GATE`) does it: training holds it shared and a
    measurement alone, so threads that train side by side step aside while one of them times.
    Across processes (once `use_device_locks` named a directory) the process holds the device's
    lock file shared while any of its threads trains, and a measurement turns that hold
    exclusive for its duration."""
    dev = torch.device(device)
    if not exclusive:
        with GATE.held(), _process_hold(dev):
            yield
        return
    with GATE.exclusive(), device_lock(dev):
        if _LOCK_DIR is None:
            yield
            return
        hold = _HOLDS.get((_LOCK_DIR, _device_key(dev)))
        if hold is not None and hold.count:
            with hold.exclusive():
                yield
        else:
            with _DeviceFlock(_LOCK_DIR, _device_key(dev)).exclusive():
                yield


class _DeviceFlock:
    """One process's hold on a device's lock files: `<key>.lock`, held shared by trainers and
    exclusively by a measurement, and `<key>.gate`, which a measurement takes first and new
    trainers pass through, so that a waiting measurement keeps new trainers out (a reader-writer
    lock that prefers the writer)."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory, self.key = directory, key
        self.count = 0  # threads of this process training on the device
        self.mutex = threading.Lock()
        self._gate: Any = None
        self._lock: Any = None

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._gate = open(self.directory / f"{self.key}.gate", "a")  # noqa: SIM115 (held across calls)
        self._lock = open(self.directory / f"{self.key}.lock", "a")  # noqa: SIM115

    def _close(self) -> None:
        self._gate.close()
        self._lock.close()
        self._gate = self._lock = None

    def enter_shared(self) -> None:
        import fcntl

        with self.mutex:
            if self.count == 0:
                self._open()
                fcntl.flock(self._gate, fcntl.LOCK_EX)
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_SH)
                finally:
                    fcntl.flock(self._gate, fcntl.LOCK_UN)
            self.count += 1

    def exit_shared(self) -> None:
        import fcntl

        with self.mutex:
            self.count -= 1
            if self.count == 0:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._close()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Time alone: with no trainers here, on fresh handles; else by turning this process's
        shared hold exclusive (its trainers are held at the process gate meanwhile). The shared
        hold is let go before waiting, so a measurement of another process that waits for it
        can finish first."""
        import fcntl

        with self.mutex:
            fresh = self.count == 0
            if fresh:
                self._open()
            else:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            fcntl.flock(self._gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(self._lock, fcntl.LOCK_UN if fresh else fcntl.LOCK_SH)
            finally:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
                if fresh:
                    self._close()


_HOLDS: dict[tuple[Path, str], _DeviceFlock] = {}
_HOLDS_MUTEX = threading.Lock()


@contextlib.contextmanager
def _process_hold(dev: torch.device) -> Iterator[None]:
    if _LOCK_DIR is None:
        yield
        return
    key = (_LOCK_DIR, _device_key(dev))
    with _HOLDS_MUTEX:
        hold = _HOLDS.setdefault(key, _DeviceFlock(*key))
    hold.enter_shared()
    try:
        yield
    finally:
        hold.exit_shared()


def _device_key(dev: torch.device) -> str:
    """A name for the physical device, the same in every process on the machine (CUDA indices
    are not: they depend on CUDA_VISIBLE_DEVICES, which Ray sets per task)."""
    if dev.type != "cuda":
        return dev.type
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not uuid:
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        uuid = visible[index] if index < len(visible) else str(index)
    return "cuda-" + "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in uuid)
