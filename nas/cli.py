"""The `nas` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import NasError, UsageError
from .textfmt import human, table


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
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
    print()
    rows = [[d.label, d.kind, len(d.values), d.describe(), _condition_text(d)] for d in space.decisions]
    print(table(rows, ["decision", "kind", "n", "values", "active when"], "llrll"))
    return 0


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
        text = space.format_arch(arch)
        records.append({"key": arch.key, "params": params, "flops": flops, "arch": dict(arch)})
        rows.append([i, arch.key, f"{params:,}", human(flops), text if len(text) <= 100 or args.full else text[:97] + "..."])
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(table(rows, ["#", "key", "params", "flops", "architecture"], "rlrrl"))
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


def cmd_train(args: argparse.Namespace) -> int:
    from .evaluators import TrainingEvaluator

    space = _load(args.space)
    evaluator = TrainingEvaluator(args.data, device=args.device, data_seed=args.data_seed, latency=args.latency,
                                  max_epochs=args.epochs, patience=args.patience, time_limit=args.time_limit)
    space = evaluator.fit_space(space)
    arch = read_arch(space, args.arch)
    ds = evaluator.dataset
    if not args.json:
        print(f"data   {ds.summary()}")
        print(f"arch   {space.format_arch(arch)}")
        print(f"device {evaluator.device}\n")
        print(f"{'epoch':>5}  {'train loss':>10}  {'val loss':>9}  {'val acc':>8}  {'lr':>9}  {'seconds':>7}")

    def show(rec: dict[str, float]) -> None:
        if not args.json:
            print(f"{rec['epoch']:>5}  {rec['train_loss']:>10.4f}  {rec['val_loss']:>9.4f}  {rec['val_accuracy']:>8.4f}  {rec['lr']:>9.3g}  {rec['seconds']:>7.2f}", flush=True)

    result = evaluator.evaluate(space, arch, seed=args.seed, on_epoch=show)
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


# -- parser ----------------------------------------------------------------------------------
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
    p.add_argument("--full", action="store_true", help="do not shorten long architectures")
    retarget(p)
    p.set_defaults(func=cmd_spaces_sample)

    p = sub.add_parser("train", help="train one architecture and print an epoch-by-epoch table")
    p.add_argument("space", metavar="SPACE", help="a YAML file or a shipped space name")
    p.add_argument("--arch", required=True, help="JSON file or text, a NAS-Bench-201 string, label=value pairs, or random[:SEED]")
    p.add_argument("--data", default="digits", help="digits, mnist5k, a .npz file, an image folder, ... (default digits)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--epochs", type=_positive_int, help="cap on the architecture's epochs")
    p.add_argument("--patience", type=_positive_int, default=5, help="early-stopping patience in epochs (default 5)")
    p.add_argument("--time-limit", type=float, help="seconds of training at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--latency", action="store_true", help="also measure batch-1 latency")
    p.add_argument("--test", action="store_true", help="also report test accuracy")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)
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
