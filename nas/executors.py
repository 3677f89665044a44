"""Where evaluations run, behind one interface the driver (`nas.search`) uses:

    inline   one evaluation at a time in the driver's own process (the default)
    process  a pool of local worker processes: one per GPU by default, N on CPU, or N sharing GPUs
    ray      one Ray task per evaluation, on a local Ray or a cluster (`pip install 'nas[ray]'`)

The driver submits (candidate id, space, architecture, seed, constraints) and collects
`Evaluation`s; it stays the run store's only writer. A worker builds its evaluator once from the
run's `SearchConfig` (a plain dataclass) and gets spaces as their raw dicts, so nothing with torch
state crosses a process boundary but trained weights on their way back (as bytes).

A worker that dies has its candidate evaluated again, up to `max_retries` times (then the
candidate is recorded as failed with the reason); each candidate gets exactly one result. Latency
is timed with its device held exclusively across worker processes: see
`nas.devices.use_device_locks`.

`backend_options` (SearchConfig) take:
    address            Ray: `auto` or HOST:PORT of a running cluster (default: a local Ray)
    workers_per_gpu    Ray: tasks sharing a GPU (default: workers / GPUs in the cluster, rounded up)
    share              process backend: `auto` (the default: workers on one GPU are threads of one
                       process, each on its own CUDA stream, unless training runs eagerly, with
                       cuda_graph off or compile on; CPU workers are processes), `thread`
                       (workers on one device are threads of one process, CPU too) or `process`
                       (a process per worker)
    max_retries        times a candidate is evaluated again after its worker died (default 3)
    lock_dir           directory of the per-device lock files (default: one per user in the
                       machine's temporary directory, so that concurrent runs share it too)
    evaluator_factory  "package.module:function" called with the SearchConfig in each worker
                       instead of `make_evaluator`: a hook for tests and for evaluators of one's
                       own; the module must be importable in every worker
    factory_options    any JSON-able value, left for that factory to read from the config
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import math
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import NasError, UsageError
from .evaluators import Evaluation
from .runs import SearchConfig, make_evaluator
from .space import Architecture, SearchSpace

OPTIONS = ("address", "workers_per_gpu", "share", "max_retries", "lock_dir", "evaluator_factory", "factory_options")
RAY_HINT = "the ray backend needs Ray: pip install 'nas[ray]' (or pip install 'ray>=2.9')"

Placed = Callable[[int, str], None]  # the driver's note of where a candidate runs
BACKENDS: dict[str, Callable[[SearchConfig, Any], Any]] = {}


def register(name: str) -> Callable[[Callable[[SearchConfig, Any], Any]], Callable[[SearchConfig, Any], Any]]:
    """Register `make(config, search) -> executor` under a backend name."""

    def deco(make: Callable[[SearchConfig, Any], Any]) -> Callable[[SearchConfig, Any], Any]:
        BACKENDS[name] = make
        return make

    return deco


def takes_epochs(evaluator: Any) -> bool:
    """Whether `evaluator.evaluate` takes an `on_epoch` callback (the trainer does; a user's own
    evaluator may not)."""
    import inspect

    try:
        params = inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "on_epoch" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def safe_evaluate(evaluator: Any, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float],
                  on_epoch: Callable[[dict[str, Any]], None] | None = None, **rung: Any) -> Evaluation:
    """An evaluation that never raises (but for Ctrl-C): a crash of the evaluator is a failed candidate.
    `on_epoch` (given only to evaluators that take it) hears each finished epoch; `rung` (epochs,
    checkpoint, deadline: a multi-fidelity scheduler's job, `nas.schedulers`) goes to the evaluator
    as keywords when given."""
    try:
        if on_epoch is not None:
            return evaluator.evaluate(space, arch, seed=seed, constraints=constraints, on_epoch=on_epoch, **rung)
        return evaluator.evaluate(space, arch, seed=seed, constraints=constraints, **rung)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        return Evaluation("failed", {}, f"evaluator error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}")


class InlineExecutor:
    """One evaluation at a time, in the driver's own process."""

    capacity = 1

    def __init__(self, evaluator: Any, on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.evaluator = evaluator
        self._done: list[tuple[int, Evaluation]] = []
        self._on_epoch = on_epoch if on_epoch is not None and takes_epochs(evaluator) else None

    def worker_name(self) -> str:
        return "inline"

    def submit(self, cid: int, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float], **rung: Any) -> None:
        tell = self._on_epoch
        hear = (lambda record: tell(cid, record)) if tell is not None else None
        self._done.append((cid, safe_evaluate(self.evaluator, space, arch, seed, constraints, hear, **rung)))

    def wait(self) -> list[tuple[int, Evaluation]]:
        done, self._done = self._done, []
        return done

    def cancel_all(self) -> None:
        self._done.clear()

    def shutdown(self) -> None:
        pass


# -- what travels to a worker and back -------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Job:
    cid: int
    space: tuple[str, dict[str, Any], str]  # fingerprint, raw dict, source
    arch: dict[str, Any]
    seed: int
    constraints: dict[str, float]
    rung: dict[str, Any] | None = None  # a scheduler's job: epochs, checkpoint (as bytes), deadline


def _job(cid: int, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float], **rung: Any) -> _Job:
    if rung.get("checkpoint") is not None:
        rung = {**rung, "checkpoint": _blob(rung["checkpoint"])}
    return _Job(cid, (space.fingerprint, space.raw, space.source), dict(arch), int(seed), dict(constraints), rung or None)


