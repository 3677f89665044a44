"""Export a run's chosen architecture with its trained weights, and load it back anywhere.

An export directory holds:

    arch.json     the architecture, its space (fingerprint and definition), the resolved network
                  spec, input shape, classes, input preprocessing, the metrics it had in the run
    weights.pt    the trained state dict (plain tensors; `torch.load(..., weights_only=True)`)
    model.py      the network in torch alone: `import model; net = model.load()` needs no nas
    README.md     how to load it and what it scored
    model.torchscript.pt / model.onnx   with --format torchscript / onnx

`nas.load_model(DIR)` returns the network with its weights; `nas.load_architecture(DIR)` the
`Architecture`, which `nas.build_model(arch.space, arch, input_shape=..., classes=...)` rebuilds
with fresh weights for another input or class count.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from . import objectives as objmod
from . import ops
from .errors import UsageError
from .space import Architecture, SearchSpace
from .store import Candidate, RunError

EXPORT_FORMAT = 1
FORMATS = ("torchscript", "onnx")


def _pick(store: Any, objectives: list[Any], pick: str, max_params: float | None, max_latency_ms: float | None) -> Candidate:
    if pick.isdigit():
        cand = store.candidate(int(pick))
        if cand is None:
            raise UsageError(f"{store.path}: no candidate {pick} in this run")
        if cand.state != "complete":
            why = f" ({cand.error})" if cand.error else ""
            raise UsageError(f"{store.path}: candidate {pick} is {cand.state}{why}; only complete candidates can be exported")
        return cand
    return objmod.pick(store.candidates(["complete"]), objectives, pick, max_params=max_params, max_latency_ms=max_latency_ms)


def _preprocessing(dataset: Any) -> dict[str, Any] | None:
    if dataset is None or dataset.mean is None:
        return None
    return {"scale": float(dataset.scale), "mean": [float(v) for v in dataset.mean.reshape(-1)],
            "std": [float(v) for v in dataset.std.reshape(-1)],
            "note": "the network expects (raw / scale - mean) / std, mean and std per channel (images) or per feature"}


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def model_source(spec: Mapping[str, Any], preprocessing: Mapping[str, Any] | None) -> str:
    """A standalone model.py: `nas.ops` (torch and the standard library only) plus the spec."""
    ops_code = inspect.getsource(ops).replace("from __future__ import annotations\n", "")
    spec_json = json.dumps(spec, indent=1)
    pre_json = json.dumps(preprocessing)
    return f'''from __future__ import annotations

"""A network exported by nas: needs torch only.

    import model
    net = model.load()                     # weights.pt next to this file, eval mode
    logits = net(model.preprocess(x_raw))  # x_raw as the data source gives it (e.g. pixels)
