"""Compression as a stage of a run: prune, fine-tune (with or without distillation), quantise.

`nas compress RUN --pick knee --prune 0.5 --distill --quantize int8` takes the picked
candidate's trained weights from the run and applies the steps asked for in this fixed order:

1. prune (`nas.prune`: structured channel pruning, groups derived from the resolved network)
   and fine-tune for `--epochs` (default: as many as the run's schedule trains the candidate),
   with knowledge distillation from a teacher when `--distill` is given
   (`nas.train.fit(..., teacher=)`); `--distill` alone fine-tunes the unpruned network;
2. quantise to int8 (`nas.quantize`: FX graph mode, calibrated on training batches, batch norm
   folded, TorchScript).

Each step's result is recorded in the run as a new candidate: `derived_from` is the candidate it
came from and `derivation` says what was done (`pruned 0.5 of #29, fine-tuned 5 epochs,
distilled from #6`, `int8 of #41`). Its architecture values are those of the space architecture
it descends from; its network (the pruned spec) and what was done are in
`metrics["compression"]`. It is measured like any candidate (validation and test accuracy,
parameters, FLOPs, size in bytes, latency with the run's latency settings; the parent's
latency is measured again in the same process, `parent_latency_ms`), gets the run's objective
values and joins the front.

A step that already finished (same parent, same settings) is not redone: running the same
command again after a kill redoes only the step that was cut off. The run's writer lock is held
throughout, so no search writes the run at the same time.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .atomic import write_bytes
from .errors import UsageError
from .store import Candidate, RunError, RunStore

QUANTIZE = ("int8",)  # torch loads only when a step runs: status and report stay fast


@dataclass(frozen=True)
class Compressed:
    """What a run records about a compressed candidate (`metrics["compression"]`)."""

    net: dict[str, Any]  # the resolved network spec (pruned widths)
    int8: bool
    parent: int
    info: dict[str, Any]

    def network(self) -> Any:
        """The float network with fresh weights (for an int8 candidate: the one it quantises)."""
        from .ops import Network

        return Network(self.net)


def compressed(cand: Candidate) -> Compressed | None:
    """The compression record of a candidate, or None for a candidate of the search."""
    info = (cand.metrics or {}).get("compression")
    if not isinstance(info, Mapping) or "net" not in info:
        return None
    return Compressed(info["net"], info.get("quantized") == "int8", int(info["parent"]), dict(info))


def int8_path(store: RunStore, cid: int) -> Path:
    return store.weights_dir / f"{cid}.int8.pt"


def candidate_net(space: Any, cand: Candidate) -> dict[str, Any]:
    """The resolved network of any candidate: its compressed spec, or its architecture's."""
    comp = compressed(cand)
    return comp.net if comp is not None else space.resolve(space.make(cand.arch)).net


# -- helpers ----------------------------------------------------------------------------------
def _key(parent: Candidate, what: Mapping[str, Any]) -> str:
    text = json.dumps({"parent": parent.id, "parent_key": parent.key, **what}, sort_keys=True, default=str)
    return "c" + hashlib.sha256(text.encode()).hexdigest()[:15]


def _state_bytes(state: Mapping[str, Any]) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def complete_candidate(store: RunStore, cid: int | str, need: str, what: str | None = None) -> Candidate:
    """Candidate `cid` of the run, which must be complete: a UsageError otherwise, ending in
    `need` (`--pick takes a complete candidate`), the option `what` named when it is missing.
    `nas compress` and `nas export` pick by id through this."""
    cand = store.candidate(int(cid))
    if cand is None:
        raise UsageError(f"{store.path}: no candidate {cid} in this run" + (f" ({what})" if what else ""))
    if cand.state != "complete":
        why = f" ({cand.error})" if cand.error else ""
        raise UsageError(f"{store.path}: candidate {cid} is {cand.state}{why}; {need}")
    return cand


def _pick(store: RunStore, objectives: list[Any], pick: str, what: str = "--pick") -> Candidate:
    from . import objectives as objmod

    pick = str(pick)
    if pick.isdigit():
        return complete_candidate(store, pick, f"{what} takes a complete candidate", what)
    if pick not in objmod.PICKS:
        raise UsageError(f"{what} takes {', '.join(objmod.PICKS)} or a candidate id, got {pick!r}")
    # a rule picks among the search's own candidates, so that the same command picks the same
    # candidate after its results have joined the run (and a rerun finds its steps done)
    return objmod.pick([c for c in store.candidates(["complete"]) if c.derived_from is None], objectives, pick)


