"""Compression (nas compress): structured pruning that stays a resolved network, distillation in
the trainer, int8 quantisation, and compressed candidates recorded in the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nas
from nas.cli import main
from nas.compress import compress, compressed
from nas.errors import UsageError
from nas.ops import Network
from nas.prune import channel_graph, prune
from nas.quantize import load_int8, quantize_int8
from nas.space import SearchSpace, load_space
from nas.store import RunStore
from nas.train import distillation_loss

from conftest import python_env

TINY = {
    "name": "tiny", "input": [1, 8, 8], "classes": 10,
    "body": [
        {"conv": {"out": [8, 16], "kernel": 3, "act": "relu", "norm": "batch"}},
        {"residual": {"skip": True, "body": [{"conv": {"kernel": 3, "act": "relu", "norm": "batch"}}]}},
        {"pool": {"kind": "max", "size": 2}},
        {"sep_conv": {"out": 16, "kernel": 3, "act": "relu", "norm": "batch"}},
    ],
    "head": {"pool": "avg"},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 64},
}


# -- pruning --------------------------------------------------------------------------------
def _kill_channels(spec: dict, net: Network, ratio: float) -> None:
    """Zero, in every tensor of every prunable group, the channels pruning at `ratio` will drop
    (the last ones): those channels are then dead everywhere, so removing them changes nothing."""
    _, g = channel_graph(spec, net)
    state = net.state_dict()
    roots = {g.find(i) for i in range(len(g.parent))}
    with torch.no_grad():
        for e in g.entries:
            r = g.find(e.slot)
            if g.fixed[r]:
                continue
            n = max(1, round(g.size[r] * (1 - ratio)))
            t = state[e.name].movedim(e.axis, 0)
            t[n * e.mult:] = 0
    assert roots


@pytest.mark.parametrize("name", ["cnn", "resnet", "mlp", "nb201"])
def test_pruning_dead_channels_keeps_the_function(name: str) -> None:
    space = load_space(name)
    for seed in range(2):
        arch = space.sample(seed)
        spec = space.resolve(arch).net
        torch.manual_seed(seed)
        net = Network(spec).eval()
        for m in net.modules():  # non-trivial batch-norm statistics
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        _kill_channels(spec, net, 0.5)
        x = torch.randn(3, *spec["input"])
        before = net(x)
        p = prune(spec, net.state_dict(), 0.5, "l1")
        small = Network(p.spec).eval()
        small.load_state_dict(p.state)
        torch.testing.assert_close(small(x), before, rtol=1e-4, atol=1e-5)
        assert sum(t.numel() for t in p.state.values()) < sum(t.numel() for t in net.state_dict().values())


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_pruned_network_is_the_space_network_with_smaller_widths(name: str) -> None:
    """Pruning 0.5 of a network whose widths are all 32 gives exactly what the space resolves
    for the same architecture with widths 16."""
    space = load_space(name)
    widths = [d.label for d in space.decisions if 16 in d.values and 32 in d.values]
    for seed in range(3):
        values = dict(space.sample(seed))
        wide = space.make({**values, **{k: 32 for k in widths if k in values}})
        narrow = space.make({**values, **{k: 16 for k in widths if k in values}})
        spec = space.resolve(wide).net
        p = prune(spec, Network(spec).state_dict(), 0.5)
        assert p.spec == space.resolve(narrow).net


def test_projecting_block_keeps_different_widths() -> None:
    """A stride-1 ResBlock projects only when its widths differ: pruning keeps them different."""
    spec = {"input": [1, 8, 8], "classes": 3, "head": {"pool": "avg", "dropout": 0.0, "in": [9, 8, 8]},
            "body": [{"type": "conv", "in": [1, 8, 8], "out": 8, "kernel": 3, "stride": 1, "act": "relu", "norm": "batch", "dilation": 1},
                     {"type": "resblock", "in": [8, 8, 8], "out": 9, "stride": 1, "kernel": 3, "act": "relu", "style": "post"}]}
    p = prune(spec, Network(spec).state_dict(), 0.5)
    block = p.spec["body"][1]
    assert block["in"][0] != block["out"]
    Network(p.spec).load_state_dict(p.state)


def test_prune_rejects_bad_ratios() -> None:
    spec = SearchSpace.from_dict(TINY).resolve(SearchSpace.from_dict(TINY).sample(0)).net
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(UsageError, match="ratio"):
            prune(spec, Network(spec).state_dict(), bad)


# -- distillation ---------------------------------------------------------------------------
def test_distillation_loss_is_hinton() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 5), torch.randn(16, 5), torch.randint(0, 5, (16,))
    ce = torch.nn.CrossEntropyLoss()
    torch.testing.assert_close(distillation_loss(s, t, y, 4.0, 0.0, ce), ce(s, y))
    assert distillation_loss(t, t, y, 3.0, 1.0, ce).abs() < 1e-6
    T = 2.0
    p = torch.softmax(t / T, 1)
    kl = (p * (p.log() - torch.log_softmax(s / T, 1))).sum(1).mean()
    torch.testing.assert_close(distillation_loss(s, t, y, T, 0.7, ce), 0.7 * T * T * kl + 0.3 * ce(s, y))


def test_fit_with_teacher_keeps_the_teacher_frozen_in_eval_mode() -> None:
    from nas.data import load_dataset
    from nas.train import DeviceData, TrainConfig, fit

    data = DeviceData(load_dataset("digits"), "cpu")
    space = SearchSpace.from_dict(TINY)
    spec = space.resolve(space.sample(0)).net
    torch.manual_seed(0)
    teacher, student = Network(spec), Network(spec)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = TrainConfig(epochs=1, device="cpu", lr=0.01, distill_temperature=2.0, distill_alpha=1.0)
    x, _ = data.split("val")

    def gap() -> float:  # KL(teacher || student) on validation inputs
        with torch.no_grad():
            return float(torch.nn.functional.kl_div(torch.log_softmax(student.eval()(x), 1), torch.log_softmax(teacher.eval()(x), 1),
                                                    reduction="batchmean", log_target=True))

    start = gap()
    fit(student, data, cfg, teacher=teacher)
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # no gradient step, no batch-norm statistics update
    assert gap() < 0.5 * start  # alpha 1: the student learns the teacher's outputs


# -- int8 -----------------------------------------------------------------------------------
def test_int8_program_matches_float_and_loads_with_jit(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(TINY)
    spec = space.resolve(space.sample(0)).net
    torch.manual_seed(0)
    net = Network(spec).eval()
    calib = [torch.randn(64, 1, 8, 8) for _ in range(4)]
    program = quantize_int8(net, calib, torch.zeros(1, 1, 8, 8))
    (tmp_path / "q.pt").write_bytes(program)
    q = load_int8(str(tmp_path / "q.pt"))
    x = torch.randn(32, 1, 8, 8)
    ref = net(x)
    got = q(x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()
    assert (got.argmax(1) == ref.argmax(1)).float().mean() > 0.8
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in q.modules())  # batch norm folded


# -- the command ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compress") / "run"
    nas.search(SearchSpace.from_dict(TINY), data="digits", strategy="random", budget=2, objectives="accuracy,params",
               run=path, progress=False, seed=1)
    return path


@pytest.fixture(scope="module")
def made(run: Path) -> tuple[int, list]:
    """The run's candidates before compressing, and the candidates of one prune + KD + int8 pass."""
    n = _count(run)
    return n, compress(run, pick="best-accuracy", prune=0.5, distill="best-accuracy", quantize="int8", epochs=1, log=None)


