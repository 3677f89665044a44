"""Evaluators measure a candidate: `evaluate(space, arch, seed) -> Evaluation`.

The trainer is one evaluator; a tabular benchmark (`nas.tabular`) is another; a user's own
function is a third. An evaluator never raises for a bad candidate: an architecture that does not
build, runs out of memory or diverges comes back as a failed `Evaluation` with its reason.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from .gate import GATE
from .space import Architecture, InvalidArchitecture, SearchSpace

if TYPE_CHECKING:  # torch loads on first evaluation, so `nas status` and `nas report` start fast
    import torch


@dataclass
class Evaluation:
    """The outcome of one evaluation."""

    status: str  # complete | failed | infeasible
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    state: dict[str, torch.Tensor] | None = None  # trained weights (CPU), when there are any
    history: list[dict[str, float]] = field(default_factory=list)
    #: training paused before its last epoch (a scheduler's rung, a deadline): what resumes it
    #: (`nas.train.fit`'s checkpoint, on the CPU); None when training ended or nothing trains
    checkpoint: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "complete"


class Evaluator(Protocol):
    """What the search driver needs from an evaluator."""

    #: metric names this evaluator can fill (e.g. val_accuracy, params, flops, latency_ms)
    provides: tuple[str, ...]

    def evaluate(self, space: SearchSpace, arch: Architecture, seed: int = 0, constraints: Mapping[str, float] | None = None) -> Evaluation:
        ...


def violations(metrics: Mapping[str, Any], constraints: Mapping[str, float] | None) -> list[str]:
    """The constraints `metrics` break, as text (`params 250000 > max_params 200000`)."""
    out = []
    for name, limit in (constraints or {}).items():
        metric = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}.get(name)
        if metric is None or limit is None or metric not in metrics or metrics[metric] is None:
            continue
        if metrics[metric] > limit:
            out.append(f"{metric} {metrics[metric]:g} > {name} {limit:g}")
    return out


_BUILD_LOCK = threading.Lock()


def _load_optimizers() -> None:
    """Make one optimizer now: torch's first `Optimizer()` imports some 800 modules (torch._dynamo,
    sympy; 1-2 s), and a Ctrl-C that arrives during that import can be lost or held until the
    process exits. Done when the evaluator is made, before a run records anything, rather than in
    the first candidate's training."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