def _blob(obj: Any) -> bytes | None:
    if obj is None:
        return None
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unblob(blob: bytes | None) -> Any:
    if blob is None:
        return None
    import torch

    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _rung_options(job: _Job) -> dict[str, Any]:
    rung = dict(job.rung or {})
    if rung.get("checkpoint") is not None:
        rung["checkpoint"] = _unblob(rung["checkpoint"])
    return rung


def _pack(ev: Evaluation) -> tuple[Any, ...]:
    return ev.status, ev.metrics, ev.error, _blob(ev.state), ev.history, _blob(ev.checkpoint)


def _unpack(packed: tuple[Any, ...]) -> Evaluation:
    status, metrics, error, blob, history, checkpoint = packed
    return Evaluation(status, metrics, error, _unblob(blob), history, _unblob(checkpoint))


def _factory(spec: str) -> Callable[[SearchConfig], Any]:
    module, sep, name = str(spec).partition(":")
    if not sep or not module or not name:
        raise UsageError(f"evaluator_factory must be 'package.module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"evaluator_factory {spec!r} cannot be loaded: {exc}") from None
    if not callable(fn):
        raise UsageError(f"evaluator_factory {spec!r} is not callable")
    return fn


def default_lock_dir() -> Path:
    """Per user and machine, so that every run on this machine shares a device's lock."""
    return Path(tempfile.gettempdir()) / f"nas-device-locks-{os.getuid()}"


class _WorkerSide:
    """What a worker process keeps between evaluations: its evaluator, built once from the
    config (so the dataset is loaded once), and the spaces it has been sent."""

    def __init__(self, config: SearchConfig, lock_dir: str | None) -> None:
        from .devices import use_device_locks

        use_device_locks(lock_dir or default_lock_dir())
        spec = config.backend_options.get("evaluator_factory")
        self.evaluator = _factory(spec)(config) if spec else make_evaluator(config)
        self.spaces: dict[str, SearchSpace] = {}
        self.epochs = takes_epochs(self.evaluator)

    def run(self, job: _Job, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, ...]:
        fingerprint, raw, source = job.space
        space = self.spaces.get(fingerprint)
        if space is None:
            space = self.spaces[fingerprint] = SearchSpace.from_dict(raw, source)
        ev = safe_evaluate(self.evaluator, space, space.make(job.arch), job.seed, job.constraints, on_epoch if self.epochs else None,
                           **_rung_options(job))
        return _pack(ev)


def _portable(config: SearchConfig) -> SearchConfig:
    """The config as workers need it: a local data path made absolute (workers may start elsewhere)."""
    data = config.data
    if data and not data.startswith("nb201") and Path(data).exists():
        data = str(Path(data).resolve())
    return dataclasses.replace(config, data=data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


# -- process pool ----------------------------------------------------------------------------
def _process_main(conn: Any, config: SearchConfig, device: str, threads: int, lock_dir: str | None, slots: int = 1) -> None:
    """A pool worker: build the evaluator, then evaluate what the driver sends, `slots` at a time
    (in threads, each on a CUDA stream of its own), until told to stop."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # torch reads it when it loads (a table evaluator never loads it)
        cuda = device.startswith("cuda")
        if "torch" in sys.modules or cuda:
            import torch

            torch.set_num_threads(threads)
            if cuda:
                torch.cuda.set_device(torch.device(device))  # a latency device of plain "cuda" is this one
        side = _WorkerSide(config, lock_dir)
    except BaseException as exc:
        conn.send(("fatal", _first_line(exc)))
        return
    send_lock = threading.Lock()
    local = threading.local()

    def run(job: _Job) -> None:
        def epoch(record: dict[str, Any]) -> None:  # each finished epoch goes to the driver, which records it
            try:
                with send_lock:
                    conn.send(("epoch", job.cid, record))
            except (EOFError, OSError):
                os._exit(0)

        try:
            if cuda:  # a stream per thread: evaluations side by side overlap their kernels
                if not hasattr(local, "stream"):
                    local.stream = torch.cuda.Stream(torch.device(device))
                with torch.cuda.stream(local.stream):
                    packed = side.run(job, epoch)
            else:
                packed = side.run(job, epoch)
        except Exception as exc:  # every job gets an answer, or the driver would wait for ever
            packed = _pack(Evaluation("failed", {}, f"worker error: {_first_line(exc)}"))
        try:
            with send_lock:
                conn.send(("done", job.cid, packed))
        except (EOFError, OSError):  # the driver is gone
            os._exit(0)

    pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="nas-eval")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the driver is gone: do not wait for evaluations nobody will read
            os._exit(0)
        if job is None:
            pool.shutdown(wait=True)
            return
        pool.submit(run, job)


@dataclasses.dataclass
class _Proc:
    """One worker process, with `slots` evaluations at a time."""

    index: int
    device: str
    slots: int
    proc: Any = None
    conn: Any = None


@dataclasses.dataclass
class _Slot:
    """One evaluation at a time: a worker process, or one thread of a process shared by the
    workers of a GPU."""

    host: _Proc
    thread: int
    job: _Job | None = None

    @property
    def name(self) -> str:
        where = "" if self.host.device == "cpu" else f", {self.host.device}"
        thread = f"/{self.thread}" if self.host.slots > 1 else ""
        return f"process:{self.host.index}{thread} (pid {self.host.proc.pid}{where})"


def process_devices(device: str, workers: int) -> list[str]:
    """The device of each pool worker: GPUs round-robin for auto/cuda (so one worker per GPU, or
    several on each), else the device asked for."""
    if device not in ("auto", "cuda"):
        return [device] * workers
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i % n}" for i in range(workers)] if n else ["cpu"] * workers


def process_layout(devices: list[str], share: str = "auto") -> list[tuple[str, int]]:
    """(device, evaluation threads) of each worker process. Workers on one GPU share a process by
    default (`share="auto"`): separate processes on one GPU take turns on it (time slicing),
    while threads of one process, each on its own CUDA stream, run their kernels at the same time,
    and the data is on the GPU once. `share="thread"` groups workers on any one device, the CPU
    too; `share="process"` gives every worker a process of its own."""
    if share not in ("auto", "thread", "process"):
        raise UsageError(f"backend option share must be auto, thread or process, got {share!r}")
    if share == "process":
        return [(d, 1) for d in devices]
    grouped: dict[str, int] = {}
    alone: list[tuple[str, int]] = []
    for d in devices:
        if share == "thread" or d.startswith("cuda"):
            grouped[d] = grouped.get(d, 0) + 1
        else:
            alone.append((d, 1))
    return alone + list(grouped.items())


def share_mode(config: SearchConfig) -> str:
    """The `share` option as it applies to this run: `auto` stays auto (threads on GPUs) when the
    trainer replays CUDA graphs, and means processes when it trains eagerly, since eager steps
    are launched from Python and threads would take turns on the interpreter lock."""
    share = str(config.backend_options.get("share", "auto"))
    if share == "auto" and (config.train.get("cuda_graph") is False or config.train.get("compile")):
        return "process"
    return share


class ProcessExecutor:
    """Local worker processes (spawned), each with a pipe to the driver. `wait` blocks on the
    pipes and on the processes' exit at once: a result is taken as soon as it is there, and a
    worker that died is started again and given its candidates again."""

    def __init__(self, config: SearchConfig, *, on_placed: Placed | None = None, log: Callable[[str], None] | None = None,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        import multiprocessing as mp

        from .train import resolve_device

        if config.device not in ("auto", "cpu"):
            resolve_device(config.device)  # a device that is not there fails here, not in every worker
        opts = config.backend_options
        self._ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or threads
        self.config = _portable(config)
        self.capacity = config.workers
        self.max_retries = int(opts.get("max_retries", 3))
        self.lock_dir = str(opts["lock_dir"]) if opts.get("lock_dir") else None
        self._on_placed = on_placed or (lambda cid, worker: None)
        self._log = log or (lambda text: None)
        self._on_epoch = on_epoch or (lambda cid, record: None)
        self._deaths: dict[int, int] = {}  # candidate id -> workers it has seen die
        layout = process_layout(process_devices(config.device, config.workers), share_mode(config))
        self.threads = max(1, (os.cpu_count() or 1) // len(layout))
        self._procs = [_Proc(i, d, n) for i, (d, n) in enumerate(layout)]
        self._slots = [_Slot(p, t) for p in self._procs for t in range(p.slots)]
        for host in self._procs:
            self._start(host)

    def _start(self, host: _Proc) -> None:
        parent, child = self._ctx.Pipe()
        host.proc = self._ctx.Process(target=_process_main, args=(child, dataclasses.replace(self.config, device=host.device), host.device,
                                                                   self.threads, self.lock_dir, host.slots), name=f"nas-worker-{host.index}", daemon=True)
        host.proc.start()
        child.close()
        host.conn = parent

    def _idle(self) -> _Slot:
        return next(s for s in self._slots if s.job is None)

    def _busy(self, host: _Proc) -> list[_Slot]:
        return [s for s in self._slots if s.host is host and s.job is not None]

    def worker_name(self) -> str:
        slot = self._idle()
        if not slot.host.proc.is_alive() and not self._busy(slot.host):  # died while idle: a fresh one takes the job
            self._restart(slot.host)
        return slot.name

    def submit(self, cid: int, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float], **rung: Any) -> None:
        slot = self._idle()
        slot.job = _job(cid, space, arch, seed, constraints, **rung)
        self._send(slot)

    def _send(self, slot: _Slot) -> None:
        try:
            slot.host.conn.send(slot.job)
        except OSError:
            pass  # the worker is dead: wait() sees it exit and hands the job to a new one

    def _restart(self, host: _Proc) -> None:
        host.proc.join(timeout=5)
        host.conn.close()
        self._start(host)

    def wait(self) -> list[tuple[int, Evaluation]]:
        from multiprocessing.connection import wait as wait_any

        done: list[tuple[int, Evaluation]] = []
        while not done:
            hosts = [h for h in self._procs if self._busy(h)]
            if not hosts:
                break
            wait_any([h.conn for h in hosts] + [h.proc.sentinel for h in hosts])
            for host in hosts:
                while host.conn.poll():
                    try:
                        msg = host.conn.recv()
                    except (EOFError, OSError):  # it died, perhaps in the middle of a message
                        break
                    if msg[0] == "fatal":
                        raise NasError(f"worker {self._busy(host)[0].name} could not start: {msg[1]}")
                    if msg[0] == "epoch":
                        if any(s.job is not None and s.job.cid == msg[1] for s in self._busy(host)):
                            self._on_epoch(msg[1], msg[2])
                        continue
                    _, cid, packed = msg
                    for slot in self._busy(host):
                        if slot.job.cid == cid:  # type: ignore[union-attr]  (busy slots have a job)
                            slot.job = None
                    self._deaths.pop(cid, None)
                    done.append((cid, _unpack(packed)))
                if self._busy(host) and not host.proc.is_alive():
                    done.extend(self._died(host))
        return done

    def _died(self, host: _Proc) -> list[tuple[int, Evaluation]]:
        """Restart a worker process that died; its candidates run again, or fail after max_retries deaths."""
        busy = self._busy(host)
        old, why = busy[0].name, _exit_text(host.proc.exitcode)
        self._restart(host)
        failed: list[tuple[int, Evaluation]] = []
        for slot in busy:
            job = slot.job
            assert job is not None
            deaths = self._deaths[job.cid] = self._deaths.get(job.cid, 0) + 1
            if deaths > self.max_retries:
                slot.job = None
                self._deaths.pop(job.cid, None)
                self._log(f"worker {old} died ({why}) evaluating #{job.cid}, {deaths} times in all: recorded as failed")
                failed.append((job.cid, Evaluation("failed", {}, f"its worker died {deaths} times evaluating it (last: {why})")))
                continue
            self._log(f"worker {old} died ({why}) evaluating #{job.cid}; evaluating it again on {slot.name}")
            self._send(slot)
            self._on_placed(job.cid, slot.name)
        return failed

    def cancel_all(self) -> None:
        for host in self._procs:
            if self._busy(host):
                host.proc.kill()
                host.proc.join(timeout=5)
        for slot in self._slots:
            slot.job = None

    def shutdown(self) -> None:
        for host in self._procs:
            if self._busy(host):
                host.proc.kill()
            else:
                try:
                    host.conn.send(None)
                except OSError:
                    pass
        for host in self._procs:
            host.proc.join(timeout=10)
            if host.proc.is_alive():
                host.proc.kill()
                host.proc.join(timeout=5)
            host.conn.close()


# -- Ray -------------------------------------------------------------------------------------
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_HINT) from None
    return ray


_RAY_SIDE: tuple[Any, _WorkerSide] | None = None  # in a Ray worker process: (config, its evaluator)


def _ray_evaluate(config: SearchConfig, lock_dir: str | None, job: _Job, tracker: Any) -> tuple[str, tuple[Any, ...]]:
    """One Ray task: report where it runs, evaluate with this worker process's evaluator."""
    global _RAY_SIDE
    import ray

    gpus = ray.get_gpu_ids()
    name = f"ray:{ray.util.get_node_ip_address()}:{os.getpid()}" + (f" (gpu {','.join(map(str, gpus))})" if gpus else "")
    tracker.put.remote(job.cid, name)
    epoch = lambda record: tracker.epoch.remote(job.cid, record)  # noqa: E731 (the driver records it)
    key = (config, lock_dir)
    if _RAY_SIDE is None or _RAY_SIDE[0] != key:  # (Ray sets OMP_NUM_THREADS to the task's CPUs)
        _RAY_SIDE = None  # let the old evaluator (and its data) go before loading again
        try:
            _RAY_SIDE = key, _WorkerSide(config, lock_dir)
        except Exception as exc:
            return name, ("fatal", _first_line(exc))
    return name, _RAY_SIDE[1].run(job, epoch)


class _Placements:
    """A small Ray actor: tasks say where they run; the driver collects it for `nas status`."""

    def __init__(self) -> None:
        self.new: list[tuple[int, str]] = []
        self.epochs: list[tuple[int, dict[str, Any]]] = []

    def put(self, cid: int, worker: str) -> None:
        self.new.append((cid, worker))

    def epoch(self, cid: int, record: dict[str, Any]) -> None:
        self.epochs.append((cid, record))

    def take(self) -> tuple[list[tuple[int, str]], list[tuple[int, dict[str, Any]]]]:
        out, self.new = self.new, []
        epochs, self.epochs = self.epochs, []
        return out, epochs


class RayExecutor:
    """One Ray task per evaluation, asking for its share of a GPU (`num_gpus=1/workers_per_gpu`)
    when the cluster has GPUs, one CPU otherwise. Ray retries a task whose worker or node died
    (`max_retries`); a Ray worker process keeps its evaluator between tasks."""

    def __init__(self, config: SearchConfig, *, on_placed: Placed | None = None, log: Callable[[str], None] | None = None,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        ray = self._ray = import_ray()
        self._on_epoch = on_epoch or (lambda cid, record: None)
        opts = config.backend_options
        self._own = False
        if not ray.is_initialized():
            address = opts.get("address")
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, log_to_driver=False)
            except Exception as exc:
                raise UsageError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {_first_line(exc)}") from None
            self._own = True
        try:
            self._setup(config, on_placed, log)
        except BaseException:
            self.shutdown()
            raise

    def _setup(self, config: SearchConfig, on_placed: Placed | None, log: Callable[[str], None] | None) -> None:
        ray, opts = self._ray, config.backend_options
        self._tracker = None
        self._refs: dict[Any, int] = {}
        self._where: dict[int, str] = {}
        self.capacity = config.workers
        self._on_placed = on_placed or (lambda cid, worker: None)
        self._log = log or (lambda text: None)
        gpus = ray.cluster_resources().get("GPU", 0) if config.device != "cpu" else 0
        resources: dict[str, float] = {"num_cpus": 1}
        device = config.device
        if gpus:
            per_gpu = float(opts.get("workers_per_gpu") or math.ceil(config.workers / gpus))
            resources["num_gpus"] = 1.0 / per_gpu
            device = "cuda" if device.startswith("cuda") else device  # the task's own GPU, whichever Ray gives it
        elif device.startswith("cuda"):
            raise UsageError(f"device {config.device!r} asked for, but the Ray cluster has no GPUs")
        else:
            device = "cpu"  # a node's GPUs that Ray does not schedule are not this task's to use
        # the GPU share is given per call, not in ray.remote(): so Ray keeps reusing the worker
        # processes (and the evaluator each built) instead of starting one per GPU task
        self._task = ray.remote(_ray_evaluate).options(max_retries=int(opts.get("max_retries", 3)), retry_exceptions=False, **resources)
        self._config = ray.put(_portable(dataclasses.replace(config, device=device)))
        self._lock_dir = str(opts["lock_dir"]) if opts.get("lock_dir") else None
        self._tracker = ray.remote(num_cpus=0)(_Placements).remote()

    def worker_name(self) -> str:
        return "ray (waiting for a worker)"

    def submit(self, cid: int, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float], **rung: Any) -> None:
        ref = self._task.remote(self._config, self._lock_dir, _job(cid, space, arch, seed, constraints, **rung), self._tracker)
        self._refs[ref] = cid

    def _placements(self) -> None:
        placed, epochs = self._ray.get(self._tracker.take.remote())
        for cid, record in epochs:
            if cid in self._refs.values():
                self._on_epoch(cid, record)
        for cid, worker in placed:
            if cid not in self._refs.values():
                continue
            old = self._where.get(cid)
            if old is not None and old != worker:
                self._log(f"#{cid}: its worker {old} is gone; Ray evaluates it again on {worker}")
            self._where[cid] = worker
            self._on_placed(cid, worker)

    def wait(self) -> list[tuple[int, Evaluation]]:
        ray = self._ray
        if not self._refs:
            return []
        while not ray.wait(list(self._refs), num_returns=1, timeout=0.5)[0]:
            self._placements()
        self._placements()
        ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        done: list[tuple[int, Evaluation]] = []
        for ref in ready:
            cid = self._refs.pop(ref)
            self._where.pop(cid, None)
            try:
                worker, packed = ray.get(ref)
            except ray.exceptions.RayError as exc:  # retries used up, or the task cannot run at all
                done.append((cid, Evaluation("failed", {}, f"ray: {_first_line(exc)}")))
                continue
            if packed[0] == "fatal":
                raise NasError(f"worker {worker} could not start: {packed[1]}")
            self._on_placed(cid, worker)
            done.append((cid, _unpack(packed)))
        return done

    def cancel_all(self) -> None:
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or gone: nothing to cancel
                pass
        self._refs.clear()
        self._where.clear()

    def shutdown(self) -> None:
        self.cancel_all()  # nothing left running on a cluster that outlives the search
        try:
            if self._tracker is not None:
                self._ray.kill(self._tracker)
        finally:
            if self._own:
                self._ray.shutdown()


# -- choosing one ----------------------------------------------------------------------------
@register("inline")
def _inline(config: SearchConfig, search: Any) -> InlineExecutor:
    return InlineExecutor(search.evaluator, on_epoch=getattr(search, "record_epoch", None))


@register("process")
def _process(config: SearchConfig, search: Any) -> ProcessExecutor:
    return ProcessExecutor(config, on_placed=search.store.set_worker, log=search.log, on_epoch=getattr(search, "record_epoch", None))


@register("ray")
def _ray(config: SearchConfig, search: Any) -> RayExecutor:
    return RayExecutor(config, on_placed=search.store.set_worker, log=search.log, on_epoch=getattr(search, "record_epoch", None))


def default_workers(backend: str) -> int:
    """Workers when none are asked for: one per local GPU for the parallel backends, else one."""
    if backend == "inline":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def check_backend(config: Any) -> None:
    """UsageError for a backend / worker combination that cannot run (before a run is created)."""
    if config.backend not in BACKENDS:
        raise UsageError(f"unknown backend {config.backend!r}; use {', '.join(BACKENDS)}")
    if config.backend == "inline" and config.workers != 1:
        raise UsageError("the inline backend runs one evaluation at a time; use --backend process or ray for --workers > 1")
    opts = config.backend_options or {}
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown backend option(s) {', '.join(unknown)}; use {', '.join(OPTIONS)}")
    if opts.get("address") and config.backend != "ray":
        raise UsageError("--address is for --backend ray")
    if "max_retries" in opts and (not isinstance(opts["max_retries"], int) or opts["max_retries"] < 0):
        raise UsageError(f"backend option max_retries must be a whole number >= 0, got {opts['max_retries']!r}")
    if opts.get("workers_per_gpu") is not None and (not isinstance(opts["workers_per_gpu"], (int, float)) or opts["workers_per_gpu"] < 1):
        raise UsageError(f"backend option workers_per_gpu must be a number >= 1, got {opts['workers_per_gpu']!r}")
    if "share" in opts:
        if config.backend != "process":
            raise UsageError("--share is for --backend process")
        process_layout([], opts["share"])
    if opts.get("evaluator_factory"):
        _factory(opts["evaluator_factory"])
    if config.backend == "ray":
        import_ray()


def make_executor(config: Any, search: Any) -> Any:
    check_backend(config)
    return BACKENDS[config.backend](config, search)
