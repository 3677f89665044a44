"""One process, several trainings on one GPU: the gate that keeps CUDA-graph capture safe.

Threads that train side by side (each on its own CUDA stream, so their small kernels can run at
the same time) must not touch the GPU while one of them captures a graph: PyTorch refuses a
replay, and cuDNN and the allocator can fail, while any capture is under way in the process. So
GPU work holds the gate shared (`held`), a capture holds it exclusively (`exclusive`), and a
long holder steps aside at its step boundaries (`yield_point`) when a capture is waiting. A
single-threaded process pays a lock per evaluation and an attribute check per step.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator


class Gate:
    """A reader-writer lock that prefers writers, re-entrant for readers within a thread, with
    a reader able to take the writer side (it steps out of the reader side meanwhile)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer: int | None = None  # thread id holding it exclusively
        self._writers_waiting = 0
        self._local = threading.local()

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def _acquire_shared(self) -> None:
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _release_shared(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate shared (nested holds in one thread count once)."""
        if self._writer == threading.get_ident():  # inside this thread's own exclusive section
            yield
            return
        depth = self._depth()
        if depth == 0:
            self._acquire_shared()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._release_shared()

    def yield_point(self) -> None:
        """Called between steps by a holder: let a waiting capture through, then go on."""
        if self._writers_waiting and self._depth() > 0 and self._writer != threading.get_ident():
            self._release_shared()
            self._acquire_shared()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gate alone (for a CUDA-graph capture); a shared hold of this thread is set aside."""
        me = threading.get_ident()
        if self._writer == me:
            yield
            return
        depth = self._depth()
        if depth:
            self._release_shared()
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()
            if depth:
                self._acquire_shared()


GATE = Gate()
"""The process's gate for device work (see the module docstring); latency timing holds it
exclusively too, so that no thread of the process trains while another times."""
