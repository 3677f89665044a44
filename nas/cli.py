"""The `nas` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import NasError, UsageError
from .textfmt import human, table


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _graph_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="on CUDA, train eagerly instead of replaying each training step as a captured CUDA graph")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,28,28 or 64, got {text!r}") from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,28,28 or 64, got {text!r}")
    return shape


# -- nas spaces ------------------------------------------------------------------------------
def _load(spec: str, input_shape: Sequence[int] | None = None, classes: int | None = None):
    from .space import load_space

    space = load_space(spec)
    if input_shape is not None or classes is not None:
        space = space.with_input(input_shape, classes)
    return space


def cmd_spaces_list(args: argparse.Namespace) -> int:
    from .space import load_space, shipped_spaces

    rows = []
    for name, path in shipped_spaces().items():
        space = load_space(path)
        size = space.size()
        rows.append([name, "x".join(map(str, space.input_shape)), len(space.decisions), human(size) if size else "huge", space.description])
    print(table(rows, ["space", "input", "decisions", "size", "description"], "lrrrl"))
    print(f"\nfiles: {Path(next(iter(shipped_spaces().values()))).parent if rows else '-'}")
    return 0


def cmd_spaces_validate(args: argparse.Namespace) -> int:
    from .space import SpaceError

    failed = 0
    for spec in args.files:
        try:
            space = _load(spec, args.input, args.classes)
            space.check(samples=args.samples)
        except SpaceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        size = space.size()
        print(f"ok  {spec}  ({space.name}: {len(space.decisions)} decisions, {human(size) if size else 'too many to count'} architectures)")
    return 2 if failed else 0


def _condition_text(d: Any) -> str:
    sites = [s for s in d.sites if s]
    if not sites or len(sites) < len(d.sites):
        return ""
    return " or ".join(" and ".join(a.text() for a in s) for s in sites)


def cmd_spaces_show(args: argparse.Namespace) -> int:
    space = _load(args.file, args.input, args.classes)
    size = space.size()
    if args.json:
        print(json.dumps({
            "name": space.name, "source": space.source, "fingerprint": space.fingerprint,
            "input": list(space.input_shape), "classes": space.classes, "size": size,
            "constraints": space.constraints,
            "decisions": [{"label": d.label, "kind": d.kind, "values": list(d.values), "when": _condition_text(d) or None} for d in space.decisions],
        }, indent=2, default=str))
        return 0
    print(f"space       {space.name}  ({space.source})")
    if space.description:
        print(f"            {space.description}")
    print(f"input       {'x'.join(map(str, space.input_shape))}, {space.classes} classes")
    print(f"size        {size:,} architectures" if size else "size        too many to count exactly")
    print(f"fingerprint {space.fingerprint}")
    if space.constraints:
        print("constraints " + ", ".join(f"{k}={v}" for k, v in space.constraints.items()))
    from .textfmt import terminal_width, wrap

    width = terminal_width() or 100
    print()
    rows = [[d.label, d.kind, len(d.values), d.describe(), _condition_text(d)] for d in space.decisions]
    text = table(rows, ["decision", "kind", "n", "values", "active when"], "llrll", width=None)
    if max(len(line) for line in text.splitlines()) > width:  # too wide: each condition on lines of its own under its row
        lines = table([r[:4] for r in rows], ["decision", "kind", "n", "values"], "llrl", flex=3, width=width, overflow="wrap").splitlines()
        out, k = lines[:2], 2
        for r in rows:
            height = max(1, r[3].count("\n") + 1)
            while k < len(lines) and (height > 0):
                out.append(lines[k])
                k += 1
                height -= 1
            while k < len(lines) and lines[k].startswith(" "):  # the values column's own continuation lines
                out.append(lines[k])
                k += 1
            if r[4]:
                out.append(wrap(f"    when: {r[4]}", width, indent="          "))
        text = "\n".join(out)
    print(text)
    print("\nlayers (searched fields in {braces}; a layer with when: exists only when that holds)")
    for line in _layer_lines(space._c.body):
        print(wrap(line, width, indent=" " * (len(line) - len(line.lstrip()) + 4)))
    train = " ".join(f"{k}={_field_text(v)}" for k, v in space._c.train.items())
    print(wrap(f"train  {train}", width, indent="       "))
    return 0


def _field_text(f: Any) -> str:
    return "{" + f.label + "}" if hasattr(f, "label") and not hasattr(f, "value") else repr(getattr(f, "value", f))


def _layer_lines(layers: Sequence[Any], depth: int = 0, outer: tuple = ()) -> list[str]:
    """The compiled layers of a space, one line each: type, fields, and `when:` with the
    condition that layer adds to its enclosing ones."""
    out = []
    for layer in layers:
        own = [a for a in layer.cond if a not in outer]
        fields = " ".join(f"{k}={_field_text(v)}" for k, v in layer.fields.items())
        when = f"   when: {' and '.join(a.text() for a in own)}" if own else ""
        edges = f" edges={len(layer.edges)}" if layer.edges else ""
        out.append(f"{'  ' * depth}- {layer.type} {fields}{edges}{when}".rstrip())
        if layer.body:
            out += _layer_lines(layer.body, depth + 1, tuple(layer.cond))
    return out


def cmd_spaces_sample(args: argparse.Namespace) -> int:
    import random

    from .build import build_model
    from .measure import count_flops, count_params

    space = _load(args.file, args.input, args.classes)
    rng = random.Random(args.seed)
    rows, records = [], []
    for i in range(args.n):
        arch = space.sample(rng)
        model = build_model(space, arch)
        params, flops = count_params(model), count_flops(model, space.input_shape)
        from .textfmt import summary_notes

        text = summary_notes(space, arch, space.summary(arch))
        records.append({"key": arch.key, "params": params, "flops": flops, "summary": text, "arch": dict(arch)})
        rows.append([i, arch.key, f"{params:,}", human(flops), text])
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(table(rows, ["#", "key", "params", "flops", "architecture"], "rlrrl", flex=4, overflow="wrap" if args.full else "cut"))
    return 0


# -- nas train -------------------------------------------------------------------------------
def read_arch(space: Any, text: str) -> Any:
    """An architecture from `--arch`: a JSON file (an export's arch.json, or {"values": ...}),
    inline JSON, a NAS-Bench-201 string, label=value pairs, or `random[:SEED]`."""
    from .space import InvalidArchitecture

    if text == "random" or text.startswith("random:"):
        seed = text.partition(":")[2]
        try:
            return space.sample(int(seed) if seed else None)
        except ValueError:
            raise UsageError(f"--arch random:SEED needs an integer seed, got {seed!r}") from None
    path = Path(text)
    if not text.lstrip().startswith(("{", "|")) and "=" not in text:
        if not path.exists():
            raise UsageError(f"--arch: no such file {text!r} (give a file, JSON, a cell string, label=value pairs or random)")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"--arch: {text} is not a JSON file: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("arch"), dict):
            data = data["arch"]
        try:
            return space.parse_arch(data)
        except InvalidArchitecture as exc:
            raise UsageError(f"--arch {text}: {exc.reason}") from None
    try:
        return space.parse_arch(text)
    except InvalidArchitecture as exc:
        raise UsageError(f"--arch: {exc.reason}") from None


def _export_training(text: str) -> dict[str, Any] | None:
    """The `training` record of an export's arch.json given as --arch (how the run trained it)."""
    path = Path(text)
    if text.lstrip().startswith(("{", "|")) or "=" in text or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    training = data.get("training") if isinstance(data, dict) else None
    return training if isinstance(training, dict) else None


def cmd_train(args: argparse.Namespace) -> int:
    from .evaluators import TrainingEvaluator

    # an export's arch.json carries the run's training settings: they are the defaults here, so
    # the run's number reproduces; a flag given on the command line wins
    run = _export_training(args.arch) or {}
    options = dict(run.get("options") or {})
    given = {"max_epochs": args.epochs, "patience": args.patience, "time_limit": args.time_limit,
             "cuda_graph": False if args.no_cuda_graph else None}
    options.update({k: v for k, v in given.items() if v is not None})
    seed = args.seed if args.seed is not None else int(run.get("seed", 0))
    data = args.data or run.get("data") or "digits"
    data_seed = args.data_seed if args.data_seed is not None else int(run.get("data_seed", 0))
    data_dir = args.data_dir or (run.get("data_dir") if data == run.get("data") else None)
    space = _load(args.space)
    evaluator = TrainingEvaluator(data, device=args.device, data_seed=data_seed, data_dir=data_dir, download=args.download, latency=args.latency,
                                  **options)
    space = evaluator.fit_space(space)
    arch = read_arch(space, args.arch)
    ds = evaluator.dataset
    if not args.json:
        print(f"data   {ds.summary()}")
        from .textfmt import summary_notes

        print(f"arch   {summary_notes(space, arch, space.summary(arch))}  (key {arch.key}; --json for every decision)")
        if run:
            shown = ", ".join(f"{k} {v}" for k, v in options.items())
            print(f"train  as the run trained it (from {args.arch}): seed {seed}, data seed {data_seed}" + (f", {shown}" if shown else ""))
        print(f"device {evaluator.device}\n")
        print(f"{'epoch':>5}  {'train loss':>10}  {'val loss':>9}  {'val acc':>8}  {'lr':>9}  {'seconds':>7}")

    def show(rec: dict[str, float]) -> None:
        if not args.json:
            print(f"{rec['epoch']:>5}  {rec['train_loss']:>10.4f}  {rec['val_loss']:>9.4f}  {rec['val_accuracy']:>8.4f}  {rec['lr']:>9.3g}  {rec['seconds']:>7.2f}", flush=True)

    result = evaluator.evaluate(space, arch, seed=seed, on_epoch=show)
    out: dict[str, Any] = {"status": result.status, **result.metrics}
    if result.error:
        out["error"] = result.error
    if result.ok and args.test and result.state is not None:
        out.update(evaluator.test(space, arch, result.state))
    if args.json:
        print(json.dumps({**out, "history": result.history, "arch": dict(arch), "key": arch.key}, indent=2, default=str))
        return 0 if result.ok else 1
    print()
    if not result.ok:
        print(f"{result.status}: {result.error}")
        return 1
    print(f"val accuracy {out['val_accuracy']:.4f} (best epoch {out['best_epoch']} of {out['epochs']}, stopped by {out['stop_reason']})")
    if "test_accuracy" in out:
        print(f"test accuracy {out['test_accuracy']:.4f}")
    print(f"params {out['params']:,}  flops {human(out['flops'])}  seconds {out['seconds']:.1f}" + (f"  latency {out['latency_ms']:.3f} ms" if "latency_ms" in out else ""))
    return 0


# -- nas search / resume / status -----------------------------------------------------------
def _duration(text: str) -> float:
    """'90', '90s', '15m', '2h' -> seconds."""
    t = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        value = float(t[:-1]) * scale if scale else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 600, 90s, 15m or 2h, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def front_table(store: Any, space: Any, objectives: list[Any], limit: int | None = None) -> str:
    """The Pareto front of a run as a text table (test accuracy where it was computed)."""
    from . import objectives as objmod

    front = objmod.front(store.candidates(["complete"]), objectives)
    if not front:
        return "no complete, feasible candidate yet"
    chosen = objmod.try_pick(front, objectives)
    rows = []
    for c in front[:limit]:
        m = c.metrics
        test = (c.test or {}).get("test_accuracy")
        try:
            from .compress import describe

            from .textfmt import summary_notes

            arch_text = describe(c) or summary_notes(space, c.arch, space.summary(space.make(c.arch)))
        except NasError:
            arch_text = json.dumps(c.arch)
        rows.append(["*" if chosen is not None and c.id == chosen.id else "", c.id, f"{m.get('val_accuracy', float('nan')):.4f}", f"{test:.4f}" if test is not None else "-",
                     f"{m['params']:,}" if "params" in m else "-", human(m.get("flops")),
                     f"{m['latency_ms']:.3f}" if m.get("latency_ms") is not None else "-", m.get("epochs", "-"),
                     arch_text])  # the table cuts it to the terminal's width
    note = f"\n* the pick `nas export` takes by default ({objmod.DEFAULT_PICK}): {objmod.PICK_RULES[objmod.DEFAULT_PICK]}" if chosen is not None else ""
    return table(rows, ["pick", "id", "val acc", "test acc", "params", "flops", "lat ms", "epochs", "architecture"], "lrrrrrrrl") + note


def _print_end(result: Any, space: Any) -> None:
    from .store import RunStore

    print()
    with RunStore.open(result.run) as store:
        objectives = result.objectives
        names = ', '.join(o.name + (' max' if o.direction == 'max' else ' min') for o in objectives)
        title = f"Pareto front ({names})" if len(objectives) > 1 else f"Best by {names} (one objective: no trade-off to show)"
        print(f"{title}, stopped by {result.stopped}:")
        print(front_table(store, space, objectives))
    print(f"\nrun saved in {result.run}; next: nas status {result.run} | nas report {result.run} | nas export {result.run} --out best/")


#: `nas search` flags that only mean something when candidates are trained (not for nb201:* tables)
TRAINING_FLAGS = (("epochs", "--epochs"), ("patience", "--patience"), ("time_limit", "--time-limit"),
                  ("no_cuda_graph", "--no-cuda-graph"), ("device", "--device"), ("latency_mode", "--latency-mode"),
                  ("latency_batch", "--latency-batch"), ("keep_weights", "--keep-weights"), ("data_seed", "--data-seed"),
                  ("data_dir", "--data-dir"), ("download", "--download"))


def check_search_flags(args: argparse.Namespace, tabular: bool) -> None:
    """Refuse flags that would be accepted and then ignored, then fill in the defaults."""
    if tabular:
        given = [flag for name, flag in TRAINING_FLAGS if getattr(args, name, None) not in (None, False)]
        if given:
            raise UsageError(f"{', '.join(given)}: not used with --data {args.data} (NAS-Bench-201's tables answer "
                             "without training); --latency-device picks the table's latency column")
    elif args.latency_mode == "cuda_graph" and not str(args.latency_device or "cpu").startswith("cuda"):
        raise UsageError("--latency-mode cuda_graph times latency on a GPU: add --latency-device cuda")
    if args.device is None:
        args.device = "auto"
    if args.data_seed is None:
        args.data_seed = 0
    if args.keep_weights is None:
        args.keep_weights = "all"


def parse_strategy_options(items: Iterable[str]) -> dict[str, Any]:
    """`--strategy-option KEY=VALUE` items as options: each value read as JSON, else kept as the
    string (also what `benchmarks/multifidelity.py --strategy-option` reads)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--strategy-option takes KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def cmd_search(args: argparse.Namespace) -> int:
    from . import objectives as objmod
    from .executors import default_workers
    from .search import SearchConfig, SearchInterrupted, space_config, start
    from .space import load_space
    from .tabular import parse_tabular

    tabular = parse_tabular(args.data)
    check_search_flags(args, tabular is not None)
    if args.budget is None and args.time_budget is None:
        args.budget = 40  # the default cap; --time-budget alone means no cap on candidates
    if args.scheduler == "none" and (args.min_epochs is not None or args.eta is not None):
        raise UsageError("--min-epochs and --eta apply only with --scheduler asha or hyperband")
    args.min_epochs = 1 if args.min_epochs is None else args.min_epochs
    args.eta = 3 if args.eta is None else args.eta
    space_spec = args.space or ("nb201" if tabular else "cnn")
    space = load_space(space_spec)
    objectives = objmod.parse_objectives(args.objectives)
    options: dict[str, Any] = {}
    for name in ("population", "sample"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    for flag, name in (("--reward", "reward"), ("--target-latency-ms", "target_latency_ms"), ("--target-params", "target_params")):
        if getattr(args, name) is not None:
            if args.strategy != "rl":
                raise UsageError(f"{flag} applies only to --strategy rl")
            options[name] = getattr(args, name)
    if args.predictor is not None:
        options["predictor"] = args.predictor
    elif args.strategy in ("evolution", "nsga2", "random"):
        options["predictor"] = "none"  # wrapped all the same: proposals of networks already seen are redrawn
    if args.warm_start is not None:
        options["warm_start"] = args.warm_start
    if args.warm_start_pool is not None:
        if args.warm_start is None:
            raise UsageError("--warm-start-pool applies only with --warm-start PROXY")
        options["warm_start_pool"] = args.warm_start_pool
    options.update(parse_strategy_options(args.strategy_option or ()))
    train = {k: v for k, v in (("max_epochs", args.epochs), ("patience", args.patience), ("time_limit", args.time_limit),
                               ("cuda_graph", False if args.no_cuda_graph else None)) if v is not None}
    latency = {k: v for k, v in (("device", args.latency_device), ("mode", args.latency_mode), ("batch", args.latency_batch)) if v is not None}
    config = SearchConfig(
        space=space_config(space), data=args.data, data_seed=args.data_seed, data_dir=args.data_dir, download=args.download,
        objectives=[o.name for o in objectives],
        constraints=objmod.parse_constraints(args.constraint), strategy=args.strategy, strategy_options=options,
        budget=args.budget, time_budget=args.time_budget, seed=args.seed, device=args.device, train=train, latency=latency,
        keep_weights=args.keep_weights, max_failures=args.max_failures, workers=args.workers or default_workers(args.backend), backend=args.backend,
        backend_options={k: v for k, v in (("address", args.address), ("share", args.share)) if v},
        scheduler=args.scheduler, min_epochs=args.min_epochs, eta=args.eta,
    )
    with start(config, args.run, objectives=objectives, progress=not args.no_progress) as session:
        print(f"run {session.store.path}: {space.name} on {args.data}, strategy {session.strategy.name}, objectives {', '.join(config.objectives)}, budget {config.budget}")
        try:
            result = session.run()
        except SearchInterrupted as exc:  # Ctrl-C or SIGTERM: the run is saved, which is no error
            return _stopped_by_signal(exc)
    _print_end(result, session.space)
    return 0


def _stopped_by_signal(exc: Any) -> int:
    """Say the run is saved and exit with 128 + the signal. Further Ctrl-C or SIGTERM are
    ignored from here on: the run is already saved, and one arriving while the interpreter shuts
    down would otherwise end the process by the signal instead of this exit code."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    print(f"nas: {exc}", file=sys.stderr)
    return 128 + int(exc.signum)


def cmd_resume(args: argparse.Namespace) -> int:
    from .search import SearchInterrupted, resume

    with resume(args.run, budget=args.budget, time_budget=args.time_budget, progress=not args.no_progress) as session:
        counts = session.store.counts()
        print(f"resuming {args.run}: {counts['complete'] + counts['failed'] + counts['infeasible']} finished, {counts['queued'] + counts['running']} to evaluate again")
        try:
            result = session.run()
        except SearchInterrupted as exc:  # Ctrl-C or SIGTERM: the run is saved, which is no error
            return _stopped_by_signal(exc)
    _print_end(result, session.space)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import time as _time

    from . import objectives as objmod

    from .runs import Run

    if args.run is None:  # the latest run under runs/
        from .trials import latest_run

        args.run = str(latest_run("runs"))

    opened = Run(args.run)
    store, config, space, objectives = opened.store, opened.config, opened.space, opened.objectives
    with store:
        counts = store.counts()
        evaluated = counts["complete"] + counts["failed"] + counts["infeasible"] - counts["duplicates"]
        cands = store.candidates()
        front = objmod.front(cands, objectives)
        running = [c for c in cands if c.state == "running"]
        # live or dead: the writer holds the run's lock for as long as it runs (kill -9 drops it)
        writer, state, elapsed, stopped = opened.writer, opened.state(), opened.elapsed(), store.meta("stopped")
        if state == "stopped" and stopped is None:
            stopped = "killed"  # the writer is gone without saying why: killed (kill -9, power cut) or crashed
        distinct = {s: sum(1 for c in cands if c.state == s and c.duplicate_of is None) for s in ("complete", "failed", "infeasible")}
        trained = distinct["complete"] + distinct["failed"]  # what the budget counts
        resume_hint = f"nas resume {store.path}" if state == "stopped" else None
        hv = objmod.hypervolume(cands, objectives) if len(objectives) > 1 else None
        from .schedulers import candidate_history, describe_why, read_rungs, rung_summary, rung_table

        rungs = read_rungs(store)
        if args.candidate is not None:
            if store.candidate(args.candidate) is None:
                raise UsageError(f"{store.path}: no candidate #{args.candidate}")
            history = candidate_history(rungs, args.candidate)
            if args.json:
                print(json.dumps({"id": args.candidate, "rungs": history}, indent=2, default=str))
            elif not history:
                print(f"#{args.candidate} has no rungs (the run has no scheduler, or the candidate was not trained)")
            else:
                for h in history:
                    acc = f"{h['val_accuracy']:.4f}" if h["val_accuracy"] is not None else "-"
                    print(f"#{args.candidate} bracket {h['bracket']} rung {h['rung']} ({h['epochs']} epochs): {h['state']}, val acc {acc}"
                          + (f"; {describe_why(h['why'])}" if h["why"] else ""))
            return 0
        if args.json:
            print(json.dumps({
                "run": str(store.path), "space": space.name, "data": config.data, "strategy": config.strategy,
                "objectives": config.objectives, "budget": config.budget, "evaluated": evaluated, "trained": trained, "counts": counts,
                "state": state, "writer_pid": writer.pid if writer.alive else None, "stopped": None if state == "running" else stopped,
                "resume": resume_hint, "elapsed_s": elapsed, "hypervolume": hv,
                **({"scheduler": config.scheduler, "rungs": rung_summary(rungs, config.eta, store.meta("ladders"))} if rungs else {}),
                "running": [{"id": c.id, "worker": c.worker, "since": c.started} for c in running] if writer.alive else [],
                "to_evaluate_again": [c.id for c in running] if not writer.alive else [],
                "front": [{"id": c.id, "key": c.key, "objectives": dict(zip(config.objectives, c.objectives or ())), "metrics": c.metrics,
                           "test": c.test, "arch": c.arch, "derived_from": c.derived_from, "derivation": c.derivation} for c in front],
            }, indent=2, default=str))
            return 0
        print(f"run        {store.path}")
        print(f"space      {space.name} on {config.data}; strategy {config.strategy}; objectives {', '.join(config.objectives)}")
        print(f"progress   {trained}/{config.budget if config.budget else '-'} trained"
              f" ({distinct['complete']} complete, {distinct['failed']} failed; {distinct['infeasible']} infeasible proposals not trained;"
              f" {counts['duplicates']} more answered from the store)")
        if state == "running":
            print(f"state      running (pid {writer.pid or '?'})")
        elif state == "finished":
            print(f"state      finished (stopped by {stopped})")
        else:
            why = {"interrupted": "interrupted (Ctrl-C)", "terminated": "terminated (SIGTERM)",
                   "killed": "not running: the search was killed or crashed",
                   "error": f"stopped by an error: {store.meta('error')}"}.get(stopped, str(stopped))
            print(f"state      {why}; resume with: {resume_hint}")
        print(f"time       {elapsed:.0f} s of search" + (f" (time budget {config.time_budget:.0f} s)" if config.time_budget else ""))
        hv_text = objmod.hypervolume_text(cands, objectives)
        if hv_text is not None:
            print(f"hypervolume {hv_text}")
        for c in running:
            if writer.alive:
                print(f"running    #{c.id} on {c.worker or '?'} for {_time.time() - (c.started or _time.time()):.0f} s")
            else:
                print(f"was running #{c.id} on {c.worker or '?'} when the search stopped: evaluated again on resume")
        if counts["failed"]:
            last = [c for c in cands if c.state == "failed"][-1]
            print(f"last failure #{last.id}: {last.error}")
        if rungs:
            print(f"\nrungs ({config.scheduler}, eta {config.eta}; nas status RUN --candidate ID shows one candidate's rungs and why it stopped)")
            print(rung_table(rungs, config.eta, store.meta("ladders")))
        print()
        print(front_table(store, space, objectives, limit=args.limit))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = write_report(args.run, args.out)
    for path in paths.values():
        print(path)
    return 0


# -- nas trials / runs / dashboard ----------------------------------------------------------
def cmd_trials(args: argparse.Namespace) -> int:
    from . import trials as trialmod
    from .runs import Run
    from .store import STATES

    states = None
    if args.state:
        states = [s.strip() for s in args.state.split(",") if s.strip()]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise UsageError(f"--state: unknown state {bad[0]!r}; use {', '.join(STATES)} (comma-separated)")
    with Run(args.run) as run:
        sort = f"-{args.sort.lstrip('-')}" if args.sort and args.desc else args.sort
        rows = trialmod.trials(run, states=states, sort=sort, limit=args.limit)
        cols = trialmod.columns(run.objectives)
        if args.csv:
            sys.stdout.write(trialmod.to_csv(rows, cols))
        elif args.json:
            print(json.dumps(rows, indent=1, default=str))
        elif not rows:
            print("no candidates" + (f" in state {args.state}" if args.state else "") + " yet")
        else:
            print(trialmod.text_table(rows, run.objectives))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from . import trials as trialmod

    paths = trialmod.find_runs(args.dir)
    if not paths:
        print(f"no runs in {args.dir}")
        return 0
    records = trialmod.run_listing(paths)
    if args.json:
        print(json.dumps(records, indent=1, default=str))
    else:
        print(trialmod.runs_table(records))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import serve

    serve(args.target, host=args.host, port=args.port)
    return 0


# -- parser ----------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    formats = tuple(f.strip() for f in (args.format or "").split(",") if f.strip())
    done = export(args.run, args.out, pick=args.pick, max_params=args.max_params, max_latency_ms=args.max_latency_ms,
                  retrain=args.retrain, formats=formats, device=args.device, progress=True, force=args.force, distill=args.distill)
    m, t, r = done["metrics"], done["test"], done["retrained"]
    print(f"exported candidate {done['candidate']}: {done['summary']}")
    scores = [f"val acc {m['val_accuracy']:.4f}" if "val_accuracy" in m else "", f"test acc {t['test_accuracy']:.4f}" if t.get("test_accuracy") is not None else "",
              f"retrained test acc {r['test_accuracy']:.4f}" if r else "", f"params {m['params']:,}" if "params" in m else ""]
    print("  " + "  ".join(x for x in scores if x))
    for name, path in done["files"].items():
        print(f"  {path}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from .compress import compress

    made = compress(args.run, pick=args.pick, prune=args.prune, importance=args.importance, quantize=args.quantize,
                    distill=args.distill, epochs=args.epochs, temperature=args.temperature, alpha=args.alpha,
                    seed=args.seed, device=args.device)
    rows = []
    for c in made:
        m, t = c.metrics, c.test or {}
        rows.append([c.id, c.derivation, f"{m['val_accuracy']:.4f}", f"{t['test_accuracy']:.4f}" if "test_accuracy" in t else "-",
                     f"{m['params']:,}", f"{m['size_bytes']:,}", f"{m['latency_ms']:.3f}", f"{m['parent_latency_ms']:.3f}",
                     f"{m['latency_speedup']:.2f}x" if m.get("latency_speedup") else "-"])
    print()
    print(table(rows, ["id", "derivation", "val acc", "test acc", "params", "bytes", "lat ms", "parent ms", "speed-up"], "rlrrrrrrr"))
    print(f"\nrecorded in {args.run}; next: nas status {args.run} | nas export {args.run} --pick {made[-1].id} --out DIR")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Neural architecture search: search spaces, search, training, export.")
    parser.add_argument("--version", action="version", version=f"nas {__import__('nas').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    spaces = sub.add_parser("spaces", help="list, validate, show and sample search spaces")
    ssub = spaces.add_subparsers(dest="spaces_command", metavar="ACTION", parser_class=_Parser)
    ssub.required = True

    def retarget(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input", type=_shape, help="input shape to check against instead of the space's, e.g. 1,8,8")
        p.add_argument("--classes", type=_positive_int, help="number of classes instead of the space's")

    p = ssub.add_parser("list", help="the spaces shipped with nas")
    p.set_defaults(func=cmd_spaces_list)
    p = ssub.add_parser("validate", help="check space files; errors name the file, the field and the reason")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--samples", type=_positive_int, default=64, help="random architectures to shape-check (default 64)")
    retarget(p)
    p.set_defaults(func=cmd_spaces_validate)
    p = ssub.add_parser("show", help="the decisions of a space and its size")
    p.add_argument("file", metavar="FILE", help="a YAML file or a shipped space name")
    p.add_argument("--json", action="store_true")
    retarget(p)
    p.set_defaults(func=cmd_spaces_show)
    p = ssub.add_parser("sample", help="random architectures with their params and FLOPs")
    p.add_argument("file", metavar="FILE", help="a YAML file or a shipped space name")
    p.add_argument("--n", type=_positive_int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--full", action="store_true", help="wrap long architectures instead of cutting them to the terminal's width")
    retarget(p)
    p.set_defaults(func=cmd_spaces_sample)

    p = sub.add_parser("train", help="train one architecture and print an epoch-by-epoch table")
    p.add_argument("space", metavar="SPACE", help="a YAML file or a shipped space name")
    p.add_argument("--arch", required=True, help="JSON file or text, a NAS-Bench-201 string, label=value pairs, or random[:SEED]")
    p.add_argument("--data", help="digits, mnist5k, a .npz file, an image folder, ... (default: the run's for an export's arch.json, else digits)")
    p.add_argument("--data-seed", type=int, help="seed of the train/val/test split (default: the run's, else 0)")
    p.add_argument("--data-dir", help="folder of torchvision datasets (default $NAS_DATA_DIR or ~/.cache/nas/data)")
    p.add_argument("--download", action="store_true", help="download a torchvision dataset that is not there yet")
    p.add_argument("--epochs", type=_positive_int, help="cap on the architecture's epochs (default: the run's cap, if any)")
    p.add_argument("--patience", type=_positive_int, help="early-stopping patience in epochs (default: the run's, else 5)")
    p.add_argument("--time-limit", type=float, help="seconds of training at most")
    _graph_flag(p)
    p.add_argument("--seed", type=int, help="training seed (default: the seed the run trained this network with, else 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--latency", action="store_true", help="also measure batch-1 latency")
    p.add_argument("--test", action="store_true", help="also report test accuracy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)

    def run_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--budget", type=_positive_int, help="evaluations of distinct architectures")
        p.add_argument("--time-budget", type=_duration, help="wall-clock limit of the search: 600, 90s, 15m, 2h")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("search", help="run an architecture search (defaults: a real search on digits)")
    p.add_argument("--space", help="a YAML file or a shipped space (default: cnn; nb201 for --data nb201:*)")
    p.add_argument("--data", default="digits", help="digits (default), mnist5k, a .npz file, an image folder, or nb201:cifar10|cifar100|imagenet16")
    p.add_argument("--data-seed", type=int, help="seed of the train/val/test split (default 0)")
    p.add_argument("--data-dir", help="folder of torchvision datasets (default $NAS_DATA_DIR or ~/.cache/nas/data)")
    p.add_argument("--download", action="store_true", help="download a torchvision dataset that is not there yet")
    p.add_argument("--objectives", default="accuracy,params", help="comma-separated: accuracy, params, flops, latency (default accuracy,params)")
    p.add_argument("--constraint", action="append", metavar="EXPR", help="e.g. params<=200000, flops<=5e6, latency<=2ms (repeatable)")
    p.add_argument("--strategy", default="auto", help="auto (evolution for one objective, nsga2 for more, with --predictor ensemble), random, evolution, nsga2, rl")
    p.add_argument("--population", type=_positive_int, help="population size of evolution / nsga2")
    p.add_argument("--sample", type=_positive_int, help="tournament sample size of evolution")
    p.add_argument("--reward", choices=("accuracy", "mnas"), help="rl: reward accuracy (default) or MnasNet's accuracy * (cost / target) ** w")
    p.add_argument("--target-latency-ms", type=_positive_number, metavar="MS", help="rl --reward mnas: latency target (needs the latency objective)")
    p.add_argument("--target-params", type=_positive_number, metavar="N", help="rl --reward mnas: parameter-count target (needs the params objective)")
    p.add_argument("--predictor", choices=("ensemble", "none"), help="evolution, nsga2, random: train the best of many proposals by an ensemble's prediction (auto: ensemble)")
    p.add_argument("--warm-start", choices=("synflow", "naswot", "grad_norm", "snip", "jacob_cov"), metavar="PROXY",
                   help="first proposals: the best of --warm-start-pool samples by a zero-cost proxy (synflow, naswot, grad_norm, snip, jacob_cov)")
    p.add_argument("--warm-start-pool", type=_positive_int, metavar="N", help="architectures scored for --warm-start (default 100)")
    p.add_argument("--strategy-option", action="append", metavar="KEY=VALUE", help="any other strategy option (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", help="run directory (default runs/<space>-<data>-<time>)")
    p.add_argument("--device", help="training device: auto (default), cpu, cuda, cuda:N")
    p.add_argument("--epochs", type=_positive_int, help="cap on each candidate's training epochs")
    p.add_argument("--patience", type=_positive_int, help="early-stopping patience (default 5)")
    p.add_argument("--time-limit", type=_duration, help="training time limit per candidate")
    p.add_argument("--scheduler", choices=("none", "asha", "hyperband"), default="none",
                   help="epochs per candidate: none (each trains to its maximum, the default), asha or hyperband (rungs of --min-epochs * --eta^k)")
    p.add_argument("--min-epochs", type=_positive_int, help="with --scheduler: epochs of the first rung (default 1)")
    p.add_argument("--eta", type=_positive_int, help="with --scheduler: reduction factor, the top 1/eta of a rung go on (default 3)")
    _graph_flag(p)
    p.add_argument("--latency-device", help="latency measured on: cpu (default) or cuda; for nb201:* a table column such as 1080ti_bs1_ms")
    p.add_argument("--latency-mode", choices=("eager", "cuda_graph"), help="on CUDA: eager (default) or cuda_graph latency")
    p.add_argument("--latency-batch", type=_positive_int, help="batch size of latency measurements (default 1)")
    p.add_argument("--keep-weights", choices=("all", "front", "none"), help="trained weights to keep (default all)")
    p.add_argument("--max-failures", type=_positive_int, default=10, help="stop after this many failures in a row (default 10)")
    p.add_argument("--workers", type=_positive_int, help="parallel evaluations with --backend process or ray (default: one per GPU here, or 1)")
    p.add_argument("--backend", default="inline", help="inline (default), process or ray")
    p.add_argument("--address", help="Ray cluster address for --backend ray (auto, HOST:PORT); default: a local Ray")
    p.add_argument("--share", choices=("auto", "thread", "process"),
                   help="--backend process: workers on one device as threads of one process (thread; auto does so on GPUs, "
                        "where their kernels then overlap) or a process each")
    run_opts(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="carry on a stopped or crashed run; nothing finished is redone")
    p.add_argument("run", metavar="RUN")
    run_opts(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="progress, best so far and the Pareto front of a run")
    p.add_argument("run", metavar="RUN", nargs="?", help="a run directory (default: the latest run under runs/)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_positive_int, help="show at most this many front members")
    p.add_argument("--candidate", type=_positive_int, metavar="ID", help="one candidate's rungs (with a scheduler) and why it stopped")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("trials", help="every candidate of a run, one row each (table, --csv or --json)")
    p.add_argument("run", metavar="RUN")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV with every column (arch as JSON), for spreadsheets and pandas")
    fmt.add_argument("--json", action="store_true", help="a JSON list of flat rows (the same columns)")
    p.add_argument("--state", help="only candidates in these states: queued, running, complete, failed, infeasible (comma-separated)")
    p.add_argument("--sort", metavar="COLUMN", help="sort by a column (e.g. obj_accuracy, params, seconds); --sort=-COLUMN or --desc for descending")
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N rows (after sorting)")
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("runs", help="the runs under a directory: space, data, strategy, progress, running/stopped/finished")
    p.add_argument("dir", metavar="DIR", nargs="?", default="runs", help="directory of runs (default runs/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("dashboard", help="a live local web page of a run (or of every run under a directory), read-only")
    p.add_argument("target", metavar="RUN|DIR", nargs="?", default="runs", help="a run directory or a directory of runs (default runs/)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="plots and a self-contained HTML page of a run (default into RUN/report/)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", metavar="DIR", help="directory to write pareto.png, progress.png and index.html into (default RUN/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a run's chosen network: arch.json, weights, a standalone model.py")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--pick", default="near-best", help="near-best (default: the smallest network within 0.01 validation accuracy of the best), knee, best-accuracy, or a candidate id")
    p.add_argument("--max-params", type=float, help="pick among candidates with at most this many parameters")
    p.add_argument("--max-latency-ms", type=float, help="pick among candidates with at most this latency")
    p.add_argument("--retrain", type=_positive_int, metavar="EPOCHS", help="train the pick afresh on train+validation first and report its test accuracy")
    p.add_argument("--distill", nargs="?", const="best-accuracy", metavar="TEACHER",
                   help="with --retrain: by knowledge distillation from TEACHER (a candidate id; default best-accuracy)")
    p.add_argument("--format", help="also write torchscript and/or onnx (comma-separated)")
    p.add_argument("--device", default="auto", help="device for --retrain")
    p.add_argument("--out", required=True, metavar="DIR", help="empty, new, or an earlier export of the same candidate (replaced whole)")
    p.add_argument("--force", action="store_true", help="replace --out whatever it holds (as a whole: no stale files stay)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compress", help="prune, fine-tune (with distillation) and quantise a candidate; results join the run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--pick", default="knee", help="knee (default), best-accuracy, near-best, or a candidate id")
    p.add_argument("--prune", type=float, metavar="RATIO", help="remove this share of the channels of every prunable group, in (0, 1), then fine-tune")
    p.add_argument("--importance", default="l1", choices=("l1", "l2", "taylor"), help="channel importance for --prune (default l1: filter norms)")
    p.add_argument("--distill", nargs="?", const="best-accuracy", metavar="TEACHER",
                   help="fine-tune with knowledge distillation from TEACHER (a candidate id; default best-accuracy)")
    p.add_argument("--quantize", metavar="int8", help="int8 post-training quantisation for CPU, last")
    p.add_argument("--epochs", type=_positive_int, help="fine-tuning epochs (default: as many as the run trained the candidate)")
    p.add_argument("--temperature", type=_positive_number, help="distillation temperature (default 4)")
    p.add_argument("--alpha", type=float, help="weight of the distillation term, in [0, 1] (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of fine-tuning and calibration")
    p.add_argument("--device", help="training device (default: the run's)")
    p.set_defaults(func=cmd_compress)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NasError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