def _int8_file(run: Path, cid: int) -> Path:
    return run / "weights" / f"{cid}.int8.pt"


def _count(path: Path) -> int:
    with RunStore.open(path) as store:
        return len(store.candidates())


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compress_records_each_step_and_joins_the_front(run: Path, made: tuple[int, list], capsys: pytest.CaptureFixture[str]) -> None:
    n, steps = made
    with RunStore.open(run) as store:
        cands = store.candidates()
        best = max((c for c in cands[:n] if c.state == "complete"), key=lambda c: (c.metrics["val_accuracy"], -c.id))
        pruned, q = cands[n], cands[n + 1]
    assert [c.id for c in steps] == [pruned.id, q.id]
    assert pruned.derived_from == best.id and pruned.derivation == f"pruned 0.5 of #{best.id}, fine-tuned 1 epochs, distilled from #{best.id}"
    assert q.derived_from == pruned.id and q.derivation == f"int8 of #{pruned.id}"
    for c in (pruned, q):
        assert c.state == "complete" and c.objectives == (c.metrics["val_accuracy"], c.metrics["params"])
        for key in ("val_accuracy", "params", "flops", "size_bytes", "latency_ms", "parent_latency_ms"):
            assert c.metrics[key] is not None, key
        assert "test_accuracy" in c.test
    assert pruned.metrics["params"] < 0.4 * best.metrics["params"]
    assert q.metrics["params"] == pruned.metrics["params"]  # int8 stores them in a byte each (size: see the benchmark)
    assert compressed(q).int8 and _int8_file(run, q.id).exists()
    # the front is computed over them like any other candidate
    with nas.open_run(run) as opened:
        front_ids = {c.id for c in opened.front}
        cands = opened.candidates
    dominated = lambda c: any(o.metrics["val_accuracy"] >= c.metrics["val_accuracy"] and o.metrics["params"] <= c.metrics["params"]
                              and (o.metrics["val_accuracy"], o.metrics["params"]) != (c.metrics["val_accuracy"], c.metrics["params"])
                              for o in cands if o.state == "complete")
    assert (pruned.id in front_ids) == (not dominated(pruned))
    code, out, _ = _cli(capsys, "status", str(run))
    assert code == 0 and (f"pruned 0.5 of #{best.id}" in out or pruned.id not in front_ids)
    code, out, _ = _cli(capsys, "status", str(run), "--json")
    shown = {f["id"]: f for f in json.loads(out)["front"]}
    assert all(shown[c.id]["derivation"] == c.derivation and shown[c.id]["derived_from"] == c.derived_from
               for c in (pruned, q) if c.id in shown)
    # the same command again: every step is found done, nothing is recorded twice
    before = _count(run)
    code, out, _ = _cli(capsys, "compress", str(run), "--pick", "best-accuracy", "--prune", "0.5", "--distill",
                        "--quantize", "int8", "--epochs", "1")
    assert code == 0 and out.count("done before") == 2 and f"int8 of #{pruned.id}" in out and _count(run) == before


