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
import io
import json
import os
import shutil
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
FILE_NAMES = {"arch": "arch.json", "weights": "weights.pt", "model": "model.py", "torchscript": "model.torchscript.pt", "onnx": "model.onnx",
              "int8": "model.int8.pt"}


def _pick(store: Any, objectives: list[Any], pick: str, max_params: float | None, max_latency_ms: float | None) -> Candidate:
    if pick.isdigit():
        from .compress import complete_candidate

        return complete_candidate(store, pick, "only complete candidates can be exported")
    return objmod.pick(store.candidates(["complete"]), objectives, pick, max_params=max_params, max_latency_ms=max_latency_ms)


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
CLASS_NAMES = (PREPROCESSING or {{}}).get("class_names")  # output index -> class name (None: the indices are the labels)


def labels(logits: torch.Tensor) -> list:
    """The predicted class of each row of `logits`: its name where the data named its classes."""
    idx = logits.argmax(dim=-1).tolist()
    return [CLASS_NAMES[i] for i in idx] if CLASS_NAMES else idx


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
    """Raw inputs -> what the network was trained on ((raw / scale - mean) / std); images that
    the data source laid out channel-last (N, H, W, C) are transposed to (N, C, H, W) first."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if PREPROCESSING is None:
        return x
    if x.dim() == 4 and PREPROCESSING.get("source_layout") == "NHWC":
        x = x.permute(0, 3, 1, 2)
    x = x / PREPROCESSING["scale"]
    if PREPROCESSING.get("mean") is None:
        return x
    mean = torch.tensor(PREPROCESSING["mean"])
    std = torch.tensor(PREPROCESSING["std"])
    if x.dim() == 4:
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (x - mean) / std
'''


def _same_candidate(out: Path, run_path: Path, cand_id: int) -> bool:
    """True when `out` holds an export of candidate `cand_id` of the run at `run_path`."""
    try:
        info = json.loads((out / "arch.json").read_text())
        return Path(info["run"]).resolve() == run_path.resolve() and int(info["candidate"]) == cand_id
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; pick another --out")


def _place(tmp: Path, out: Path) -> None:
    """Put the finished export `tmp` at `out`, replacing what was there as a whole."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _onnx_ready() -> None:
    missing = []
    for module in ("onnx", "onnxscript"):  # torch's exporter needs both (onnxscript since torch 2.9)
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(f"ONNX export needs {' and '.join(missing)}: pip install 'nas[onnx]'")


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import inspect
    import logging
    import warnings

    options: dict[str, Any] = {}
    if "external_data" in inspect.signature(torch.onnx.export).parameters:
        options["external_data"] = False  # one self-contained file (these networks are far below 2 GB)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs every optional torchvision op it skips
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, verbose=False, **options)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise UsageError(f"ONNX export failed ({type(exc).__name__}: {text}); nothing was written") from None
    finally:
        quiet.setLevel(level)


