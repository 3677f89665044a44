"""Export and import: the network in the run, nas.load_model, the standalone model.py (in a
process without nas) and TorchScript all give the same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import nas
from nas.build import build_model
from nas.cli import main
from nas.evaluators import Evaluation
from nas.export import export, load_architecture, load_model
from nas.search import SearchConfig, SearchInterrupted, open_run, resume, search, space_config, start
from nas.space import load_space, shipped_spaces

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class UntrainedEvaluator:
    """Builds each candidate and returns its fresh weights as if trained (fast, deterministic)."""

    provides = ("val_accuracy", "params")
    test_needs_weights = True

    def __init__(self, interrupt_at: int | None = None, fail_every: int = 0) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.fail_every = fail_every

    def fit_space(self, space):
        return space.with_input((1, 8, 8), 10)

    def evaluate(self, space, arch, seed=0, constraints=None, on_epoch=None):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.fail_every and self.calls % self.fail_every == 0:
            return Evaluation("failed", {}, "diverged: simulated")
        torch.manual_seed(seed)
        model = build_model(space, arch)
        params = sum(p.numel() for p in model.parameters())
        return Evaluation("complete", {"val_accuracy": (seed % 1000) / 1000, "params": params, "epochs": 0},
                          state={k: v.clone() for k, v in model.state_dict().items()})

    def test(self, space, arch, state):
        return {"test_accuracy": 0.5}


def make_run(tmp: Path, space_name: str = "mlp", budget: int = 4, **kw) -> Path:
    run = tmp / f"run-{space_name}"
    search(load_space(space_name), data="digits", objectives="accuracy,params", budget=budget, run=run, progress=False,
           evaluator=kw.pop("evaluator", UntrainedEvaluator()), strategy="random", **kw)
    return run


def run_network(run: Path, cid: int) -> torch.nn.Module:
    """The network of candidate `cid` exactly as the run stored it."""
    store, config, space, objectives = open_run(run)
    with store:
        cand = store.candidate(cid)
        weights = store.load_weights(cid)
    model = build_model(space, space.make(cand.arch))
    model.load_state_dict(weights)
    return model.eval()


def standalone_outputs(folder: Path, inputs: torch.Tensor, tmp: Path) -> torch.Tensor:
    """Outputs of model.py run in a fresh process where `import nas` is impossible."""
    torch.save(inputs, tmp / "inputs.pt")
    code = (
        "import sys; sys.modules['nas'] = None\n"  # any `import nas` in model.py would now fail
        f"sys.path.insert(0, {str(folder)!r})\n"
        "import torch, model\n"
        "net = model.load()\n"
        f"x = torch.load({str(tmp / 'inputs.pt')!r})\n"
        "with torch.no_grad(): y = net(x)\n"
        f"torch.save(y, {str(tmp / 'outputs.pt')!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp, env=env, timeout=120)
    return torch.load(tmp / "outputs.pt")


def test_round_trip_with_real_training(tmp_path: Path) -> None:
    run = tmp_path / "trained"
    result = search(load_space("mlp"), data="digits", objectives="accuracy,params", budget=3, run=run, progress=False,
                    max_epochs=3, strategy="random")
    out = tmp_path / "best"
    done = export(run, out, pick="best-accuracy", formats=("torchscript",), progress=False)
    cid = done["candidate"]
    assert cid == max((c for c in result.candidates if c.state == "complete"), key=lambda c: c.metrics["val_accuracy"]).id
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        expected = run_network(run, cid)(x)
        got = load_model(out)(x)
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(scripted, expected, atol=1e-6)
    assert torch.allclose(standalone_outputs(out, x, tmp_path), expected, atol=1e-6)
    info = json.loads((out / "arch.json").read_text())
    assert info["candidate"] == cid and info["metrics"]["val_accuracy"] > 0.5 and info["input_shape"] == [1, 8, 8]
    assert info["test"]["test_accuracy"] > 0.5 and info["preprocessing"]["scale"] == 16.0
    readme = (out / "README.md").read_text()
    assert "model.load()" in readme and f"{info['metrics']['val_accuracy']:.4f}" in readme


def test_torchscript_loads_without_nas(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = tmp_path / "ts"
    export(run, out, pick="knee", formats=("torchscript",), progress=False)
    x = torch.randn(4, 1, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    code = (f"import sys; sys.modules['nas'] = None\nimport torch\nm = torch.jit.load({str(out / 'model.torchscript.pt')!r})\n"
            f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), load_model(out)(x), atol=1e-6)


def test_every_shipped_space_exports(tmp_path: Path) -> None:
    inputs = torch.randn(3, 1, 8, 8)
    folders, expected = [], []
    for name in shipped_spaces():
        run = make_run(tmp_path, name, budget=3)
        out = tmp_path / f"export-{name}"
        done = export(run, out, pick="best-accuracy", progress=False)
        with torch.no_grad():
            want = run_network(run, done["candidate"])(inputs)
            assert torch.allclose(load_model(out)(inputs), want, atol=1e-6), name
        folders.append(out)
        expected.append(want)
        arch = load_architecture(out)
        assert arch.key == json.loads((out / "arch.json").read_text())["key"]
    for folder, want in zip(folders, expected):
        assert torch.allclose(standalone_outputs(folder, inputs, tmp_path), want, atol=1e-6), folder.name


def test_architecture_rebuilds_for_other_classes_and_inputs(tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    export(make_run(tmp_path, "cnn", budget=3), out, progress=False)
    arch = load_architecture(out)
    fresh = nas.build_model(arch.space, arch, input_shape=(3, 16, 16), classes=5)
    assert fresh(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_export_while_the_run_is_going_and_after_resume(tmp_path: Path) -> None:
    run = tmp_path / "live"
    cfg = SearchConfig(space=space_config(load_space("mlp")), data="digits", objectives=["accuracy", "params"], strategy="random", budget=8)
    session = start(cfg, run, evaluator=UntrainedEvaluator(interrupt_at=5), progress=False, log=lambda s: None)
    with pytest.raises(SearchInterrupted):
        session.run()
    # the writer still holds the run (its lock is taken): export reads it all the same
    export(run, tmp_path / "during", pick="best-accuracy", progress=False)
    session.store.close()
    later = resume(run, evaluator=UntrainedEvaluator(), progress=False, log=lambda s: None)
    try:
        later.run()
    finally:
        later.store.close()
    done = export(run, tmp_path / "after", pick="knee", progress=False)
    assert (tmp_path / "after" / "weights.pt").exists() and done["candidate"] >= 1


def cli_error(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_failed_unknown_and_unusable_candidates_are_one_line_errors(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, "mlp", budget=6, evaluator=UntrainedEvaluator(fail_every=2))
    store, *_ = open_run(run)
    with store:
        failed = [c.id for c in store.candidates(["failed"])]
    assert failed
    assert "is failed (diverged: simulated)" in cli_error(capsys, "export", str(run), "--pick", str(failed[0]), "--out", str(tmp_path / "a"))
    assert "no candidate 999" in cli_error(capsys, "export", str(run), "--pick", "999", "--out", str(tmp_path / "b"))
    assert "unknown pick" in cli_error(capsys, "export", str(run), "--pick", "best", "--out", str(tmp_path / "c"))
    assert "no complete candidate with params <= 1" in cli_error(capsys, "export", str(run), "--max-params", "1", "--out", str(tmp_path / "d"))
    assert "unknown export format" in cli_error(capsys, "export", str(run), "--format", "tflite", "--out", str(tmp_path / "e"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "not empty" in cli_error(capsys, "export", str(run), "--out", str(tmp_path / "full"))
    assert "no such run directory" in cli_error(capsys, "export", str(tmp_path / "nope"), "--out", str(tmp_path / "f"))
    table = tmp_path / "table"
    search(load_space("nb201"), data="nb201:cifar10", budget=5, run=table, progress=False)
    assert "NAS-Bench-201's tables" in cli_error(capsys, "export", str(table), "--out", str(tmp_path / "g"))
    assert not any((tmp_path / n).exists() for n in "abcdefg")


@pytest.mark.slow
def test_retrain_reports_test_accuracy(tmp_path: Path) -> None:
    run = tmp_path / "trained"
    search(load_space("mlp"), data="digits", objectives="accuracy", budget=2, run=run, progress=False, max_epochs=2, strategy="random")
    done = export(run, tmp_path / "re", pick="best-accuracy", retrain=8, progress=False)
    assert done["retrained"]["epochs"] == 8 and 0.5 < done["retrained"]["test_accuracy"] <= 1.0
    info = json.loads((tmp_path / "re" / "arch.json").read_text())
    assert info["retrained"]["on"] == "train+validation"


def test_example_script_classifies_digits(tmp_path: Path) -> None:
    run = tmp_path / "trained"
    search(load_space("mlp"), data="digits", objectives="accuracy", budget=2, run=run, progress=False, max_epochs=5, strategy="random")
    export(run, tmp_path / "best", pick="best-accuracy", progress=False)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "use_exported_model.py"), str(tmp_path / "best"), "--n", "20"],
                         capture_output=True, text=True, check=True, timeout=120)
    right = int(out.stdout.strip().splitlines()[-1].split("/")[0])
    assert right >= 15, out.stdout


# -- issue 11: what an export writes is whole, and it is the run's ------------------------------
def test_onnx_runs_in_onnxruntime_like_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")  # the onnx extra (in requirements-dev.txt)
    import numpy as np

    for name in ("mlp", "cnn"):
        out = tmp_path / f"onnx-{name}"
        export(make_run(tmp_path, name, budget=2), out, pick="best-accuracy", formats=("onnx",), progress=False)
        assert sorted(p.name for p in out.iterdir()) == ["README.md", "arch.json", "model.onnx", "model.py", "weights.pt"]
        x = torch.randn(5, 1, 8, 8)  # another batch size than the one exported with
        got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = load_model(out)(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_a_failed_export_leaves_nothing_and_keeps_the_earlier_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run = make_run(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setitem(sys.modules, "onnxscript", types.ModuleType("onnxscript"))
    monkeypatch.setitem(sys.modules, "onnx", types.ModuleType("onnx"))
    err = cli_error(capsys, "export", str(run), "--pick", "1", "--format", "onnx", "--out", str(tmp_path / "new"))
    assert "ONNX export failed" in err and "exporter exploded" in err
    assert not (tmp_path / "new").exists()
    export(run, tmp_path / "old", pick="1", progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    with pytest.raises(nas.errors.UsageError):
        export(run, tmp_path / "old", pick="1", formats=("onnx",), progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_onnx_needs_onnxscript_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run = make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails
    err = cli_error(capsys, "export", str(run), "--format", "onnx", "--out", str(tmp_path / "o"))
    assert "onnxscript" in err and "pip install 'nas[onnx]'" in err
    assert not (tmp_path / "o").exists()


def test_out_of_another_candidate_is_refused_and_force_replaces_it_whole(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, budget=3)
    out = tmp_path / "best"
    export(run, out, pick="1", formats=("torchscript",), progress=False)
    # the same candidate again: replaced whole, so the TorchScript file of the first export goes
    export(run, out, pick="1", progress=False)
    assert not (out / "model.torchscript.pt").exists()
    err = cli_error(capsys, "export", str(run), "--pick", "2", "--out", str(out))
    assert "not an export of candidate 2" in err and "--force" in err
    assert json.loads((out / "arch.json").read_text())["candidate"] == 1
    (out / "notes.txt").write_text("stale")
    assert main(["export", str(run), "--pick", "2", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "arch.json").read_text())["candidate"] == 2 and not (out / "notes.txt").exists()
    (tmp_path / "file").write_text("x")
    assert "not a directory" in cli_error(capsys, "export", str(run), "--out", str(tmp_path / "file"), "--force")


def test_export_reads_the_preprocessing_kept_with_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a run on a .npz given by a relative path, exported from another directory after the file
    # is gone: the statistics come from the run, not from reloading the data
    import numpy as np

    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = (rng.normal(size=(90, 5, 5, 3)) * 20 + 100 + y[:, None, None, None] * 30).clip(0, 255).astype(np.uint8)  # channel-last
    np.savez(work / "mine.npz", x=x, y=y)
    monkeypatch.chdir(work)
    search(load_space("cnn"), data="mine.npz", objectives="accuracy", budget=1, run="run", progress=False, max_epochs=1,
           strategy="random")
    with open_run(work / "run")[0] as store:
        kept = store.meta("preprocessing")
    assert kept["source_layout"] == "NHWC" and kept["input_shape"] == [3, 5, 5] and kept["class_names"] == ["0", "1", "2"]
    (work / "mine.npz").unlink()
    monkeypatch.chdir(tmp_path)
    export(work / "run", tmp_path / "best", pick="1", progress=False)
    info = json.loads((tmp_path / "best" / "arch.json").read_text())
    assert info["preprocessing"] == kept and info["class_names"] == ["0", "1", "2"]
    # the standalone model takes the raw channel-last images as the file held them
    sys.path.insert(0, str(tmp_path / "best"))
    try:
        import model as exported  # noqa: PLC0415

        raw = torch.from_numpy(x[:4].astype(np.float32))
        from nas.data import load_dataset
    finally:
        sys.path.pop(0)
        sys.modules.pop("model", None)
    np.savez(tmp_path / "again.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "again.npz"))
    expected = (x[:4].transpose(0, 3, 1, 2) / ds.scale - ds.mean.reshape(1, -1, 1, 1)) / ds.std.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(exported.preprocess(raw).numpy(), expected, rtol=1e-5, atol=1e-5)
    net = exported.load()
    with pytest.raises(ValueError, match="takes inputs of shape"):
        net(raw)  # channel-last into the network itself: refused, not reinterpreted
    assert net(exported.preprocess(raw)).shape == (4, 3)
    assert net(exported.preprocess(raw).reshape(4, -1)).shape == (4, 3)  # flat inputs are reshaped


def test_nas_train_on_the_export_reproduces_the_runs_number(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "trained"
    search(load_space("mlp"), data="digits", objectives="accuracy", budget=2, run=run, progress=False, max_epochs=3, strategy="random")
    export(run, tmp_path / "best", pick="best-accuracy", progress=False)
    info = json.loads((tmp_path / "best" / "arch.json").read_text())
    assert info["training"]["seed"] != 0 and info["training"]["options"] == {"max_epochs": 3}
    capsys.readouterr()
    assert main(["train", "mlp", "--arch", str(tmp_path / "best" / "arch.json"), "--device", "cpu", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["key"] == info["key"]
    assert (again["val_accuracy"], again["val_loss"], again["epochs"]) == (
        info["metrics"]["val_accuracy"], info["metrics"]["val_loss"], info["metrics"]["epochs"])