def test_killed_compression_redoes_only_the_unfinished_step(run: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import nas.quantize
    import nas.train

    n = _count(run)

    def killed(*a: object, **k: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(nas.quantize, "quantize_int8", killed)
    assert main(["compress", str(run), "--pick", "best-accuracy", "--prune", "0.3", "--quantize", "int8", "--epochs", "1"]) == 130
    assert _count(run) == n + 1  # the pruned, fine-tuned step is recorded; the int8 one is not
    monkeypatch.undo()
    fits = []
    real_fit = nas.train.fit
    monkeypatch.setattr(nas.train, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    code, out, err = _cli(capsys, "compress", str(run), "--pick", "best-accuracy", "--prune", "0.3", "--quantize", "int8", "--epochs", "1")
    assert code == 0, err
    assert not fits and "done before" in out
    with RunStore.open(run) as store:
        cands = store.candidates()
    assert len(cands) == n + 2 and cands[-1].derivation == f"int8 of #{cands[-2].id}"


def test_export_of_compressed_candidates_round_trips_without_nas(run: Path, made: tuple[int, list], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from nas.data import load_dataset

    with RunStore.open(run) as store:
        made = [c for c in store.candidates() if c.derived_from is not None]
        weights = {c.id: store.load_weights(c.id) for c in made}
    assert any(compressed(c).int8 for c in made) and any(not compressed(c).int8 for c in made)
    data = load_dataset("digits")
    x = torch.from_numpy(data.x_test).float()
    torch.save({"x": x}, tmp_path / "x.pt")
    for c in made:
        out = tmp_path / f"export{c.id}"
        code, _, err = _cli(capsys, "export", str(run), "--pick", str(c.id), "--out", str(out))
        assert code == 0, err
        info = json.loads((out / "arch.json").read_text())
        assert info["net"] == compressed(c).net
        code_text = (
            "import sys; sys.modules['nas'] = None\n"
            f"sys.path.insert(0, {str(out)!r})\n"
            "import pickle, torch\n"
            # loading never unpickles arbitrary objects: torch.load only with weights_only=True, no pickle.load
            "def _no(*a, **k): raise AssertionError('pickle.load(s) called')\n"
            "pickle.load = pickle.loads = _no\n"
            "_load = torch.load\n"
            "def _guard(*a, **k):\n"
            "    assert k.get('weights_only') is True, 'torch.load without weights_only=True'\n"
            "    return _load(*a, **k)\n"
            "torch.load = _guard\n"
            "import model\n"
            f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)['x']\n"
            "with torch.no_grad(): y = model.load()(x)\n"
            f"torch.save({{'y': y}}, {str(out / 'y.pt')!r})\n"
        )
        done = subprocess.run([sys.executable, "-c", code_text], env=python_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        y = torch.load(out / "y.pt", weights_only=True)["y"]
        if compressed(c).int8:
            ref = load_int8(str(_int8_file(run, c.id)))(x)
            assert (out / "model.int8.pt").exists() and "int8" in (out / "README.md").read_text()
        else:
            net = Network(compressed(c).net).eval()
            net.load_state_dict(weights[c.id])
            ref = net(x)
        torch.testing.assert_close(y, ref.detach())
        right = int((y.argmax(1) == torch.from_numpy(data.y_test)).sum())
        assert right == round(c.test["test_accuracy"] * len(data.y_test))  # the test accuracy the run recorded
        assert nas.load_model(out)(x[:4]).shape == (4, 10)


def test_report_marks_compressed_candidates(run: Path, made: tuple[int, list]) -> None:
    from nas.report import pareto_figure

    with nas.open_run(run) as opened:
        fig = pareto_figure(opened.candidates, opened.objectives)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("compressed, line to parent") for t in labels)


def test_bad_input_is_one_line_and_records_nothing(run: Path, made: tuple[int, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunStore.open(run) as store:
        cands = store.candidates()
    int8 = next(c for c in cands if c.derived_from is not None and compressed(c).int8)
    failed_or_missing = "999"
    nothing = tmp_path / "nothing"
    nas.search(SearchSpace.from_dict(TINY), data="digits", strategy="random", budget=1, run=nothing, progress=False,
               keep_weights="none", max_epochs=1)
    n = _count(run)
    cases = [
        (["--pick", str(int8.id), "--prune", "0.5"], "is int8"),
        (["--pick", str(int8.id), "--quantize", "int8"], "is int8"),
        (["--prune", "0"], "(0, 1)"),
        (["--prune", "1"], "(0, 1)"),
        (["--prune", "1.5"], "(0, 1)"),
        (["--prune", "0.5", "--distill", failed_or_missing], "no candidate 999"),
        (["--prune", "0.5", "--distill", str(int8.id)], "is int8"),
        (["--prune", "0.5", "--distill", "teacher"], "--distill takes"),
        (["--quantize", "int4"], "--quantize takes"),
        ([], "nothing to do"),
    ]
    for args, text in cases:
        code, out, err = _cli(capsys, "compress", str(run), *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and text in err, (args, err)
    code, _, err = _cli(capsys, "compress", str(nothing), "--pick", "1", "--prune", "0.5")
    assert code == 2 and "no trained weights" in err and len(err.strip().splitlines()) == 1
    assert _count(run) == n and _count(nothing) == 1
    with RunStore.open(run, write=True):  # another writer holds the run
        code, _, err = _cli(capsys, "compress", str(run), "--prune", "0.5")
    assert code == 2 and "in use" in err
    assert _count(run) == n


def test_export_retrain_with_distillation(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with nas.open_run(run) as opened:
        best = max((c for c in opened.candidates if c.state == "complete" and c.derived_from is None),
                   key=lambda c: (c.metrics["val_accuracy"], -c.id))
    out = tmp_path / "kd"
    code, _, err = _cli(capsys, "export", str(run), "--pick", str(best.id), "--retrain", "1", "--distill", "--out", str(out))
    assert code == 0, err
    retrained = json.loads((out / "arch.json").read_text())["retrained"]
    assert retrained["distilled_from"] == best.id and retrained["alpha"] == 0.5
    code, _, err = _cli(capsys, "export", str(run), "--pick", str(best.id), "--distill", "--out", str(tmp_path / "no"))
    assert code == 2 and "--retrain" in err and not (tmp_path / "no").exists()


def test_taylor_importance_prunes_by_gradient_times_weight() -> None:
    from nas.prune import taylor_grads

    space = SearchSpace.from_dict(TINY)
    spec = space.resolve(space.sample(0)).net
    torch.manual_seed(0)
    net = Network(spec)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    grads = taylor_grads(net, [(x, y)])
    p = prune(spec, net.state_dict(), 0.5, "taylor", grads)
    small = Network(p.spec)
    small.load_state_dict(p.state)
    assert small(x).shape == (32, 10) and p.groups > 0


def _compress_until(run: Path, argv: list[str], marker: str | None, timeout: float = 120.0) -> tuple[int, str]:
    """`python -m nas compress RUN ARGV` in its own process; with a `marker`, SIGKILLed as soon as
    a line of its output contains it (the output is unbuffered). Returns (exit code, output)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "nas", "compress", str(run), *argv], env=python_env(PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if marker is not None and marker in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines)


@pytest.mark.slow
def test_sigkilled_compression_redoes_only_the_unfinished_step(tmp_path: Path) -> None:
    """A real `kill -9` of `nas compress` during the fine-tune, then during int8; each rerun of
    the same command keeps what finished (same candidate, same record) and completes the rest."""
    run = tmp_path / "run"
    nas.search(SearchSpace.from_dict(TINY), data="digits", strategy="random", budget=1, run=run, progress=False, seed=3, max_epochs=1)
    n = _count(run)
    argv = ["--pick", "1", "--prune", "0.4", "--quantize", "int8", "--epochs", "6"]
    # 1. killed in the fine-tune, after its first epoch: nothing is recorded, the run is not left locked
    code, out = _compress_until(run, argv, "epoch 1/6")
    assert code == -9, out
    assert "pruned 0.4 of #1, fine-tuned 6 epochs ..." in out
    assert _count(run) == n
    # 2. the same command, killed in the int8 step: the fine-tune is recorded, int8 is not
    code, out = _compress_until(run, argv, "int8 of #")
    assert code == -9, out
    assert "epoch 6/6" in out and "done before" not in out
    with RunStore.open(run) as store:
        cands = store.candidates()
    assert len(cands) == n + 1
    tuned = cands[-1]
    assert tuned.state == "complete" and tuned.derived_from == 1 and tuned.derivation == "pruned 0.4 of #1, fine-tuned 6 epochs"
    assert not _int8_file(run, tuned.id).exists()
    # 3. the same command again: the fine-tune is kept (no epoch trained), int8 completes once
    code, out = _compress_until(run, argv, None)
    assert code == 0, out
    assert f"#{tuned.id} pruned 0.4 of #1, fine-tuned 6 epochs: done before, kept" in out and "epoch 1/6" not in out
    with RunStore.open(run) as store:
        cands = store.candidates()
        weights = store.load_weights(tuned.id)
    assert len(cands) == n + 2 and len({c.key for c in cands}) == len(cands)
    again, q = cands[-2], cands[-1]
    assert (again.id, again.key, again.metrics, again.test) == (tuned.id, tuned.key, tuned.metrics, tuned.test)
    assert q.state == "complete" and q.derived_from == tuned.id and q.derivation == f"int8 of #{tuned.id}"
    assert _int8_file(run, q.id).exists() and compressed(q).int8
    net = Network(compressed(again).net)
    net.load_state_dict(weights)  # the recorded weights are whole


def test_fine_tune_defaults_to_the_runs_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --epochs a fine-tune is as long as the run's schedule trained the candidate (here
    the run capped TINY's 2 epochs at 1); a rerun with that number given finds it done."""
    run = tmp_path / "run"
    nas.search(SearchSpace.from_dict(TINY), data="digits", strategy="random", budget=1, run=run, progress=False, seed=4, max_epochs=1)
    code, out, err = _cli(capsys, "compress", str(run), "--pick", "1", "--prune", "0.5")
    assert code == 0, err
    with RunStore.open(run) as store:
        tuned = store.candidates()[-1]
    assert tuned.derivation == "pruned 0.5 of #1, fine-tuned 1 epochs" and tuned.metrics["epochs"] == 1
    code, out, err = _cli(capsys, "compress", str(run), "--pick", "1", "--prune", "0.5", "--epochs", "1")
    assert code == 0 and "done before" in out and _count(run) == 2
