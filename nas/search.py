"""The search driver: ask the strategy, evaluate, tell, record; resume exactly after any stop.

The strategy proposes, the evaluator measures, the driver loops and records (STYLE 2). The
driver is the run store's only writer. It runs steady-state: a finished evaluation lets the next
one start at once, so parallel executors need no generation barrier.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import objectives as objmod
from .errors import NasError, UsageError
from .evaluators import Evaluation
from .objectives import Objective
from .space import Architecture, SearchSpace
from .runs import KEEP_WEIGHTS, RUN_VERSION, Run, SearchConfig, make_evaluator, seed_for, space_config  # noqa: F401 (names kept importable here)
from .store import Candidate, RunError, RunStore
from .strategies import Result, Strategy, default_strategy, make_strategy

class SearchInterrupted(NasError):
    """Ctrl-C: the run is saved; the message says how to resume."""


@dataclass
class SearchResult:
    """What a search produced (also available later from `nas.open_run`)."""

    run: Path
    candidates: list[Candidate]
    front: list[Candidate]
    objectives: list[Objective]
    stopped: str  # budget | time budget | failures | exhausted

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
        fit = getattr(self.evaluator, "fit_space", None)
        self.space = fit(space) if fit is not None else space
        check = getattr(self.evaluator, "check_space", None)
        if check is not None:
            check(self.space)
        self.constraints = {**self.space.constraints, **config.constraints}
        name = config.strategy if config.strategy != "auto" else default_strategy(len(self.objectives))
        self.strategy: Strategy = make_strategy(name, self.space, len(self.objectives), config.seed,
                                                objectives=[o.name for o in self.objectives], **config.strategy_options)
        saved = store.state("strategy")
        if saved is not None:
            self.strategy.load_state_dict(saved)
        self.progress = progress
        self.log = log or print
        self._bar: Any = None
        self._epochs_heard: dict[int, int] = {}  # candidate id -> last epoch heard while it ran
        # in-memory views of the store, kept in step with it by _record (the per-candidate path
        # reads no rows back): first evaluation of each key, distinct evaluations, the front
        self._first: dict[str, Candidate] = {}
        self._front: list[Candidate] = []
        for c in store.candidates(["complete", "failed", "infeasible"]):
            if c.source is None:
                self._first.setdefault(c.key, c)
            self._update_front(c)

    def __enter__(self) -> "Search":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.store.close()

    # -- bookkeeping --------------------------------------------------------------------------
    def _evaluated(self) -> int:
        """Distinct architectures evaluated so far (duplicates answered from the store do not count)."""
        return len(self._first)

    def _update_front(self, c: Candidate) -> bool:
        """Add `c` to the in-memory front if nothing there dominates it; True if the front changed."""
        if not c.feasible or c.objectives is None or any(f.key == c.key for f in self._front):
            return False
        mine = objmod.to_min(c.objectives, self.objectives)
        others = [objmod.to_min(f.objectives, self.objectives) for f in self._front]
        if any(all(a <= b for a, b in zip(o, mine)) and o != mine for o in others):
            return False
        self._front = [f for f, o in zip(self._front, others) if not (all(a <= b for a, b in zip(mine, o)) and mine != o)]
        self._front.append(c)
        return True

    def _elapsed(self) -> float:
        return float(self.store.meta("elapsed", 0.0))

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

    def _record_duplicate(self, generation: int, parents: tuple[int, ...], arch: Architecture, twin: Candidate) -> None:
        cid = self.store.next_id()
        ev = Evaluation(twin.state, dict(twin.metrics), twin.error)
        result, values, violation = self._result(cid, arch, ev, generation, parents)
        self.strategy.tell(result)
        got = self.store.add_finished(arch.key, dict(arch), twin.state, generation=generation, parents=parents, metrics=twin.metrics,
                                objectives=values, violation=violation, error=twin.error, source=f"duplicate of #{twin.id}",
                                states={"strategy": self.strategy.state_dict()})
        assert got == cid, "the driver is the run's only writer"

    def _record(self, cand: Candidate, arch: Architecture, ev: Evaluation, source: str | None = None) -> None:
        result, values, violation = self._result(cand.id, arch, ev, cand.generation, cand.parents)
        self.strategy.tell(result)
        state = ev.status if ev.status in ("complete", "failed", "infeasible") else "failed"
        keep = self.config.keep_weights != "none" and ev.state is not None and source is None
        if ev.history and self._epochs_heard.pop(cand.id, 0) != len(ev.history):  # the curve, where its epochs were not all heard
            self.store.set_curve(cand.id, ev.history)
        self.store.finish(cand.id, state, metrics=ev.metrics, objectives=values, violation=violation, error=ev.error,
                          source=source, weights=ev.state if keep else None, states={"strategy": self.strategy.state_dict()})
        cand.state, cand.metrics, cand.error, cand.source, cand.violation = state, dict(ev.metrics), ev.error, source, violation
        cand.objectives = values
        if source is None:
            self._first.setdefault(cand.key, cand)
        self._update_front(cand)

    def record_epoch(self, cid: int, record: Mapping[str, Any]) -> None:
        """An epoch a candidate finished (heard from the executor): kept in the store for readers
        (learning curves, the running candidate's epoch) and shown on the progress bar."""
        self.store.record_epoch(cid, record)
        self._epochs_heard[cid] = int(record.get("epoch", 0))
        if self._bar is not None:
            self._bar.set_description(f"search (#{cid} epoch {record.get('epoch')})", refresh=True)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        from .executors import make_executor

        cfg = self.config
        started = time.monotonic()
        elapsed0 = self._elapsed()
        stop = "budget"
        failures_in_row = 0
        dup_streak = 0
        summary_every = max(5, int(self.strategy.options.get("population", 10)))
        pending = self.store.candidates(["queued", "running"])  # asked before a stop: evaluate again
        executor = make_executor(cfg, self)
        inflight: dict[int, tuple[Candidate, Architecture]] = {}
        self._open_bar()
        try:
            while True:
                # fill the workers
                while len(inflight) < executor.capacity:
                    if self._out_of_time(started, elapsed0):
                        stop = "time budget"
                        break
                    if pending:
                        cand = pending.pop(0)
                        arch = self.space.make(cand.arch)
                        twin = self._first.get(cand.key)
                        if twin is not None:
                            self._record(cand, arch, Evaluation(twin.state, dict(twin.metrics), twin.error), source=f"duplicate of #{twin.id}")
                            continue
                    else:
                        if cfg.budget is not None and self._evaluated() + len(inflight) >= cfg.budget:
                            break
                        proposal = self.strategy.ask()
                        arch = proposal.arch
                        twin = self._first.get(arch.key)
                        if twin is not None:
                            # answered from the store: proposed and recorded in one transaction
                            self._record_duplicate(proposal.generation, tuple(proposal.parents), arch, twin)
                            dup_streak += 1
                            if dup_streak > max(1000, 20 * (cfg.budget or 50)):
                                stop = "exhausted"
                                break
                            continue
                        cid = self.store.add(arch.key, dict(arch), generation=proposal.generation, parents=proposal.parents,
                                             states={"strategy": self.strategy.state_dict()})
                        cand = Candidate(cid, arch.key, dict(arch), "queued", proposal.generation, tuple(proposal.parents))
                    if any(c.key == cand.key for c, _ in inflight.values()):
                        # its twin is being evaluated right now: wait for it, then answer from the store
                        pending.insert(0, cand)
                        break
                    dup_streak = 0
                    self.store.start(cand.id, executor.worker_name())
                    executor.submit(cand.id, self.space, arch, seed_for(cfg.seed, cand.key), self.constraints)
                    inflight[cand.id] = (cand, arch)
                if not inflight:
                    break  # nothing running and nothing to start: budget reached, out of time or exhausted
                for cid, ev in executor.wait():
                    cand, arch = inflight.pop(cid)
                    self._record(cand, arch, ev)
                    failures_in_row = failures_in_row + 1 if ev.status == "failed" else 0
                    self._advance(ev, cand, summary_every)
                if failures_in_row >= cfg.max_failures:
                    stop = "failures"
                    self.log(f"stopping: {failures_in_row} evaluations failed in a row (last: {self.store.candidates(['failed'])[-1].error})")
                    executor.cancel_all()
                    for cid, (cand, _) in list(inflight.items()):
                        self.store.requeue(cid)
                    inflight.clear()
                    break
        except KeyboardInterrupt:
            executor.cancel_all()
            self._save_elapsed(started, elapsed0)
            self._close_bar()
            raise SearchInterrupted(f"interrupted; everything finished so far is saved in {self.store.path}. Resume with: nas resume {self.store.path}") from None
        finally:
            executor.shutdown()
        self._save_elapsed(started, elapsed0)
        self._close_bar()
        if stop == "exhausted":
            self.log("stopping: the strategy keeps proposing architectures that were already evaluated (the space may be exhausted)")
        return self.finish(stop)

    def _out_of_time(self, started: float, elapsed0: float) -> bool:
        tb = self.config.time_budget
        return tb is not None and elapsed0 + (time.monotonic() - started) >= tb

    def _save_elapsed(self, started: float, elapsed0: float) -> None:
        self.store.set_meta("elapsed", elapsed0 + time.monotonic() - started)

    def finish(self, stop: str) -> SearchResult:
        """Test-split scores for the final front (only for it), weight pruning, the result."""
        candidates = self.store.candidates()
        front = objmod.front(candidates, self.objectives)
        tester = getattr(self.evaluator, "test", None)
        if tester is not None:
            for c in front:
                if c.test is not None:
                    continue
                source = int(c.source.split("#")[1]) if c.source else c.id
                try:
                    weights = None
                    if getattr(self.evaluator, "test_needs_weights", True):
                        if not self.store.weights_path(source).exists():
                            continue  # weights were not kept: nothing to test
                        weights = self.store.load_weights(source)
                    test = tester(self.space, self.space.make(c.arch), weights)
                except Exception as exc:  # a test score is a report, not a reason to lose the run
                    test = {"error": f"{type(exc).__name__}: {exc}"}
                self.store.set_test(c.id, test)
                c.test = test
        if self.config.keep_weights == "front":
            keep = {int(c.source.split("#")[1]) if c.source else c.id for c in front}
            self.store.prune_weights(keep)
        self.store.set_meta("stopped", stop)
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
        if self._bar is None and not self.progress:
            return
        fr = objmod.front(self._front, self.objectives)
        first = self.objectives[0]
        postfix: dict[str, Any] = {}
        if fr:
            postfix[f"best {first.name}"] = f"{fr[0].objectives[0]:.4g}"
        if len(self.objectives) > 1:
            # normalised by the front's own bounds while searching (the report uses the final ones)
            postfix["hv"] = f"{objmod.hypervolume(fr, self.objectives):.3f}"
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(postfix, refresh=False)
        if done % summary_every == 0:
            counts = self.store.counts()
            text = f"evaluated {done:>5}  " + "  ".join(f"{k} {v}" for k, v in postfix.items())
            text += f"  front {len(fr)}  failed {counts['failed']}  infeasible {counts['infeasible']}  duplicates {counts['duplicates']}"
            if self._bar is not None:
                self._bar.write(text)
            else:
                self.log(text)


# -- public API -----------------------------------------------------------------------------
def open_run(run: str | Path) -> tuple[RunStore, SearchConfig, SearchSpace, list[Objective]]:
    """The older form of `nas.open_run`: (store, config, space, objectives) of a run opened
    read-only; closing the store closes the run. New code uses `nas.runs.Run`."""
    opened = Run(run)
    return opened.store, opened.config, opened.space, opened.objectives


def default_run_dir(space_name: str, data: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{space_name}-{data}")
    return Path("runs") / f"{safe}-{stamp}"


def start(config: SearchConfig, run: str | Path | None = None, *, objectives: Sequence[Objective] | None = None,
          evaluator: Any = None, progress: bool = True, log: Callable[[str], None] | None = None) -> Search:
    """Create a run directory for `config` and return the `Search` session (call `.run()`)."""
    from . import __version__

    config.check()
    space = SearchSpace.from_dict(config.space["raw"], config.space.get("source", "<run>"))
    space.check()
    objs = list(objectives) if objectives is not None else objmod.parse_objectives(config.objectives)
    config.objectives = [o.name for o in objs]
    run = Path(run) if run is not None else default_run_dir(space.name, config.data)
    if (run / "run.db").exists():
        raise RunError(f"{run}: a run already exists there; resume it with `nas resume {run}` or pick another --run")
    # check the backend, build the evaluator and strategy first: a bad option fails before
    # anything is written
    from .executors import check_backend

    check_backend(config)
    evaluator = evaluator if evaluator is not None else make_evaluator(config)
    store = RunStore.create(run, {"config": config.to_dict(), "nas_version": __version__, "run_version": RUN_VERSION})
    try:
        search = Search(store, config, space, objectives=objs, evaluator=evaluator, progress=progress, log=log)
        store.set_meta("space_fingerprint", search.space.fingerprint)
        store.set_meta("input_shape", list(search.space.input_shape))
        store.set_meta("classes", search.space.classes)
    except BaseException:
        store.close()
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        raise
    return search


def resume(run: str | Path, *, budget: int | None = None, time_budget: float | None = None, objectives: Sequence[Objective] | None = None,
           evaluator: Any = None, progress: bool = True, log: Callable[[str], None] | None = None, **overrides: Any) -> Search:
    """Reopen a run for writing; `budget`/`time_budget` may extend it. Other settings are the
    run's own; overrides that differ are reported (config is what the command says, state is
    what the run produced)."""
    store = RunStore.open(run, write=True)
    try:
        config = SearchConfig.from_dict(store.meta("config"))
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
        search = Search(store, config, space, objectives=objectives, evaluator=evaluator, progress=progress, log=log)
        saved = store.meta("space_fingerprint")
        if saved is not None and saved != search.space.fingerprint:
            raise RunError(f"{run}: the run's space compiles differently with this version of nas (fingerprint {search.space.fingerprint}, run {saved})")
        if changes:
            store.set_meta("config", config.to_dict())
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
           **train: Any) -> SearchResult:
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
    config = SearchConfig(
        space=space_config(space), data=data, objectives=[o.name for o in objs], constraints=cons, strategy=strategy,
        strategy_options=dict(strategy_options or {}), budget=budget, time_budget=time_budget, seed=seed, device=device,
        train=train, latency={k[len("latency_"):]: v for k, v in latency.items()}, keep_weights=keep_weights,
        workers=workers, backend=backend, backend_options=dict(backend_options or {}),
    )
    with start(config, run, objectives=objs, evaluator=evaluator, progress=progress) as session:
        return session.run()
