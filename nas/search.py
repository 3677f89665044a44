"""The search driver: ask the strategy, evaluate, tell, record; resume exactly after any stop.

The strategy proposes, the evaluator measures, the driver loops and records (STYLE 2). The
driver is the run store's only writer. It runs steady-state: a finished evaluation lets the next
one start at once, so parallel executors need no generation barrier.

Commits: an evaluation that took COMMIT_INTERVAL or longer, or left weights, is committed as it
finishes, and a running candidate is committed before the driver waits on it, so a crash loses
nothing of it. Fast evaluations (table lookups, infeasible proposals, duplicates answered from the
store) are committed in groups, at most COMMIT_INTERVAL apart: a crash loses at most that last
fraction of a second of them, and the resumed run evaluates them again from the strategy state
of the last commit (so it still ends as an uninterrupted one would).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import objectives as objmod
from .errors import NasError, UsageError
from .evaluators import Evaluation, run_preprocessing
from .objectives import Objective
from .space import Architecture, SearchSpace, SpaceError
from .runs import (KEEP_WEIGHTS, RUN_VERSION, Run, SearchConfig, function_objectives, make_evaluator,  # noqa: F401 (names kept importable here)
                   objectives_from_meta, objectives_meta, seed_for, space_config)
from .store import Candidate, RunError, RunStore
from .strategies import Result, Strategy, make_strategy
from .strategies.guided import GUIDABLE

COMMIT_INTERVAL = 0.25  # seconds: the most fast evaluations a crash can lose (see the module's docstring)
STOPS_FINISHED = ("budget", "time budget", "failures", "exhausted", "infeasible")  # a session that ended by itself


class SearchInterrupted(NasError):
    """Ctrl-C or SIGTERM: the run is saved; the message says how to resume. `signum` is the signal."""

    signum: int = signal.SIGINT


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


@dataclass
class SearchResult:
    """What a search produced (also available later from `nas.open_run`)."""

    run: Path
    candidates: list[Candidate]
    front: list[Candidate]
    objectives: list[Objective]
    stopped: str  # budget | time budget | failures | exhausted | infeasible

    @property
    def best(self) -> Candidate | None:
        return self.front[0] if self.front else None


class Search:
    """One search session over a run store (a new run, or one being resumed)."""

    def __init__(self, store: RunStore, config: SearchConfig, space: SearchSpace, *, objectives: Sequence[Objective] | None = None,
                 evaluator: Any = None, progress: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.config = config
        self.objectives = list(objectives) if objectives is not None else objmod.parse_objectives(config.objectives)
        self.evaluator = evaluator if evaluator is not None else make_evaluator(config)
        self.space = fit_space(space, self.evaluator)
        self.constraints = {**self.space.constraints, **config.constraints}
        name = config.strategy  # make_strategy resolves "auto" (strategy and predictor)
        self.strategy: Strategy = make_strategy(name, self.space, len(self.objectives), config.seed,
                                                objectives=[o.name for o in self.objectives], **config.strategy_options)
        saved = store.state("strategy")
        if saved is not None:
            self.strategy.load_state_dict(saved)
        bind = getattr(self.strategy, "bind_evaluator", None)  # guided strategies: cheap objectives, proxy data
        if bind is not None:
            bind(self.evaluator)
        # every commit writes the strategy's state with the rows it goes with (when it changed)
        self._strategy_state: dict[str, Any] | None = None
        store.state_provider = self._states
        self.progress = progress
        self.log = log or print
        self._bar: Any = None
        self._epochs_heard: dict[int, int] = {}  # candidate id -> last epoch heard while it ran
        self._created: tuple[Path, bool] | None = None  # (run, whether its directory was there before): set by start()
        self._t0 = time.monotonic()
        self._elapsed0 = float(store.meta("elapsed", 0.0))
        self._last_commit = 0.0
        self._slow = True  # whether the last evaluation took COMMIT_INTERVAL or longer (unknown: assume so)
        # in-memory views of the store, kept in step with it by _record (the per-candidate path
        # reads no rows back): first evaluation of each key, trained networks, the front
        self._first: dict[str, Candidate] = {}
        self._front: list[Candidate] = []
        self._front_version = 0  # bumped when the front changes: the progress line is worked out again only then
        self._shown: tuple[int, list[Candidate], dict[str, Any]] | None = None
        for c in store.candidates(["complete", "failed", "infeasible"]):
            if c.duplicate_of is None and c.derived_from is None:  # compressed candidates (nas compress) are no search evaluations
                self._first.setdefault(c.key, c)
            self._update_front(c)
        self._trained = sum(1 for c in self._first.values() if c.state != "infeasible")
        self._tally = {k: v for k, v in store.counts().items() if k in ("failed", "infeasible", "duplicates")}
        self.scheduled: Any = None  # epochs per candidate by rungs (--scheduler asha|hyperband; nas.schedulers)
        if getattr(config, "scheduler", "none") != "none":
            from .schedulers import ScheduledSearch

            self.scheduled = ScheduledSearch(self)

    def __enter__(self) -> "Search":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.store.close()

    # -- bookkeeping --------------------------------------------------------------------------
    def _evaluated(self) -> int:
        """Networks trained (or looked up) so far: what `budget` counts. Duplicates answered from the
        store and infeasible proposals (rejected before training) do not count."""
        return self._trained

    def _update_front(self, c: Candidate) -> bool:
        """Add `c` to the in-memory front if nothing there dominates it; True if the front changed."""
        changed = objmod.add_to_front(self._front, c, self.objectives)
        self._front_version += changed
        return changed

    def _states(self) -> dict[str, Any]:
        """What a commit saves with the rows: the strategy's state. It changes only in `ask`, `tell`
        and `observe` (the driver calls `_touched` after each): between them the same object is
        given again, which the store knows it saved, so the commit of every epoch's curve row does
        not serialise the whole strategy."""
        if self._strategy_state is None:
            self._strategy_state = self.strategy.state_dict()
        return {"strategy": self._strategy_state}

    def _touched(self) -> None:
        """The strategy was asked or told something: the next commit saves its state anew."""
        self._strategy_state = None

    def _elapsed(self) -> float:
        """Seconds of search over all sessions, up to now."""
        return self._elapsed0 + time.monotonic() - self._t0

    def _commit(self) -> None:
        """Commit what is pending with the strategy's state and the elapsed time (so that sessions
        ended by kill -9 count against the time budget too)."""
        self._last_commit = time.monotonic()
        if self.store.pending:
            self.store.set_metas({"elapsed": self._elapsed(), "elapsed_at": time.time()})
            self.store.commit()

    def _maybe_commit(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_commit >= COMMIT_INTERVAL:
            self._commit()

    def _result(self, cand_id: int, arch: Architecture, ev: Evaluation, generation: int, parents: tuple[int, ...]) -> tuple[Result, tuple[float, ...] | None, float]:
        """The strategy's view of an evaluation: minimised objective values (None when failed)."""
        values: tuple[float, ...] | None = None
        violation = 0.0
        if ev.status == "infeasible":
            violation = max(objmod.violation(ev.metrics, self.constraints), 1e-9)
        elif ev.ok:
            raw = [o.value(ev.metrics, arch) for o in self.objectives]
            if any(v is None or not math.isfinite(v) for v in raw):
                missing = [o.name for o, v in zip(self.objectives, raw) if v is None]
                ev.status, ev.error = "failed", f"the evaluator gave no value for objective(s) {', '.join(missing) or '(non-finite)'}"
            else:
                values = tuple(float(v) for v in raw)  # type: ignore[arg-type]
                violation = objmod.violation(ev.metrics, self.constraints)
        told = objmod.to_min(values, self.objectives) if values is not None else None
        return Result(cand_id, arch, told, violation, generation, parents), values, violation

    def _ask_new(self) -> Any:
        """The strategy's next proposal of a network not evaluated yet. Those it proposes again on
        the way are answered from the store (each proposed and recorded in one step). None when it
        keeps proposing known networks: the space may be exhausted."""
        for _ in range(max(1000, 20 * (self.config.budget or 50)) + 1):
            proposal = self.strategy.ask()
            self._touched()
            twin = self._first.get(proposal.arch.key)
            if twin is None:
                return proposal
            self._record_duplicate(proposal.generation, tuple(proposal.parents), proposal.arch, twin)
            self._maybe_commit()
        return None

    def _record_duplicate(self, generation: int, parents: tuple[int, ...], arch: Architecture, twin: Candidate) -> None:
        cid = self.store.next_id()
        ev = Evaluation(twin.state, dict(twin.metrics), twin.error)
        result, values, violation = self._result(cid, arch, ev, generation, parents)
        self.strategy.tell(result)
        self._touched()
        got = self.store.add_finished(arch.key, dict(arch), twin.state, generation=generation, parents=parents, metrics=twin.metrics,
                                      objectives=values, violation=violation, error=twin.error, duplicate_of=twin.id)
        self._count(twin.state, duplicate=True)
        assert got == cid, "the driver is the run's only writer"

    def _record(self, cand: Candidate, arch: Architecture, ev: Evaluation, duplicate_of: int | None = None) -> bool:
        """Tell the strategy and record the outcome; True when weights were written (the caller commits at once)."""
        info = getattr(self.strategy, "proposal_info", None)  # e.g. a warm start's proxy score
        if info is not None and duplicate_of is None:
            ev.metrics.update(info(arch))
        result, values, violation = self._result(cand.id, arch, ev, cand.generation, cand.parents)
        self.strategy.tell(result)
        self._touched()
        state = ev.status if ev.status in ("complete", "failed", "infeasible") else "failed"
        keep = self.config.keep_weights != "none" and ev.state is not None and duplicate_of is None
        if ev.history and self._epochs_heard.pop(cand.id, 0) != len(ev.history):  # the curve, where its epochs were not all heard
            self.store.set_curve(cand.id, ev.history)
        self.store.finish(cand.id, state, metrics=ev.metrics, objectives=values, violation=violation, error=ev.error,
                          duplicate_of=duplicate_of, weights=ev.state if keep else None)
        self._count(state, duplicate=duplicate_of is not None)
        cand.state, cand.metrics, cand.error, cand.duplicate_of, cand.violation = state, dict(ev.metrics), ev.error, duplicate_of, violation
        cand.objectives = values
        if duplicate_of is None and cand.key not in self._first:
            self._first[cand.key] = cand
            self._trained += state != "infeasible"
        self._update_front(cand)
        return keep

    def _count(self, state: str, duplicate: bool) -> None:
        if state in self._tally:
            self._tally[state] += 1
        self._tally["duplicates"] += duplicate

    def record_epoch(self, cid: int, record: Mapping[str, Any]) -> None:
        """An epoch a candidate finished (heard from the executor): kept in the store for readers
        (learning curves, the running candidate's epoch) and shown on the progress bar. Committed
        at most COMMIT_INTERVAL apart, as fast evaluations are (the driver is between steps: what
        is pending is whole): readers see an epoch within a quarter of a second, and epochs of a
        few milliseconds do not each wait for a synchronous commit (a crash loses nothing by it:
        the candidate in flight is trained again on resume, its curve with it)."""
        self.store.record_epoch(cid, record)
        self._maybe_commit()
        self._epochs_heard[cid] = int(record.get("epoch", 0))
        if self._bar is not None:
            self._bar.set_description(f"search (#{cid} epoch {record.get('epoch')})", refresh=True)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        if self.scheduled is not None:
            return self.scheduled.run()
        from .executors import make_executor

        cfg = self.config
        self._t0 = time.monotonic()
        self._elapsed0 = float(self.store.meta("elapsed", 0.0))
        stop = "budget"
        failures_in_row = 0
        infeasible_in_row = 0
        infeasible_limit = max(100, 10 * (cfg.budget or 10))
        summary_every = max(5, int(self.strategy.options.get("population", 10)))
        # asked before a stop: evaluate again (a compression step cut off is nas compress's to redo)
        pending = [c for c in self.store.candidates(["queued", "running"]) if c.derived_from is None]
        executor = make_executor(cfg, self)
        inflight: dict[int, tuple[Candidate, Architecture, float]] = {}
        sigterm = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm) if sigterm else None
        self.store.set_metas({"stopped": None, "elapsed": self._elapsed0, "elapsed_at": time.time(), "writer_pid": os.getpid()})
        self.store.batch = True
        self._open_bar()
        try:
            while True:
                # fill the workers
                while len(inflight) < executor.capacity:
                    if self._out_of_time():
                        stop = "time budget"
                        break
                    started_now = False  # recorded as running on the worker already (new proposals, one statement)
                    if pending:
                        cand = pending.pop(0)
                        arch = self.space.make(cand.arch)
                        twin = self._first.get(cand.key)
                        if twin is not None:
                            self._record(cand, arch, Evaluation(twin.state, dict(twin.metrics), twin.error), duplicate_of=twin.id)
                            self._maybe_commit()
                            continue
                    else:
                        if cfg.budget is not None and self._trained + len(inflight) >= cfg.budget:
                            break
                        proposal = self._ask_new()
                        if proposal is None:
                            stop = "exhausted"
                            break
                        arch = proposal.arch
                        busy = any(c.key == arch.key for c, _, _ in inflight.values())
                        worker = None if busy else executor.worker_name()
                        cid = self.store.add(arch.key, dict(arch), generation=proposal.generation, parents=proposal.parents, worker=worker)
                        cand = Candidate(cid, arch.key, dict(arch), "queued" if busy else "running", proposal.generation, tuple(proposal.parents))
                        started_now = not busy
                    if any(c.key == cand.key for c, _, _ in inflight.values()):
                        # its twin is being evaluated right now: wait for it, then answer from the store
                        pending.insert(0, cand)
                        break
                    if not started_now:
                        self.store.start(cand.id, executor.worker_name())
                    self._maybe_commit(force=self._slow)  # a slow evaluation is seen running, and nothing before it waits on it
                    inflight[cand.id] = (cand, arch, time.monotonic())
                    executor.submit(cand.id, self.space, arch, seed_for(cfg.seed, cand.key), self.constraints, **self._deadline())
                if not inflight:
                    break  # nothing running and nothing to start: budget reached, out of time or exhausted
                self._maybe_commit(force=self._slow)
                for cid, ev in executor.wait():
                    cand, arch, submitted = inflight.pop(cid)
                    self._slow = time.monotonic() - submitted >= COMMIT_INTERVAL
                    kept = self._record(cand, arch, ev)
                    self._maybe_commit(force=kept or self._slow)
                    failures_in_row = failures_in_row + 1 if ev.status == "failed" else 0
                    infeasible_in_row = infeasible_in_row + 1 if ev.status == "infeasible" else 0
                    self._advance(ev, cand, summary_every)
                if failures_in_row >= cfg.max_failures:
                    stop = "failures"
                    self.log(f"stopping: {failures_in_row} evaluations failed in a row (last: {self.store.candidates(['failed'])[-1].error})")
                    self._requeue_all(executor, inflight)
                    break
                if infeasible_in_row >= infeasible_limit:
                    stop = "infeasible"
                    limits = ", ".join(f"{k} {v:g}" for k, v in self.constraints.items())
                    self.log(f"stopping: the last {infeasible_in_row} proposals all broke a constraint known before training ({limits})"
                             f" and {self._trained} networks were trained; loosen the constraints or change the space")
                    self._requeue_all(executor, inflight)
                    break
            self._commit()
        except KeyboardInterrupt as exc:
            executor.cancel_all()
            self._stop_here("terminated" if isinstance(exc, _Terminated) else "interrupted")
            how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
            stopped = SearchInterrupted(f"{how}; everything finished so far is saved in {self.store.path}. Resume with: nas resume {self.store.path}")
            stopped.signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
            raise stopped from None
        except BaseException as exc:
            executor.cancel_all()
            self.store.batch = False
            self.store.rollback()
            if self._created is not None and self.store.next_id() == 1:
                self._discard()  # a new run that failed before its first candidate leaves nothing behind
            else:
                self._stop_here("error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            executor.shutdown()
            self.store.batch = False
            if sigterm:
                signal.signal(signal.SIGTERM, old_handler)
        self._close_bar()
        if stop == "exhausted":
            self.log("stopping: the strategy keeps proposing architectures that were already evaluated (the space may be exhausted)")
        return self.finish(stop)

    def _requeue_all(self, executor: Any, inflight: dict[int, Any]) -> None:
        executor.cancel_all()
        for cid in list(inflight):
            self.store.requeue(cid)
        inflight.clear()

    def _stop_here(self, why: str, error: str | None = None) -> None:
        """A session stopped mid-step: drop what is not committed (it was not whole, or is evaluated
        again on resume), then record the time spent and why it stopped."""
        self._close_bar()
        self.store.batch = False
        self.store.rollback()
        self.store.state_provider = None  # the strategy may be ahead of the last commit: keep the committed state
        self.store.set_metas({"elapsed": self._elapsed(), "elapsed_at": time.time(), "stopped": why, **({"error": error} if error else {})})

    def _discard(self) -> None:
        run, existed = self._created  # type: ignore[misc]
        self._close_bar()
        self.store.close()
        remove_run(run, existed)

    def _deadline(self) -> dict[str, float]:
        """With a time budget, the wall-clock moment training stops, at the first epoch boundary
        past it (for an evaluator that takes `deadline=`, as the trainer and the table do); the
        candidate is then recorded at the last epoch it completed."""
        tb = self.config.time_budget
        if tb is None or self.config.backend_options.get("evaluator_factory"):  # (workers' own evaluators may not take it)
            return {}
        if getattr(self, "_takes_deadline", None) is None:
            import inspect

            try:
                params = inspect.signature(self.evaluator.evaluate).parameters
                self._takes_deadline = "deadline" in params  # named: a wrapper's **kwargs may not pass it on
            except (TypeError, ValueError, AttributeError):
                self._takes_deadline = False
        return {"deadline": time.time() + max(0.0, tb - self._elapsed())} if self._takes_deadline else {}

    def _out_of_time(self) -> bool:
        tb = self.config.time_budget
        return tb is not None and self._elapsed() >= tb

    def finish(self, stop: str) -> SearchResult:
        """Test-split scores for the final front (only for it), weight pruning, the result."""
        front = objmod.front(self._front, self.objectives)  # the in-memory front is the run's (no rows read back)
        tester = getattr(self.evaluator, "test", None)
        self.store.batch = True  # one commit for all of it
        try:
            if tester is not None:
                for c in front:
                    if c.test is not None:
                        continue
                    try:
                        weights = None
                        if getattr(self.evaluator, "test_needs_weights", True):
                            if not self.store.weights_path(c.weights_id).exists():
                                continue  # weights were not kept: nothing to test
                            weights = self.store.load_weights(c.weights_id)
                        test = tester(self.space, self.space.make(c.arch), weights)
                    except Exception as exc:  # a test score is a report, not a reason to lose the run
                        test = {"error": f"{type(exc).__name__}: {exc}"}
                    self.store.set_test(c.id, test)
                    c.test = test
            self.store.set_metas({"stopped": stop, "elapsed": self._elapsed(), "elapsed_at": time.time()})
            self.store.commit()
        finally:
            self.store.batch = False
        if self.config.keep_weights == "front":
            self.store.prune_weights({c.weights_id for c in front})
        return SearchResult(self.store.path, self.store.candidates(), front, self.objectives, stop)

    # -- progress -----------------------------------------------------------------------------
    def _open_bar(self) -> None:
        if not self.progress:
            return
        from tqdm.auto import tqdm

        total = self.config.budget
        self._bar = tqdm(total=total, initial=min(self._evaluated(), total or 0), desc="search", unit="cand", dynamic_ncols=True)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _advance(self, ev: Evaluation, cand: Candidate, summary_every: int) -> None:
        done = self._evaluated()
        trained = ev.status != "infeasible"  # what the budget counts
        if self._bar is None and not (trained and done % summary_every == 0):
            return  # nothing to show: the front and hypervolume are not worked out per candidate
        if self._shown is not None and self._shown[0] == self._front_version:
            self._advance_show(trained, done, summary_every, self._shown[1], self._shown[2])
            return
        fr = objmod.front(self._front, self.objectives)
        first = self.objectives[0]
        postfix: dict[str, Any] = {}
        if fr:
            postfix[f"best {first.name}"] = f"{fr[0].objectives[0]:.4g}"
        if len(self.objectives) > 1:
            # the run's one hypervolume (status and report show the same), bounds fixed once per run
            if getattr(self, "_hv_bounds", None) is None:
                self._hv_bounds = objmod.hv_bounds(self.store.candidates(), self.objectives)
            hv = objmod.hypervolume(self._front, self.objectives, self._hv_bounds) if self._hv_bounds is not None else None
            postfix["hv"] = "n/a" if hv is None else f"{hv:.4f}"
        self._shown = (self._front_version, fr, postfix)
        self._advance_show(trained, done, summary_every, fr, postfix)

    def _advance_show(self, trained: bool, done: int, summary_every: int, fr: list[Candidate], postfix: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(int(trained))
            self._bar.set_postfix(postfix, refresh=False)
        if trained and done % summary_every == 0:
            counts = self._tally  # kept in step with the store (no table scans per row)
            text = f"evaluated {done:>5}  " + "  ".join(f"{k} {v}" for k, v in postfix.items())
            text += f"  front {len(fr)}  failed {counts['failed']}  infeasible {counts['infeasible']}  duplicates {counts['duplicates']}"
            if self._bar is not None:
                self._bar.write(text)
            else:
                self.log(text)


# -- public API -----------------------------------------------------------------------------
def open_run(run: str | Path) -> tuple[RunStore, SearchConfig, SearchSpace, list[Objective]]:
    """The older form of `nas.open_run`: (store, config, space, objectives) of a run opened
    read-only; closing the store closes the run. New code uses `nas.open_run` (a `Run`)."""
    opened = Run(run)
    return opened.store, opened.config, opened.space, opened.objectives


def default_run_dir(space_name: str, data: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{space_name}-{data}")
    return Path("runs") / f"{safe}-{stamp}"


def fit_space(space: SearchSpace, evaluator: Any) -> SearchSpace:
    """`space` for the evaluator's data (input shape, classes), checked by the evaluator."""
    fit = getattr(evaluator, "fit_space", None)
    fitted = fit(space) if fit is not None else space
    check = getattr(evaluator, "check_space", None)
    if check is not None:
        check(fitted)
    return fitted


def check_fits(space: SearchSpace, data: str, seed: int = 0) -> None:
    """UsageError, naming a space that fits, when no architecture of `space` can take the data."""
    try:
        space.sample(random.Random(seed))
    except SpaceError as exc:
        shape = "x".join(map(str, space.input_shape))
        if len(space.input_shape) == 1 and space.name != "mlp":
            hint = f"; the data are flat features ({shape}): use the mlp space (--space mlp)"
        elif len(space.input_shape) == 3:
            hint = f"; the data are images ({shape}): try --space cnn, resnet or mlp"
        else:
            hint = "; `nas spaces list` shows the shipped spaces"
        raise UsageError(f"the space {space.name} does not fit the data {data} (input {shape}): {exc.reason}{hint}") from None


def remove_run(run: Path, existed: bool) -> None:
    """Remove what creating a run wrote (all of `run` when this created the directory)."""
    if not existed:
        shutil.rmtree(run, ignore_errors=True)
        return
    for name in ("run.db", "run.db-wal", "run.db-shm", ".lock"):
        (run / name).unlink(missing_ok=True)
    try:
        (run / "weights").rmdir()
    except OSError:
        pass


def _check_train_options(config: SearchConfig, evaluator: Any) -> None:
    """A given evaluator trains with its own options: a `config.train` it does not share would be
    recorded with the run while the candidates train otherwise (e.g. max_epochs)."""
    own = getattr(evaluator, "train_options", None)
    if not isinstance(own, Mapping):
        return
    differ = {k: v for k, v in config.train.items() if own.get(k) != v}
    if differ:
        shown = ", ".join(f"{k}={v!r} (the evaluator: {own.get(k)!r})" for k, v in differ.items())
        raise UsageError(f"config.train differs from the given evaluator's training options: {shown}; "
                         "pass them to the evaluator (TrainingEvaluator(..., max_epochs=...)) or leave them out of config.train")


def start(config: SearchConfig, run: str | Path | None = None, *, objectives: Sequence[Objective] | None = None,
          evaluator: Any = None, progress: bool = True, log: Callable[[str], None] | None = None) -> Search:
    """Create a run directory for `config` and return the `Search` session (call `.run()`).
    Everything that can be refused is checked first; the run is then created in one step (config,
    objectives, the space's fingerprint and input shape together)."""
    from . import __version__

    config.check()
    space = SearchSpace.from_dict(config.space["raw"], config.space.get("source", "<run>"))
    space.check()
    objs = list(objectives) if objectives is not None else objmod.parse_objectives(config.objectives)
    config.objectives = [o.name for o in objs]
    run = Path(run) if run is not None else default_run_dir(space.name, config.data)
    if (run / "run.db").exists():
        raise RunError(f"{run}: a run already exists there; resume it with `nas resume {run}` or pick another --run")
    # check the backend, build the evaluator, fit the space to the data first: a bad option fails
    # before anything is written
    from .executors import check_backend

    check_backend(config)
    evaluator = evaluator if evaluator is not None else make_evaluator(config)
    _check_train_options(config, evaluator)
    fitted = fit_space(space, evaluator)
    check_fits(fitted, config.data, config.seed)
    existed = run.exists()
    store = RunStore.create(run, {"config": config.to_dict(), "nas_version": __version__, "run_version": RUN_VERSION,
                                  "objectives": objectives_meta(objs), "space_fingerprint": fitted.fingerprint,
                                  "input_shape": list(fitted.input_shape), "classes": fitted.classes,
                                  "preprocessing": run_preprocessing(evaluator)})
    try:
        search = Search(store, config, space, objectives=objs, evaluator=evaluator, progress=progress, log=log)
    except BaseException:
        store.close()
        remove_run(run, existed)
        raise
    search._created = (run, existed)
    return search


def _resume_objectives(run: str | Path, store: RunStore, config: SearchConfig, given: Sequence[Objective | str] | None) -> list[Objective]:
    """The run's objectives for a resume: the stored ones; function objectives must be given again
    (through the API: a run cannot store a function), with the same names and directions."""
    stored = store.meta("objectives")
    names = list(config.objectives)
    functions = function_objectives(stored) if stored else [n for n in names if n not in objmod.BUILTIN]
    if given is None:
        if functions:
            raise UsageError(f"{run}: objective(s) {', '.join(functions)} are Python functions, which a run cannot store;"
                             f" resume it from Python with nas.resume({str(run)!r}, objectives=[...]) giving all of {', '.join(names)}")
        return objectives_from_meta(stored, names)
    objs = objmod.parse_objectives(given)
    if [o.name for o in objs] != names:
        raise UsageError(f"{run}: the run's objectives are {', '.join(names)} (in that order); got {', '.join(o.name for o in objs)}")
    for o, want in zip(objs, objectives_from_meta(stored, names) if stored else objs):
        if o.direction != want.direction:
            raise UsageError(f"{run}: objective {o.name} is {'maximised' if want.direction == 'max' else 'minimised'} in the run; got direction {o.direction!r}")
        if o.name in functions and o.fn is None:
            raise UsageError(f"{run}: objective {o.name} is a Python function in the run; give it with fn=...")
    return objs


def resume(run: str | Path, *, budget: int | None = None, time_budget: float | None = None, objectives: Sequence[Objective | str] | None = None,
           evaluator: Any = None, progress: bool = True, log: Callable[[str], None] | None = None, **overrides: Any) -> Search:
    """Reopen a run for writing; `budget`/`time_budget` may extend it. Other settings are the
    run's own; overrides that differ are reported (config is what the command says, state is
    what the run produced). A run with objectives computed by Python functions needs them again:
    `nas.resume(run, objectives=[...])`."""
    store = RunStore.open(run, write=True)
    try:
        config = SearchConfig.from_dict(store.meta("config"))
        objs = _resume_objectives(run, store, config, objectives)
        changes = []
        if budget is not None and budget != config.budget:
            changes.append(f"budget {config.budget} -> {budget}")
            config.budget = budget
        if time_budget is not None and time_budget != config.time_budget:
            changes.append(f"time budget {config.time_budget} -> {time_budget}")
            config.time_budget = time_budget
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in SearchConfig.__dataclass_fields__:
                raise UsageError(f"unknown setting {key!r}")
            if getattr(config, key) != value:
                changes.append(f"{key} {getattr(config, key)!r} -> {value!r}")
                setattr(config, key, value)
        config.check()
        space = SearchSpace.from_dict(config.space["raw"], config.space.get("source", "<run>"))
        search = Search(store, config, space, objectives=objs, evaluator=evaluator, progress=progress, log=log)
        saved = store.meta("space_fingerprint")
        if saved is not None and saved != search.space.fingerprint:
            raise RunError(f"{run}: the run's space compiles differently with this version of nas (fingerprint {search.space.fingerprint}, run {saved})")
        updates: dict[str, Any] = {}
        if changes:
            updates["config"] = config.to_dict()
        if store.meta("objectives") is None:  # a run from before objectives were stored
            updates["objectives"] = objectives_meta(objs)
        if updates:
            store.set_metas(updates)
        if changes:
            (log or print)("resuming with changed settings: " + "; ".join(changes))
    except BaseException:
        store.close()
        raise
    return search


def search(space: SearchSpace | str, data: str = "digits", *, strategy: str = "auto", budget: int | None = 50,
           objectives: str | Sequence[str | Objective] = "accuracy", constraints: Sequence[str] | Mapping[str, float] | None = None,
           run: str | Path | None = None, seed: int = 0, time_budget: float | None = None, device: str = "auto",
           progress: bool = True, evaluator: Any = None, strategy_options: Mapping[str, Any] | None = None,
           keep_weights: str = "all", workers: int = 1, backend: str = "inline", backend_options: Mapping[str, Any] | None = None,
           scheduler: str = "none", min_epochs: int = 1, eta: int = 3,
           log: Callable[[str], None] | None = None, **train: Any) -> SearchResult:
    """Run a search and return its result; the run directory keeps everything (see `nas resume`).

        result = nas.search("mlp", data="digits", objectives="accuracy,params", budget=30)
        print(result.best.metrics)
    """
    from .space import load_space

    if isinstance(space, str):
        space = load_space(space)
    objs = objmod.parse_objectives(objectives)
    cons = dict(constraints) if isinstance(constraints, Mapping) else objmod.parse_constraints(constraints)
    latency = {k: train.pop(k) for k in list(train) if k.startswith("latency_")}
    options = dict(strategy_options or {})
    if strategy in GUIDABLE and "predictor" not in options:
        options["predictor"] = "none"  # as on the CLI: a proposal of a network already seen is drawn again (bounded)
    config = SearchConfig(
        space=space_config(space), data=data, objectives=[o.name for o in objs], constraints=cons, strategy=strategy,
        strategy_options=options, budget=budget, time_budget=time_budget, seed=seed, device=device,
        train=train, latency={k[len("latency_"):]: v for k, v in latency.items()}, keep_weights=keep_weights,
        workers=workers, backend=backend, backend_options=dict(backend_options or {}),
        scheduler=scheduler, min_epochs=min_epochs, eta=eta,
    )
    with start(config, run, objectives=objs, evaluator=evaluator, progress=progress, log=log) as session:
        return session.run()