def export(run: str | Path, out: str | Path, *, pick: str = "near-best", max_params: float | None = None,
           max_latency_ms: float | None = None, retrain: int | None = None, formats: tuple[str, ...] = (),
           device: str = "auto", progress: bool = True, force: bool = False, distill: str | None = None) -> dict[str, Any]:
    """Export one candidate of `run` into `out`; returns what was written and the candidate's scores.

    Everything is written into a temporary directory beside `out` and renamed to `out` at the
    end, so a failed export leaves nothing behind. An `out` that exists must be empty or an
    earlier export of the same candidate (it is then replaced as a whole); `force=True` replaces
    any directory."""
    from .runs import Run, seed_for
    from .tabular import parse_tabular

    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if retrain is not None and retrain < 1:
        raise UsageError(f"--retrain takes a positive number of epochs, got {retrain}")
    if distill is not None and retrain is None:
        raise UsageError("--distill distils while retraining: give --retrain EPOCHS too (or use nas compress --distill)")
    out = Path(out)
    _check_out(out)
    if "onnx" in formats:
        _onnx_ready()

    with Run(run) as opened:
        store, config, space, objectives = opened.store, opened.config, opened.space, opened.objectives
        cand = _pick(store, objectives, pick, max_params, max_latency_ms)
        if out.is_dir() and any(out.iterdir()) and not force and not _same_candidate(out, store.path, cand.id):
            raise UsageError(f"{out}: not empty and not an export of candidate {cand.id} of this run; "
                             "pick another --out, or --force to replace it")
        source_id = cand.weights_id
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
        from .compress import compressed, describe  # a candidate of `nas compress`: its own (pruned) network

        comp = compressed(cand)
        if comp is not None and retrain is not None:
            raise UsageError(f"{store.path}: candidate {cand.id} is compressed ({cand.derivation}); --retrain trains a space "
                             f"architecture afresh: export it without --retrain, or retrain #{comp.parent}")
        teacher = None
        if distill is not None:
            from .compress import teacher_network

            teacher = teacher_network(store, space, objectives, distill, tabular)  # (candidate, network)
        run_path, metrics, test = str(store.path), dict(cand.metrics), dict(cand.test or {})
        prep = opened.meta("preprocessing")
        seed = seed_for(config.seed, cand.key)

    from .build import build_model
    from .data import load_dataset
    from .train import unwrap_state

    dataset = None
    if not tabular and (retrain is not None or prep is None):
        # retraining needs the data; a run from before preprocessing was kept with it needs the
        # statistics: read from where the run read them (its data_dir), never downloaded
        dataset = load_dataset(config.data, seed=config.data_seed, data_dir=config.data_dir)
        if prep is None:
            prep = dataset.preprocessing(config.data)
    retrained: dict[str, Any] | None = None
    if retrain is not None:
        weights, retrained = _retrain(space, arch, dataset, config, retrain, device, progress, seed, teacher)
    model = build_model(space, arch) if comp is None else comp.network()
    model.load_state_dict(unwrap_state(weights))
    model.eval()
    resolved = space.resolve(arch)
    if comp is not None:
        resolved = type(resolved)(comp.net, resolved.train, resolved.key)
    info = {
        "format": EXPORT_FORMAT,
        "nas_version": __import__("nas").__version__,
        "arch": dict(arch),
        "key": arch.key,
        "text": space.format_arch(arch),
        "summary": space.summary(arch) if comp is None else describe(cand),
        "space": {"name": space.name, "fingerprint": space.fingerprint, "source": space.source, "definition": space.raw},
        "input_shape": list(space.input_shape),
        "classes": space.classes,
        "class_names": (prep or {}).get("class_names"),
        "net": resolved.net,
        "train": resolved.train,
        "preprocessing": prep,
        # how the run trained it: `nas train SPACE --arch arch.json` trains it the same way
        "training": {"seed": seed, "data": config.data, "data_seed": config.data_seed, "data_dir": config.data_dir,
                     "options": dict(config.train), "device": metrics.get("device")},
        "metrics": metrics,
        "test": test,
        "retrained": retrained,
        "run": run_path,
        "candidate": cand.id,
        "data": config.data,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay with the export
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        (tmp / "weights.pt").write_bytes(buf.getvalue())
        (tmp / "model.py").write_text(model_source(resolved.net, prep))
        (tmp / "arch.json").write_text(json.dumps(info, indent=2, default=str))
        names = ["arch", "weights", "model"]
        if comp is not None:
            from .compress import export_extras

            names += export_extras(store, cand, tmp)
        example = torch.zeros(1, *space.input_shape)
        if "torchscript" in formats:
            import warnings

            with warnings.catch_warnings():
                # the input reshape check is fixed at trace time: the traced model takes input_shape
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+ prefers torch.export; TorchScript still loads everywhere
                traced = torch.jit.trace(model, example)
            traced.save(str(tmp / "model.torchscript.pt"))
            names.append("torchscript")
        if "onnx" in formats:
            _write_onnx(model, example, tmp / "model.onnx")
            names.append("onnx")
        (tmp / "README.md").write_text(_readme(info, sorted(names)))
        _place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = {name: out / FILE_NAMES[name] for name in names}
    files["readme"] = out / "README.md"
    return {"candidate": cand.id, "files": files, "metrics": metrics, "test": test, "retrained": retrained, "summary": info["summary"]}


def _retrain(space: SearchSpace, arch: Architecture, dataset: Any, config: Any, epochs: int, device: str,
             progress: bool, seed: int, teacher: tuple[Any, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the architecture afresh on train + validation for `epochs`, score it on test;
    with a `teacher` (candidate, network), by knowledge distillation from it."""
    import numpy as np

    from .build import build_model
    from .data import Dataset
    from .train import DeviceData, TrainConfig, evaluate, fit

    merged = Dataset(dataset.name, np.concatenate([dataset.x_train, dataset.x_val]), np.concatenate([dataset.y_train, dataset.y_val]),
                     dataset.x_val[:0], dataset.y_val[:0], dataset.x_test, dataset.y_test, dataset.num_classes, dataset.class_names,
                     dataset.scale, dataset.mean, dataset.std)
    data = DeviceData(merged, device)
    with torch.random.fork_rng(devices=[]):  # initialised as the search initialised it
        torch.default_generator.manual_seed(seed)
        model = build_model(space, arch)
    cfg = TrainConfig.for_arch(space.resolve(arch).train, epochs=epochs, patience=None, seed=seed, device=str(data.device),
                               **{k: v for k, v in config.train.items() if k not in ("max_epochs", "patience", "time_limit")})
    log = (lambda r: print(f"  retrain epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f}", flush=True)) if progress else None
    result = fit(model, data, cfg, on_epoch=log, teacher=teacher[1] if teacher else None)
    loss, acc = evaluate(model, data, "test", cfg)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {"epochs": result.epochs, "test_accuracy": acc, "test_loss": loss, "train_loss": result.train_loss,
           "seconds": result.seconds, "on": "train+validation"}
    if teacher is not None:
        out.update(distilled_from=teacher[0].id, temperature=cfg.distill_temperature, alpha=cfg.distill_alpha)
    return state, out


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
        f"Input: a batch of shape (N, {', '.join(map(str, info['input_shape']))}); output: logits for {info['classes']} classes"
        + (f" ({', '.join(map(str, info['class_names']))}; `model.labels(logits)` names the predictions)." if info.get("class_names") else "."),
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
    comp = (m or {}).get("compression")
    if comp:
        lines += ["", f"Compressed by `nas compress` from candidate {comp['parent']}; `arch.json` `net` is its own (pruned) network, "
                  "which `model.py` builds."]
    if "int8" in files:
        lines += ["", "Int8 for CPU: `model.load()` returns the int8 TorchScript program `model.int8.pt` (`torch.jit.load`: torch "
                  "alone, no Python objects unpickled; the quantised kernels of torch's x86 engine, qnnpack on ARM). "
                  "`model.load_float()` gives the float network it was quantised from (weights.pt)."]
    if "torchscript" in files:
        lines += ["", "TorchScript: `torch.jit.load('model.torchscript.pt')` (inputs of the shape above)."]
    if "onnx" in files:
        lines += ["", "ONNX: `model.onnx`, input `input` (dynamic batch), output `logits`."]
    lines += ["", f"Files: {', '.join(FILE_NAMES[f] for f in files)}, README.md."]
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
    if (info.get("metrics") or {}).get("compression", {}).get("quantized") == "int8":
        from .quantize import load_int8  # an int8 export: its TorchScript program (CPU)

        return load_int8(str(folder / FILE_NAMES["int8"]))
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