def _weights_of(store: RunStore, cand: Candidate, tabular: bool, what: str) -> None:
    if tabular:
        raise UsageError(f"{store.path}: the run read NAS-Bench-201's tables and trained nothing; there are no weights to compress")
    if not store.weights_path(cand.weights_id).exists():
        raise UsageError(f"{store.path}: {what} #{cand.id} has no trained weights (the run kept none: --keep-weights)")


# -- the command ------------------------------------------------------------------------------
def compress(run: str | Path, *, pick: str = "knee", prune: float | None = None, importance: str = "l1",
             quantize: str | None = None, distill: str | None = None, epochs: int | None = None,
             temperature: float | None = None, alpha: float | None = None, seed: int = 0, device: str | None = None,
             calibration_batches: int = 16, log: Callable[[str], None] | None = print) -> list[Candidate]:
    """Compress one candidate of `run` (see the module docstring); returns the candidates made
    (or found already made), in step order. Bad input raises UsageError before anything is recorded."""
    from .prune import IMPORTANCES

    say = log or (lambda s: None)
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0.0 < prune < 1.0):
        raise UsageError(f"--prune takes a ratio in (0, 1) (the share of channels removed), got {prune!r}")
    if importance not in IMPORTANCES:
        raise UsageError(f"--importance takes {', '.join(IMPORTANCES)}, got {importance!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise UsageError(f"--quantize takes {', '.join(QUANTIZE)}, got {quantize!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise UsageError(f"--epochs takes a positive number of epochs, got {epochs!r}")
    if prune is None and quantize is None and distill is None:
        raise UsageError("nothing to do: give --prune RATIO, --distill [TEACHER] and/or --quantize int8")
    if temperature is not None and not temperature > 0:
        raise UsageError(f"--temperature must be positive, got {temperature!r}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {alpha!r}")
    fine_tune = prune is not None or distill is not None

    from .runs import Run
    from .tabular import parse_tabular

    path = Path(run)
    with Run(path) as opened:  # checks it is a run; config, space and objectives as the run stores them
        config, space, objectives = opened.config, opened.space, opened.objectives
    store = RunStore.open(path, write=True)  # the run's one writer while compressing
    try:
        tabular = parse_tabular(config.data) is not None
        cand = _pick(store, objectives, pick)
        _weights_of(store, cand, tabular, "candidate")
        comp = compressed(cand)
        if comp is not None and comp.int8:
            raise UsageError(f"{store.path}: candidate {cand.id} is int8 ({cand.derivation or 'quantised'}); prune, fine-tune or "
                             f"quantise its float parent #{comp.parent} instead")
        teacher = None
        if distill is not None:
            teacher = _pick(store, objectives, distill, "--distill")
            _weights_of(store, teacher, tabular, "teacher")
            tcomp = compressed(teacher)
            if tcomp is not None and tcomp.int8:
                raise UsageError(f"{store.path}: teacher #{teacher.id} is int8; distil from a float candidate (its parent #{tcomp.parent})")
        job = _Job(store, config, space, objectives, device, seed, say)
        made: list[Candidate] = []
        current = cand
        if fine_tune:
            current = job.fine_tune(current, prune, importance, teacher, epochs, temperature, alpha)
            made.append(current)
        if quantize is not None:
            current = job.quantize(current, calibration_batches)
            made.append(current)
        return made
    finally:
        store.close()


class _Job:
    """One `nas compress` session: the run's data and settings, loaded once."""

    def __init__(self, store: RunStore, config: Any, space: Any, objectives: list[Any], device: str | None, seed: int,
                 say: Callable[[str], None]) -> None:
        self.store, self.config, self.space, self.objectives = store, config, space, objectives
        self.device = device or config.device
        self.seed = seed
        self.say = say
        self._evaluator: Any = None
        self._cpu_data: Any = None

    # -- lazily loaded
    @property
    def evaluator(self) -> Any:
        if self._evaluator is None:
            from .evaluators import TrainingEvaluator

            c = self.config
            lat = c.latency
            options = {k: v for k, v in c.train.items() if k not in ("max_epochs", "patience", "time_limit")}
            self._evaluator = TrainingEvaluator(
                c.data, device=self.device, data_seed=c.data_seed, data_dir=c.data_dir, download=False,
                latency=True, latency_device=lat.get("device", "cpu"), latency_batch=lat.get("batch", 1),
                latency_mode=lat.get("mode", "eager"), latency_threads=lat.get("threads", 1), **options)
        return self._evaluator

    @property
    def cpu_data(self) -> Any:
        ev = self.evaluator
        if ev.data.device.type == "cpu":
            return ev.data
        if self._cpu_data is None:
            from .train import DeviceData

            self._cpu_data = DeviceData(ev.dataset, "cpu")
        return self._cpu_data

    def _float_model(self, cand: Candidate) -> Any:
        from .ops import Network
        from .train import unwrap_state

        net = Network(candidate_net(self.space, cand))
        net.load_state_dict(unwrap_state(self.store.load_weights(cand.weights_id)))
        return net.eval()

    def _train_cfg(self, cand: Candidate, **over: Any) -> Any:
        from .train import TrainConfig

        train = self.space.resolve(self.space.make(cand.arch)).train
        options = {k: v for k, v in self.config.train.items() if k not in ("max_epochs", "patience", "time_limit", "epochs")}
        return TrainConfig.for_arch(train, device=str(self.evaluator.device), **{**options, **over})

    def _existing(self, key: str) -> Candidate | None:
        """A finished step with this key (reused), or one cut off before it was recorded (its id reused)."""
        for c in self.store.candidates():
            if c.key == key:
                return c
        return None

    # -- steps
    def search_epochs(self, cand: Candidate) -> int:
        """The epochs the run's schedule trains `cand`'s architecture (its `epochs`, capped by the
        run's max_epochs): the default length of a fine-tune. A network pruned 0.5 is near chance
        before it, and there 12 epochs won back more than 8 (benchmarks/results/compression_cpu.txt)."""
        from .train import TrainConfig

        train = self.space.resolve(self.space.make(cand.arch)).train
        return TrainConfig.for_arch(train, max_epochs=self.config.train.get("max_epochs")).total_epochs

    def fine_tune(self, parent: Candidate, ratio: float | None, importance: str, teacher: Candidate | None, epochs: int | None,
                  temperature: float | None, alpha: float | None) -> Candidate:
        from .prune import prune as prune_net
        from .prune import taylor_grads
        from .train import fit

        epochs = epochs or self.search_epochs(parent)
        over: dict[str, Any] = {"epochs": epochs, "patience": None, "seed": self.seed}
        if temperature is not None:
            over["distill_temperature"] = float(temperature)
        if alpha is not None:
            over["distill_alpha"] = float(alpha)
        cfg = self._train_cfg(parent, **over)
        what = {"step": "fine-tune", "prune": ratio, "importance": importance if ratio else None, "epochs": epochs,
                "teacher": teacher.id if teacher else None, "seed": self.seed,
                "T": cfg.distill_temperature if teacher else None, "alpha": cfg.distill_alpha if teacher else None}
        parts = [f"pruned {ratio:g} of #{parent.id}" + ("" if importance == "l1" else f" ({importance})"), f"fine-tuned {epochs} epochs"] if ratio \
            else [f"fine-tuned {epochs} epochs from #{parent.id}"]
        if teacher is not None:
            parts.append(f"distilled from #{teacher.id}")
        derivation = ", ".join(parts)
        key = _key(parent, what)
        done = self._existing(key)
        if done is not None and done.state == "complete":
            self.say(f"#{done.id} {derivation}: done before, kept")
            return done
        t0 = time.perf_counter()
        self.say(f"{derivation} ...")
        float_parent = self._float_model(parent)
        spec = candidate_net(self.space, parent)
        state = {k: v.detach().cpu() for k, v in float_parent.state_dict().items()}
        info: dict[str, Any] = {"parent": parent.id, "epochs": epochs, "seed": self.seed}
        if ratio:
            grads = None
            if importance == "taylor":
                import torch

                x, y = self.evaluator.data.split("train")
                gen = torch.Generator().manual_seed(self.seed)
                idx = torch.randperm(int(y.shape[0]), generator=gen)[:8 * 64].to(x.device)
                float_parent.to(x.device)
                grads = taylor_grads(float_parent, [(x[idx[i:i + 64]], y[idx[i:i + 64]]) for i in range(0, len(idx), 64)])
                grads = {k: v.cpu() for k, v in grads.items()}
                float_parent.cpu()
            pruned = prune_net(spec, state, ratio, importance, grads)
            spec, state = pruned.spec, pruned.state
            info["prune"] = {"ratio": ratio, "importance": importance, "groups": pruned.groups}
        from .ops import Network

        student = Network(spec)
        student.load_state_dict(state)
        teacher_net = None
        if teacher is not None:
            teacher_net = self._float_model(teacher)
            info["teacher"] = teacher.id
            info["temperature"] = cfg.distill_temperature
            info["alpha"] = cfg.distill_alpha
        result = fit(student, self.evaluator.data, cfg, teacher=teacher_net,
                     on_epoch=lambda r: self.say(f"  epoch {r['epoch']}/{epochs}: val acc {r['val_accuracy']:.4f}"))
        new_state = {k: v.detach().cpu() for k, v in student.state_dict().items()}
        student.cpu().eval()
        info["net"] = spec
        metrics = {k: v for k, v in result.metrics().items() if k not in ("seconds",)}
        metrics.update(self._measure(student, float_parent.cpu(), self.evaluator.data, file_bytes=len(_state_bytes(new_state))))
        metrics["compression"] = info
        metrics["seconds"] = time.perf_counter() - t0
        return self._record(parent, key, derivation, metrics, weights=new_state, existing=done)

    def quantize(self, parent: Candidate, batches: int) -> Candidate:
        from .quantize import calibration_batches, example_input, load_int8, quantize_int8

        what = {"step": "int8", "batches": batches, "seed": self.seed}
        derivation = f"int8 of #{parent.id}"
        key = _key(parent, what)
        done = self._existing(key)
        if done is not None and done.state == "complete" and int8_path(self.store, done.id).exists():
            self.say(f"#{done.id} {derivation}: done before, kept")
            return done
        t0 = time.perf_counter()
        self.say(f"{derivation} ...")
        float_net = self._float_model(parent).cpu()
        x, _ = self.cpu_data.split("train")
        program = quantize_int8(float_net, calibration_batches(x, batches, 64, self.seed), example_input(self.space.input_shape))
        q = load_int8(program)  # measured as an export loads it
        spec = candidate_net(self.space, parent)
        metrics = self._measure(q, float_net, self.cpu_data, file_bytes=len(program), float_for_counts=float_net, cpu=True)
        metrics["compression"] = {"parent": parent.id, "net": spec, "quantized": "int8", "calibration_batches": batches,
                                  "engine": __import__("nas.quantize", fromlist=["engine"]).engine(), "seed": self.seed}
        metrics["seconds"] = time.perf_counter() - t0
        weights = {k: v.detach().cpu() for k, v in float_net.state_dict().items()}  # the float network it quantises
        return self._record(parent, key, derivation, metrics, weights=weights, program=program, existing=done)

    # -- measuring and recording
    def _measure(self, model: Any, parent_model: Any, data: Any, *, file_bytes: int, float_for_counts: Any = None,
                 cpu: bool = False) -> dict[str, Any]:
        from .measure import count_flops, count_params, measure_latency
        from .train import TrainConfig, evaluate

        cfg = TrainConfig(device=str(data.device))
        counted = float_for_counts if float_for_counts is not None else model
        shape = self.space.input_shape
        out: dict[str, Any] = {}
        model_dev = model if cpu else model.to(data.device)
        out["val_loss"], out["val_accuracy"] = evaluate(model_dev, data, "val", cfg)
        test_loss, test_acc = evaluate(model_dev, data, "test", cfg)
        out["test"] = {"test_loss": test_loss, "test_accuracy": test_acc}
        if not cpu:
            model.cpu()
        out["params"] = count_params(counted)
        out["flops"] = count_flops(counted, shape)
        out["size_bytes"] = int(file_bytes)
        lat = dict(self.evaluator.latency_options)
        if cpu and lat.get("device", "cpu") != "cpu":
            lat.update(device="cpu", mode="eager")  # int8 kernels are CPU kernels
        # the same process, the same settings, alternately 3 times each: the lowest median of each
        # is kept (other work on the machine only ever adds time)
        runs = [(measure_latency(model, shape, **lat), measure_latency(parent_model, shape, **lat)) for _ in range(3)]
        mine = min((r[0] for r in runs), key=lambda m: m.median_ms)
        theirs = min((r[1] for r in runs), key=lambda m: m.median_ms)
        out.update(latency_ms=mine.median_ms, latency_iqr_ms=mine.iqr_ms, latency_mode=mine.mode,
                   latency_device=mine.hardware.get("device_name"), parent_latency_ms=theirs.median_ms,
                   latency_speedup=theirs.median_ms / mine.median_ms if mine.median_ms > 0 else None)
        return out

    def _record(self, parent: Candidate, key: str, derivation: str, metrics: dict[str, Any], *, weights: Mapping[str, Any],
                program: bytes | None = None, existing: Candidate | None = None) -> Candidate:
        from . import objectives as objmod

        test = metrics.pop("test")
        values = [o.value(metrics, parent.arch) for o in self.objectives]
        objectives = [float(v) for v in values] if all(v is not None for v in values) else None
        constraints = {**self.space.constraints, **self.config.constraints}
        violation = objmod.violation(metrics, constraints)
        store = self.store
        cid = existing.id if existing is not None else store.add(key, dict(parent.arch), generation=parent.generation, parents=[parent.id],
                                                                   derived_from=parent.id, derivation=derivation)
        if program is not None:
            write_bytes(int8_path(store, cid), program, durable=True)
        store.finish(cid, "complete", metrics=metrics, objectives=objectives, violation=violation, weights=weights)
        store.set_test(cid, test)
        cand = store.candidate(cid)
        assert cand is not None
        self.say(f"#{cid} {derivation}: val acc {metrics['val_accuracy']:.4f}  test acc {test['test_accuracy']:.4f}  "
                 f"params {metrics['params']:,}  size {metrics['size_bytes']:,} B  latency {metrics['latency_ms']:.3f} ms "
                 f"(parent #{parent.id} {metrics['parent_latency_ms']:.3f} ms in this process)")
        return cand


# -- export support ---------------------------------------------------------------------------
INT8_FILE = "model.int8.pt"


def int8_loader_source() -> str:
    """Appended to an int8 export's model.py: `load()` returns the int8 TorchScript program."""
    return f'''

# ---- int8 (nas compress --quantize int8) --------------------------------------------------
load_float = load


def load(weights: str | None = None, map_location: str = "cpu") -> torch.jit.ScriptModule:
    """The int8 network: a TorchScript program (CPU; quantised kernels of torch's x86 / qnnpack
    engine), in eval mode. `load_float()` gives the float network it was quantised from."""
    path = weights or _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "{INT8_FILE}")
    return torch.jit.load(path, map_location="cpu").eval()
'''


def export_extras(store: RunStore, cand: Candidate, folder: Path) -> list[str]:
    """Files an export of a compressed candidate adds to `folder` (model.py already written);
    returns the names (keys of export.FILE_NAMES) it added."""
    comp = compressed(cand)
    if comp is None or not comp.int8:
        return []
    src = int8_path(store, cand.id)
    if not src.exists():
        raise RunError(f"{store.path}: the int8 program of candidate {cand.id} is missing ({src.name})")
    (folder / INT8_FILE).write_bytes(src.read_bytes())
    with open(folder / "model.py", "a") as fh:
        fh.write(int8_loader_source())
    return ["int8"]


def describe(cand: Candidate) -> str | None:
    """A compressed candidate in one line (`pruned 0.5 of #29, fine-tuned 5 epochs; widths
    16/32/10`), or None for a candidate of the search."""
    comp = compressed(cand)
    if comp is None:
        return None
    widths: list[str] = []

    def walk(layers: list[dict[str, Any]]) -> None:
        for layer in layers:
            if layer["type"] in ("conv", "sep_conv", "resblock"):
                widths.append(str(layer["out"]))
            elif layer["type"] == "dense":
                widths.append(str(layer["units"]))
            elif layer["type"] == "cell":
                widths.append(f"cell{layer['in'][0]}")
            elif layer["type"] == "residual":
                walk(layer["body"])

    walk(comp.net["body"])
    return f"{cand.derivation or 'compressed from #' + str(comp.parent)}; widths {'/'.join(widths)}"


def teacher_network(store: RunStore, space: Any, objectives: list[Any], teacher: str, tabular: bool = False) -> tuple[Candidate, Any]:
    """A distillation teacher from a run (a complete float candidate with weights: an id or
    best-accuracy) and its network with its trained weights, in eval mode. For `nas export --retrain --distill`."""
    from .ops import Network
    from .train import unwrap_state

    cand = _pick(store, objectives, teacher, "--distill")
    _weights_of(store, cand, tabular, "teacher")
    comp = compressed(cand)
    if comp is not None and comp.int8:
        raise UsageError(f"{store.path}: teacher #{cand.id} is int8; distil from a float candidate (its parent #{comp.parent})")
    net = Network(candidate_net(space, cand))
    net.load_state_dict(unwrap_state(store.load_weights(cand.weights_id)))
    return cand, net.eval()