class TrainingEvaluator:
    """Judge a candidate by training it on a dataset (`nas.train.fit`).

    The dataset is loaded and moved to the training device once. Parameters and FLOPs are
    counted, and latency measured when asked, before training, so that constraints on them mark
    a candidate infeasible without training it.
    """

    provides = ("val_accuracy", "val_loss", "params", "flops", "latency_ms")

    def __init__(self, data: Any = "digits", *, device: str = "auto", data_seed: int = 0, data_dir: str | None = None, download: bool = False,
                 latency: bool = False, latency_device: str = "cpu", latency_batch: int = 1,
                 latency_mode: str = "eager", latency_threads: int | None = 1,
                 keep_weights: bool = True, **train_options: Any) -> None:
        from .data import Dataset, load_dataset
        from .train import DeviceData, TrainConfig, resolve_device

        self.dataset = data if isinstance(data, Dataset) else load_dataset(str(data), seed=data_seed, data_dir=data_dir, download=download)
        self.device = resolve_device(device)
        self.data = DeviceData(self.dataset, self.device)
        TrainConfig.for_arch({}, **train_options)  # check the options now, not mid-search
        _load_optimizers()
        self.train_options = dict(train_options)
        self.latency = latency
        self.latency_options = dict(device=latency_device, batch_size=latency_batch, mode=latency_mode, threads=latency_threads)
        self.keep_weights = keep_weights
        self.data_spec = data if isinstance(data, str) else self.dataset.name
        self._retargeted: dict[str, SearchSpace] = {}
        self._flops: dict[tuple[str, str], int] = {}  # (space, key) -> FLOPs: a rung resumed later counts none again

    def preprocessing(self) -> dict[str, Any]:
        """The data's preprocessing as plain JSON (see `nas.data.Dataset.preprocessing`)."""
        return self.dataset.preprocessing(self.data_spec)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.input_shape)

    @property
    def classes(self) -> int:
        return int(self.dataset.num_classes)

    def fit_space(self, space: SearchSpace) -> SearchSpace:
        """`space` for this dataset's input shape and class count."""
        if space.input_shape == self.input_shape and space.classes == self.classes:
            return space
        have = self._retargeted.get(space.fingerprint)
        if have is None:
            have = self._retargeted[space.fingerprint] = space.with_input(self.input_shape, self.classes)
        return have

    def build(self, space: SearchSpace, arch: Architecture, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any], SearchSpace, Architecture]:
        """The freshly initialised network (seeded), its resolved train dict, and the space it was built in."""
        import torch

        from .build import build_model

        target = self.fit_space(space)
        if target is not space:
            arch = target.make(dict(arch))
        if arch.error is not None:
            raise InvalidArchitecture(arch.error, source=target.source)
        # initialisation draws from the process-wide RNG: one build at a time seeds it, and the
        # state is put back after, so no other thread's draws land in between (training draws
        # from the candidate's own generators, nas.train) and a caller's own stream is untouched
        with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU's: networks are built on the CPU
            model = build_model(target, arch)
        return model, target.resolve(arch).train, target, arch

    def evaluate(self, space: SearchSpace, arch: Architecture, seed: int = 0, constraints: Mapping[str, float] | None = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None, *, epochs: int | None = None,
                 checkpoint: Mapping[str, Any] | None = None, deadline: float | None = None) -> Evaluation:
        """Train `arch` (or carry on from `checkpoint`) up to `epochs` (None: all its epochs),
        pausing at the first epoch boundary at or past `deadline` (`time.time()`); a paused
        training comes back with its `checkpoint`. Latency is measured when not resuming."""
        with GATE.held():  # threads of one process share the device safely (nas.gate)
            return self._evaluate(space, arch, seed, constraints, on_epoch, epochs, checkpoint, deadline)

    def _evaluate(self, space: SearchSpace, arch: Architecture, seed: int, constraints: Mapping[str, float] | None,
                  on_epoch: Callable[[dict[str, float]], None] | None, epochs: int | None = None,
                  checkpoint: Mapping[str, Any] | None = None, deadline: float | None = None) -> Evaluation:
        from .measure import count_flops, count_params, device_access, measure_latency
        from .train import TrainConfig, TrainingFailed, fit, release_memory

        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        try:
            model, train, target, arch = self.build(space, arch, seed)
        except InvalidArchitecture as exc:
            return Evaluation("failed", metrics, f"invalid architecture: {exc.reason}")
        except Exception as exc:  # a builder bug must not take the search down
            return Evaluation("failed", metrics, f"build error: {type(exc).__name__}: {_first_line(exc)}")
        try:
            metrics["params"] = count_params(model)
            counted = (target.fingerprint, arch.key)  # one key, one network: its FLOPs (a forward pass) once a process
            flops = self._flops.get(counted)
            if flops is None:
                flops = count_flops(model, self.input_shape)
                if len(self._flops) < 100_000:
                    self._flops[counted] = flops
            metrics["flops"] = flops
            if self.latency and checkpoint is None:
                lat = measure_latency(model, self.input_shape, **self.latency_options)
                metrics.update(latency_ms=lat.median_ms, latency_iqr_ms=lat.iqr_ms, latency_mode=lat.mode,
                               latency_device=lat.hardware.get("device_name"))
            broken = violations(metrics, constraints)
            if broken:
                return Evaluation("infeasible", metrics, "; ".join(broken))
            cfg = TrainConfig.for_arch(train, seed=seed, device=str(self.device), **self.train_options)
            with device_access(self.device, exclusive=False):  # latency is timed with the device to itself
                result = fit(model, self.data, cfg, on_epoch=on_epoch, resume=checkpoint, stop_at=epochs, deadline=deadline)
        except TrainingFailed as exc:
            del model
            release_memory()
            metrics["seconds"] = time.perf_counter() - t0
            return Evaluation("failed", metrics, exc.reason)
        except Exception as exc:
            del model
            release_memory()
            metrics["seconds"] = time.perf_counter() - t0
            if "out of memory" in str(exc).lower():
                return Evaluation("failed", metrics, "out of memory")
            return Evaluation("failed", metrics, f"{type(exc).__name__}: {_first_line(exc)}")
        metrics.update(result.metrics())
        metrics["seconds"] = time.perf_counter() - t0
        state = {k: v.detach().cpu() for k, v in (result.state or {}).items()} if self.keep_weights else None
        paused = _to_cpu(result.checkpoint) if result.checkpoint is not None else None
        return Evaluation("complete", metrics, None, state, result.history, paused)

    def test(self, space: SearchSpace, arch: Architecture, state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Test-split loss and accuracy of trained weights (only for the final front)."""
        from .train import TrainConfig, evaluate, unwrap_state

        model, train, _, _ = self.build(space, arch)
        model.load_state_dict(unwrap_state(state))
        with GATE.held():
            model.to(self.device)
            loss, acc = evaluate(model, self.data, "test", TrainConfig.for_arch(train, device=str(self.device), **self.train_options))
        return {"test_loss": loss, "test_accuracy": acc}


def run_preprocessing(evaluator: Any) -> dict[str, Any] | None:
    """What turns a raw input into what `evaluator`'s networks see (scale, mean, std, shape,
    layout, class names), as plain JSON to keep with a run; None for an evaluator that trains
    nothing (a tabular benchmark) or does not say."""
    get = getattr(evaluator, "preprocessing", None)
    return get() if callable(get) else None


def _to_cpu(obj: Any) -> Any:
    """A checkpoint's tensors on the CPU (nested dicts and lists), to store or send."""
    if hasattr(obj, "detach"):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else traceback.format_exception_only(type(exc), exc)[-1].strip()


def evaluate(arch: Architecture | str | Mapping[str, Any], *, space: SearchSpace | str | None = None, data: Any = "digits",
             seed: int = 0, device: str = "auto", latency: bool = False, test: bool = False,
             on_epoch: Callable[[dict[str, float]], None] | None = None, **train_options: Any) -> dict[str, Any]:
    """Train one architecture and return its metrics: val_accuracy, val_loss, epochs,
    stopped_early, seconds, params, flops (and latency_ms with `latency=True`, test_accuracy with
    `test=True`). A failed candidate comes back with `status: failed` and an `error`.

        space = nas.load_space("mlp")
        metrics = nas.evaluate(space.sample(0), space=space, data="digits")
    """
    from .errors import UsageError
    from .space import load_space

    if isinstance(space, str):
        space = load_space(space)
    if isinstance(arch, Architecture):
        space = space or arch.space
    if space is None:
        raise UsageError("evaluate needs the space of the architecture: pass space=")
    if not isinstance(arch, Architecture):
        arch = space.parse_arch(arch)
    evaluator = TrainingEvaluator(data, device=device, latency=latency, **train_options)
    result = evaluator.evaluate(space, arch, seed=seed, on_epoch=on_epoch)
    out = {"status": result.status, **result.metrics, "history": result.history}
    if result.error:
        out["error"] = result.error
    if test and result.ok and result.state is not None:
        out.update(evaluator.test(space, arch, result.state))
    return out