"""
# ---- the layer implementations of nas.ops, copied verbatim --------------------------------
{ops_code}

# ---- this network -------------------------------------------------------------------------
import json as _json
import os as _os

SPEC = _json.loads(r"""{spec_json}""")
PREPROCESSING = _json.loads(r"""{pre_json}""")


def build() -> Network:
    """The network with fresh weights."""
    return Network(SPEC)


def load(weights: str | None = None, map_location: str = "cpu") -> Network:
    """The network with the exported weights, in eval mode."""
    net = Network(SPEC)
    path = weights or _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "weights.pt")
    net.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return net.eval()


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Raw inputs -> what the network was trained on ((raw / scale - mean) / std)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if PREPROCESSING is None:
        return x
    mean = torch.tensor(PREPROCESSING["mean"])
    std = torch.tensor(PREPROCESSING["std"])
    if x.dim() == 4:
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (x / PREPROCESSING["scale"] - mean) / std
'''


def export(run: str | Path, out: str | Path, *, pick: str = "knee", max_params: float | None = None,
           max_latency_ms: float | None = None, retrain: int | None = None, formats: tuple[str, ...] = (),
           device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Export one candidate of `run` into `out`; returns what was written and the candidate's scores."""
    from .runs import Run
    from .tabular import parse_tabular

    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if retrain is not None and retrain < 1:
        raise UsageError(f"--retrain takes a positive number of epochs, got {retrain}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "arch.json").exists())):
        raise UsageError(f"{out}: exists and is not empty (and not an earlier export); pick another --out")
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise UsageError("ONNX export needs the onnx package: pip install 'nas[onnx]'") from None

    opened = Run(run)
    store, config, space, objectives = opened.store, opened.config, opened.space, opened.objectives
    with store:
        cand = _pick(store, objectives, pick, max_params, max_latency_ms)
        source_id = int(cand.source.split("#")[1]) if cand.source else cand.id
        tabular = parse_tabular(config.data) is not None
        weights_file = store.weights_path(source_id)
        if retrain is None and (tabular or not weights_file.exists()):
            why = "the run read NAS-Bench-201's tables and trained nothing" if tabular else "its weights were not kept (--keep-weights)"
            raise UsageError(f"{store.path}: candidate {cand.id} has no trained weights: {why}" +
                             ("" if tabular else "; export with --retrain EPOCHS to train it now"))
        if retrain is not None and tabular:
            raise UsageError(f"{store.path}: a NAS-Bench-201 table run has no dataset here to retrain on")
        weights = store.load_weights(source_id) if retrain is None else None
        arch = space.make(cand.arch)
        run_path, metrics, test = str(store.path), dict(cand.metrics), dict(cand.test or {})

    from .build import build_model
    from .data import load_dataset

    dataset = load_dataset(config.data, seed=config.data_seed) if not tabular else None
    retrained: dict[str, Any] | None = None
    if retrain is not None:
        weights, retrained = _retrain(space, arch, dataset, config, retrain, device, progress)
    model = build_model(space, arch)
    model.load_state_dict(weights)
    model.eval()
    resolved = space.resolve(arch)
    prep = _preprocessing(dataset)
    info = {
        "format": EXPORT_FORMAT,
        "nas_version": __import__("nas").__version__,
        "arch": dict(arch),
        "key": arch.key,
        "text": space.format_arch(arch),
        "summary": space.summary(arch),
        "space": {"name": space.name, "fingerprint": space.fingerprint, "source": space.source, "definition": space.raw},
        "input_shape": list(space.input_shape),
        "classes": space.classes,
        "class_names": list(dataset.class_names) if dataset is not None and dataset.class_names else None,
        "net": resolved.net,
        "train": resolved.train,
        "preprocessing": prep,
        "metrics": metrics,
        "test": test,
        "retrained": retrained,
        "run": run_path,
        "candidate": cand.id,
        "data": config.data,
    }
    out.mkdir(parents=True, exist_ok=True)
    buf = tempfile.SpooledTemporaryFile()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    _atomic_write(out / "weights.pt", buf.read())
    _atomic_write(out / "model.py", model_source(resolved.net, prep))
    _atomic_write(out / "arch.json", json.dumps(info, indent=2, default=str))
    written = {"arch": out / "arch.json", "weights": out / "weights.pt", "model": out / "model.py"}
    example = torch.zeros(1, *space.input_shape)
    if "torchscript" in formats:
        import warnings

        with warnings.catch_warnings():
            # the input reshape check is fixed at trace time: the traced model takes input_shape
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+ prefers torch.export; TorchScript still loads everywhere
            traced = torch.jit.trace(model, example)
        tmp = out / ".model.torchscript.pt.tmp"
        traced.save(str(tmp))
        os.replace(tmp, out / "model.torchscript.pt")
        written["torchscript"] = out / "model.torchscript.pt"
    if "onnx" in formats:
        tmp = out / ".model.onnx.tmp"
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        os.replace(tmp, out / "model.onnx")
        written["onnx"] = out / "model.onnx"
    _atomic_write(out / "README.md", _readme(info, sorted(written)))
    written["readme"] = out / "README.md"
    return {"candidate": cand.id, "files": written, "metrics": metrics, "test": test, "retrained": retrained, "summary": info["summary"]}


def _retrain(space: SearchSpace, arch: Architecture, dataset: Any, config: Any, epochs: int, device: str,
             progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the architecture afresh on train + validation for `epochs`, score it on test."""
    import numpy as np

    from .build import build_model
    from .data import Dataset
    from .train import DeviceData, TrainConfig, evaluate, fit

    merged = Dataset(dataset.name, np.concatenate([dataset.x_train, dataset.x_val]), np.concatenate([dataset.y_train, dataset.y_val]),
                     dataset.x_val[:0], dataset.y_val[:0], dataset.x_test, dataset.y_test, dataset.num_classes, dataset.class_names,
                     dataset.scale, dataset.mean, dataset.std)
    data = DeviceData(merged, device)
    torch.manual_seed(config.seed)
    model = build_model(space, arch)
    cfg = TrainConfig.for_arch(space.resolve(arch).train, epochs=epochs, patience=None, seed=config.seed, device=str(data.device),
                               **{k: v for k, v in config.train.items() if k not in ("max_epochs", "patience", "time_limit")})
    log = (lambda r: print(f"  retrain epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f}", flush=True)) if progress else None
    result = fit(model, data, cfg, on_epoch=log)
    loss, acc = evaluate(model, data, "test", cfg)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return state, {"epochs": result.epochs, "test_accuracy": acc, "test_loss": loss, "train_loss": result.train_loss,
                   "seconds": result.seconds, "on": "train+validation"}


def _readme(info: Mapping[str, Any], files: list[str]) -> str:
    m, t, r = info["metrics"], info["test"] or {}, info["retrained"]
    lines = [
        f"# {info['space']['name']} candidate {info['candidate']}",
        "",
        f"Exported by nas {info['nas_version']} from `{info['run']}` (data `{info['data']}`).",
        "",
        f"Architecture: `{info['summary']}`",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    if "val_accuracy" in m:
        lines.append(f"| validation accuracy (in the search) | {m['val_accuracy']:.4f} |")
    if "test_accuracy" in t:
        lines.append(f"| test accuracy (weights of the search) | {t['test_accuracy']:.4f} |")
    if r:
        lines.append(f"| test accuracy after retraining {r['epochs']} epochs on train+validation | {r['test_accuracy']:.4f} |")
    for key, label in (("params", "parameters"), ("flops", "FLOPs (multiply-accumulates)"), ("latency_ms", "latency (ms)")):
        if m.get(key) is not None:
            lines.append(f"| {label} | {m[key]:,} |" if isinstance(m[key], int) else f"| {label} | {m[key]:.4g} |")
    lines += [
        "",
        f"Input: a batch of shape (N, {', '.join(map(str, info['input_shape']))}); output: logits for {info['classes']} classes.",
        "",
        "## Load it",
        "",
        "With torch only (no nas needed):",
        "",
        "```python",
        "import sys; sys.path.insert(0, 'THIS_DIR')",
        "import model",
        "net = model.load()                         # eval mode, weights.pt next to model.py",
        "logits = net(model.preprocess(x_raw))      # raw inputs, normalised as in training",
        "```",
        "",
        "With nas:",
        "",
        "```python",
        "import nas",
        "net = nas.load_model('THIS_DIR')",
        "arch = nas.load_architecture('THIS_DIR')   # rebuild: nas.build_model(arch.space, arch, classes=...)",
        "```",
    ]
    if "torchscript" in files:
        lines += ["", "TorchScript: `torch.jit.load('model.torchscript.pt')` (inputs of the shape above)."]
    if "onnx" in files:
        lines += ["", "ONNX: `model.onnx`, input `input` (dynamic batch), output `logits`."]
    names = {"arch": "arch.json", "weights": "weights.pt", "model": "model.py", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
    lines += ["", f"Files: {', '.join(names[f] for f in files)}, README.md."]
    return "\n".join(lines) + "\n"


# -- loading --------------------------------------------------------------------------------
def _info(path: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    file = path / "arch.json" if path.is_dir() else path
    if not file.exists():
        raise UsageError(f"{path}: no arch.json (not a nas export)")
    try:
        info = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or "net" not in info or "arch" not in info:
        raise UsageError(f"{file}: not a nas export's arch.json")
    if info.get("format", 0) > EXPORT_FORMAT:
        raise UsageError(f"{file}: written by a newer nas (export format {info['format']}); upgrade nas")
    return file.parent, info


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The exported network with its trained weights, in eval mode."""
    folder, info = _info(path)
    net = ops.Network(info["net"])
    weights = folder / "weights.pt"
    if not weights.exists():
        raise UsageError(f"{folder}: weights.pt is missing")
    net.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    return net.eval()


def load_architecture(path: str | Path) -> Architecture:
    """The exported `Architecture` (its `.space` is the space it came from, for the export's
    input shape and classes); `nas.build_model(arch.space, arch, input_shape=..., classes=...)`
    builds it with fresh weights for other data."""
    _, info = _info(path)
    space = SearchSpace.from_dict(info["space"]["definition"], info["space"].get("source", "<export>"))
    space = space.with_input(info["input_shape"], info["classes"])
    arch = space.make(info["arch"])
    if arch.key != info["key"]:
        raise RunError(f"{path}: the architecture builds a different network with this version of nas (key {arch.key}, export {info['key']})")
    return arch
