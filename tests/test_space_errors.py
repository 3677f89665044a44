"""Malformed spaces: `nas spaces validate` exits 2 with exactly one line on stderr naming the
file, the field path and what was expected, never a traceback. Plus CLI smoke tests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import python_env
from nas.cli import main
from nas.space import SearchSpace, SpaceError, shipped_spaces

REPO = Path(__file__).resolve().parents[1]

IMG = "input: [1, 8, 8]\nbody:\n"
VEC = "input: [4]\nbody: [dense: 8]\n"

# (id, yaml text, substring naming the field path, regex for what was expected)
CASES = [
    ("yaml-syntax", "input: [1, 8, 8\nbody: []\n", "line 2, column 5", r"YAML syntax error: expected ',' or '\]'"),
    ("yaml-unclosed-brace", IMG + "  - conv: {out: 8\n", "line 4", r"YAML syntax error"),
    ("yaml-tab-indent", "input: [4]\nbody:\n\t- dense: 8\n", "line 3", r"YAML syntax error"),
    ("empty-file", "", "(top level)", r"the space is empty: expected a mapping with at least `input` and `body`"),
    ("only-comments", "# nothing here\n", "(top level)", r"the space is empty"),
    ("top-level-list", "- conv: {out: 8}\n", "(top level)", r"expected a mapping with `input` and `body`, got list"),
    ("top-level-scalar", "just a string\n", "(top level)", r"expected a mapping .* got str"),
    ("unknown-top-level-key", VEC + "layers: []\n", "layers", r"unknown top-level field; expected one of name, description, input"),
    ("unknown-top-level-typo", VEC + "trian: {lr: 0.1}\n", "trian", r"did you mean 'train'\?"),
    ("missing-input", "body:\n  - dense: 8\n", "input", r"missing: give the input shape, e\.g\. \[1, 28, 28\]"),
    ("bad-input-shape", "input: [1, 8]\nbody:\n  - dense: 8\n", "input", r"expected \[features\] or \[channels, height, width\], got \[1, 8\]"),
    ("zero-input-size", "input: [0, 8, 8]\nbody:\n  - dense: 8\n", "input", r"expected an integer >= 1, got 0"),
    ("input-not-a-list", "input: 64\nbody:\n  - dense: 8\n", "input", r"expected \[features\]"),
    ("classes-one", "input: [4]\nclasses: 1\nbody: [dense: 8]\n", "classes", r"expected an integer >= 2, got 1"),
    ("missing-body", "input: [4]\n", "body", r"missing: a space needs a `body` list of layers"),
    ("empty-body", "input: [4]\nbody: []\n", "body", r"expected a non-empty list of layers"),
    ("unknown-layer-type", IMG + "  - convv: {out: 8}\n", "body[0].convv", r"unknown layer type \(did you mean 'conv'\?\); expected one of conv, sep_conv"),
    ("unknown-layer-far", IMG + "  - transformer: {heads: 8}\n", "body[0].transformer", r"unknown layer type; expected one of conv"),
    ("unknown-field", IMG + "  - conv: {outt: 8}\n", "body[0].conv.outt", r"unknown field for conv \(did you mean 'out'\?\); expected one of out, kernel"),
    ("string-width", IMG + "  - conv: {out: wide}\n", "body[0].conv.out", r"expected an integer, got 'wide'"),
    ("bool-width", IMG + "  - conv: {out: true}\n", "body[0].conv.out", r"expected an integer, got True"),
    ("negative-width", IMG + "  - conv: {out: -4}\n", "body[0].conv.out", r"expected an integer >= 1, got -4"),
    ("even-kernel", IMG + "  - conv: {out: 8, kernel: 4}\n", "body[0].conv.kernel", r"expected an odd integer, got 4"),
    ("even-kernel-choice", IMG + "  - conv: {out: 8, kernel: [3, 4]}\n", "body[0].conv.kernel", r"choice 4: expected an odd integer"),
    ("float-for-int", IMG + "  - conv: {out: 8.5}\n", "body[0].conv.out", r"expected an integer, got 8\.5"),
    ("float-for-int-in-choice", IMG + "  - conv: {out: [8, 12.5]}\n", "body[0].conv.out", r"choice 12\.5: expected an integer"),
    ("dropout-one", "input: [4]\nbody:\n  - dropout: 1.0\n", "body[0].dropout.p", r"expected a number < 1\.0, got 1"),
    ("dense-dropout-above-one", "input: [4]\nbody:\n  - dense: {units: 8, dropout: 1.5}\n", "body[0].dense.dropout", r"expected a number < 1\.0, got 1\.5"),
    ("head-dropout-one", VEC + "head: {dropout: 1}\n", "head.dropout", r"expected a number < 1\.0"),
    ("int-range-min-above-max", IMG + "  - conv: {out: {int: [32, 16]}}\n", "body[0].conv.out.int", r"low must be <= high, got \[32, 16\]"),
    ("float-range-min-above-max", VEC + "train:\n  lr: {float: [0.1, 0.01]}\n", "train.lr.float", r"low must be <= high, got \[0\.1, 0\.01\]"),
    ("log-range-low-zero", VEC + "train:\n  lr: {float: [0, 0.1], log: true}\n", "train.lr.float", r"a log-scale range needs low > 0, got 0"),
    ("log-range-low-negative", IMG + "  - conv: {out: {int: [-4, 16], log: true}}\n", "body[0].conv.out.int", r"log-scale range needs low > 0, got -4"),
    ("range-not-a-pair", IMG + "  - conv: {out: {int: [8]}}\n", "body[0].conv.out.int", r"expected \[low, high\], got \[8\]"),
    ("step-and-num", IMG + "  - conv: {out: {int: [8, 32], step: 8, num: 3}}\n", "body[0].conv.out.step", r"give either step, or num/log, not both"),
    ("unknown-range-key", IMG + "  - conv: {out: {int: [8, 32], stepp: 8}}\n", "body[0].conv.out.stepp", r"did you mean 'step'\?"),
    ("empty-choice-list", IMG + "  - conv: {out: []}\n", "body[0].conv.out", r"a decision needs at least one value; got an empty list"),
    ("empty-choice-mapping", IMG + "  - conv: {out: {choice: []}}\n", "body[0].conv.out", r"at least one value"),
    ("choice-not-a-list", IMG + "  - conv: {out: {choice: 8}}\n", "body[0].conv.out.choice", r"expected a list of values, got 8"),
    ("nested-choice", IMG + "  - conv: {out: [[8, 16]]}\n", "body[0].conv.out", r"decision values must be scalars"),
    ("duplicate-choices", IMG + "  - conv: {out: [8, 16, 8]}\n", "body[0].conv.out", r"duplicate values in \[8, 16, 8\]"),
    ("duplicate-after-coercion", "input: [4]\nbody:\n  - dense: {units: 8, act: [relu, swish, silu]}\n", "body[0].dense.act", r"duplicate values"),
    ("declared-duplicate-after-coercion", "input: [4]\ndecisions: {act: [silu, ReLU, swish]}\nbody:\n  - dense: {units: 8, act: $act}\n", "decisions.act",
     r"'silu' and 'swish' are the same value 'silu' here \(read by body\[0\].dense.act\); keep one"),
    ("declared-read-two-ways", "input: [4]\ndecisions: {k: [1, 3]}\nbody:\n  - dense: {units: 8, act: $k}\n", "body[0].dense.act", r"choice 1: expected an activation"),
    ("label-two-choice-sets", IMG + "  - conv: {out: {choice: [8, 16], label: w}}\n  - conv: {out: {choice: [8, 32], label: w}}\n",
     "body[1].conv.out", r"label 'w' is used with two different choice sets: \[8, 32\] here and \[8, 16\] at body\[0\]\.conv\.out"),
    ("condition-unknown-label", IMG + "  - conv: {out: 8, when: {nosuch: 1}}\n", "body[0].conv.when.nosuch", r"condition on unknown label 'nosuch'"),
    ("condition-label-typo", "input: [4]\ndecisions:\n  deep: [false, true]\nbody:\n  - dense: 8\n  - dense: {units: 8, when: {dep: true}}\n",
     "body[1].dense.when.dep", r"unknown label 'dep' \(did you mean 'deep'\?\)"),
    ("condition-value-not-a-choice", "input: [4]\ndecisions:\n  deep: [false, true]\nbody:\n  - dense: 8\n  - dense: {units: 8, when: {deep: maybe}}\n",
     "body[1].dense.when.deep", r"condition value 'maybe' is not one of the choices of 'deep': \[False, True\]"),
    ("condition-empty", IMG + "  - conv: {out: 8, when: {}}\n", "body[0].conv.when", r"expected a mapping \{label: value or \[values\]\}"),
    ("condition-cycle", "input: [4]\nbody:\n  - dense: {units: 8, act: {choice: [relu, tanh], label: a, when: {b: batch}},"
     " norm: {choice: [batch, none], label: b, when: {a: relu}}}\n", "body[0].dense", r"conditions form a cycle: (a -> b -> a|b -> a -> b)"),
    ("condition-on-itself", "input: [4]\nbody:\n  - dense: {units: 8, act: {choice: [relu, tanh], label: a, when: {a: relu}}}\n",
     "body[0].dense.act", r"conditions form a cycle: a -> a"),
    ("condition-on-required-field", "input: [4]\ndecisions:\n  d: [a, b]\nbody:\n  - dense: {units: {choice: [8, 16], when: {d: a}}}\n",
     "body[0].dense.units.when", r"a required field cannot be conditional"),
    ("impossible-shape", IMG + "  - pool: max\n  - pool: max\n  - pool: max\n  - pool: max\n", "body[3].pool.size",
     r"impossible shape: pool of size 2 on a 1x1 input: too many downsampling layers for the input size \(space input 1x8x8\)"),
    ("impossible-stride-decision", IMG + "  - repeat: {times: [2, 4], body: [{conv: {out: 4, stride: 2}}]}\n", "body[0].repeat[3].body[0].conv.stride",
     r"stride 2 on a 1x1 input.*decided by body\[0\]\.repeat\.times = 4"),
    ("dense-then-conv", "input: [1, 8, 8]\nbody:\n  - dense: 8\n  - conv: {out: 4}\n", "body[1].conv",
     r"conv needs an image input \(C, H, W\), got a flat vector of 8"),
    ("unknown-cell-op", "input: [3, 8, 8]\nbody:\n  - cell: {ops: [none, conv_3x3]}\n", "body[0].cell.ops",
     r"unknown cell operation 'conv_3x3' \(did you mean 'sep_conv_3x3'\?\); expected one of none, skip_connect"),
    ("cell-ops-not-a-list", "input: [3, 8, 8]\nbody:\n  - cell: {ops: skip_connect}\n", "body[0].cell.ops", r"expected a non-empty list of edge operations"),
    ("cell-ops-missing", "input: [3, 8, 8]\nbody:\n  - cell: {nodes: 3}\n", "body[0].cell.ops", r"expected a non-empty list of edge operations"),
    ("cell-too-many-nodes", "input: [3, 8, 8]\nbody:\n  - cell: {nodes: 20, ops: [none, skip_connect]}\n", "body[0].cell.nodes", r"expected an integer <= 12, got 20"),
    ("cell-on-vector", "input: [4]\nbody:\n  - cell: {ops: [skip_connect]}\n", "body[0].cell",
     r"impossible shape: cell needs an image input \(C, H, W\), got a flat vector of 4"),
    ("decision-on-cell-nodes", "input: [3, 8, 8]\nbody:\n  - cell: {nodes: [3, 4], ops: [none, skip_connect]}\n", "body[0].cell.nodes",
     r"this field is fixed by the space and cannot be searched"),
    ("decision-on-repeat-share", IMG + "  - repeat: {times: 2, share: [true, false], body: [conv: {out: 4}]}\n", "body[0].repeat.share", r"expected true or false"),
    ("repeat-without-times", IMG + "  - repeat: {body: [{conv: {out: 8}}]}\n", "body[0].repeat.times", r"missing: how many times to repeat the body"),
    ("repeat-without-body", IMG + "  - repeat: {times: 2}\n", "body[0].repeat.body", r"missing: the list of layers to repeat"),
    ("repeat-times-string", IMG + "  - repeat: {times: many, body: [{conv: {out: 8}}]}\n", "body[0].repeat.times", r"expected an integer, got 'many'"),
    ("repeat-times-negative", IMG + "  - conv: {out: 4}\n  - repeat: {times: -1, body: [{conv: {out: 8}}]}\n", "body[1].repeat.times", r"expected an integer >= 0, got -1"),
    ("choose-without-options", IMG + "  - choose: {}\n", "body[0].choose.options", r"expected a mapping of option names to a layer or a list of layers"),
    ("choose-options-list", IMG + "  - choose: {options: [conv, pool]}\n", "body[0].choose.options", r"expected a mapping of option names"),
    ("choose-bad-option", IMG + "  - choose: {options: {a: {conv: {kernel: 2}}}}\n", "body[0].choose.options.a[0].conv.kernel", r"expected an odd integer, got 2"),
    ("unknown-ref", IMG + "  - conv: {out: $width}\n", "body[0].conv.out", r"unknown decision 'width'; declare it under `decisions:`"),
    ("unknown-ref-typo", "input: [1, 8, 8]\ndecisions:\n  width: [8, 16]\nbody:\n  - conv: {out: $widht}\n", "body[0].conv.out",
     r"unknown decision 'widht' \(did you mean 'width'\?\)"),
    ("ref-wrong-type", "input: [1, 8, 8]\ndecisions:\n  act: [relu, big]\nbody:\n  - conv: {out: 8, act: $act}\n", "body[0].conv.act",
     r"choice 'big': expected an activation"),
    ("declared-decision-not-a-decision", "input: [4]\ndecisions:\n  w: 5\nbody: [dense: $w]\n", "decisions.w", r"expected a decision: a list of choices"),
    ("unknown-train-field", VEC + "train:\n  learning_rate: 0.1\n", "train.learning_rate", r"unknown field; expected one of optimizer, lr, momentum"),
    ("train-field-typo", VEC + "train:\n  optimiser: adam\n", "train.optimiser", r"did you mean 'optimizer'\?"),
    ("train-not-a-mapping", VEC + "train: [adam]\n", "train", r"expected a mapping of fields \(optimizer, lr"),
    ("string-lr", VEC + "train:\n  lr: fast\n", "train.lr", r"expected a number, got 'fast'"),
    ("bad-optimizer", VEC + "train:\n  optimizer: adamm\n", "train.optimizer", r"expected an optimizer: sgd, momentum, nesterov, adagrad, adam, adamw; got 'adamm'"),
    ("bad-optimizer-in-choice", VEC + "train:\n  optimizer: [adam, rmsprop]\n", "train.optimizer", r"choice 'rmsprop': expected an optimizer"),
    ("bad-head-pool", VEC + "head: {pool: mean}\n", "head.pool", r"expected a head pooling: avg, max, flatten; got 'mean'"),
    ("constraint-with-decision", VEC + "constraints:\n  max_params: [1000, 2000]\n", "constraints.max_params", r"fixed by the space and cannot be searched"),
    ("unknown-constraint", VEC + "constraints:\n  max_memory: 10\n", "constraints.max_memory", r"unknown field; expected one of max_params, max_flops"),
    ("layer-is-a-number", IMG + "  - 42\n", "body[0]", r"expected a layer such as \{conv: \{out: 32\}\} or a layer name, got 42"),
    ("layer-is-a-list", IMG + "  - [conv, pool]\n", "body[0]", r"expected a layer such as"),
    ("two-layer-types", IMG + "  - conv: {out: 8}\n    pool: max\n", "body[0]", r"a layer is a mapping with one layer type as its key, got conv, pool"),
    ("no-layer-type", IMG + "  - {when: {a: 1}}\n", "body[0]", r"one layer type as its key, got when"),
    ("layer-scalar-without-primary", IMG + "  - conv: 8\n", "body[0].conv", r"expected a mapping of fields \(out, kernel, stride"),
    ("label-given-twice", IMG + "  - conv: {out: 8, label: a}\n    label: b\n", "body[0].conv.label", r"`label` is given twice"),
    ("stage-placeholder-outside-repeat", IMG + "  - conv: {out: {choice: [8, 16], label: 'stage{stage}.width'}}\n", "body[0].conv.out.label",
     r"label 'stage\{stage\}\.width' has a placeholder that is not an enclosing repeat .*known: none here"),
    ("placeholder-of-other-repeat", IMG + "  - repeat: {label: blocks, times: 2, body: [{conv: {out: {choice: [8, 16], label: 'stage{stage}.w'}}}]}\n",
     "body[0].repeat.body[0].conv.out.label", r"not an enclosing repeat.*known: \{i\}, \{blocks\}"),
    ("name-not-a-string", "name: 5\n" + VEC, "name", r"expected a string, got 5"),
]

IDS = [case[0] for case in CASES]
assert len(IDS) == len(set(IDS)) and len(CASES) >= 30


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """`nas spaces sample` builds networks in this process: one intra-op thread keeps it quick
    on a small shared CPU (two spinning OpenMP threads can be tens of times slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    return python_env(OMP_NUM_THREADS="1")


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def check_one_line_error(err: str, *parts: str, reason: str | None = None) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert err.endswith("\n")
    line = lines[0]
    for part in parts:
        assert part in line, (part, line)
    if reason is not None:
        assert re.search(reason, line), (reason, line)
    return line


@pytest.mark.parametrize("name, text, where, reason", CASES, ids=IDS)
def test_malformed_space_is_one_line_naming_file_field_and_reason(tmp_path: Path, capsys, name: str, text: str, where: str, reason: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert main(["spaces", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = check_one_line_error(err, str(path), where, reason=reason)
    assert line.startswith(f"error: {path}: ")
    # the library raises the same message as a SpaceError
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_yaml(path).check()
    assert str(info.value) in line
    assert info.value.source == str(path)


@pytest.mark.parametrize("name", ["yaml-syntax", "unknown-layer-type", "impossible-shape", "condition-cycle", "unknown-ref"])
def test_malformed_space_through_a_real_process(tmp_path: Path, name: str) -> None:
    _, text, where, reason = CASES[IDS.index(name)]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    proc = run_cli("spaces", "validate", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    check_one_line_error(proc.stderr, str(path), where, reason=reason)


def test_nonexistent_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["spaces", "validate", str(path)]) == 2
    check_one_line_error(capsys.readouterr().err, str(path), reason=r"no such file")
    proc = run_cli("spaces", "validate", str(path))
    assert proc.returncode == 2
    check_one_line_error(proc.stderr, str(path), reason=r"no such file")


def test_a_directory(tmp_path: Path, capsys) -> None:
    assert main(["spaces", "validate", str(tmp_path)]) == 2
    check_one_line_error(capsys.readouterr().err, str(tmp_path), reason=r"cannot read the file: IsADirectoryError")
    proc = run_cli("spaces", "validate", str(tmp_path))
    assert proc.returncode == 2
    check_one_line_error(proc.stderr, str(tmp_path), reason=r"cannot read the file")


def test_a_file_used_as_a_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "plain.txt").write_text("x")
    path = tmp_path / "plain.txt" / "space.yaml"
    assert main(["spaces", "validate", str(path)]) == 2
    check_one_line_error(capsys.readouterr().err, str(path), reason=r"cannot read the file")


def test_undecodable_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"input: [4]\nbody: [dense: 8]\n\xff\xfe\x00")
    assert main(["spaces", "validate", str(path)]) == 2
    check_one_line_error(capsys.readouterr().err, str(path), reason=r"cannot read the file")


def test_unknown_shipped_name(capsys) -> None:
    assert main(["spaces", "show", "nosuchspace"]) == 2
    check_one_line_error(capsys.readouterr().err, "nosuchspace", reason=r"no such space file or shipped space; shipped: cnn, mlp, nb201, resnet")


def test_good_and_bad_files_together(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(IMG + "  - conv: {out: 8, kernel: 4}\n")
    good = tmp_path / "good.yaml"
    good.write_text(IMG + "  - conv: {out: [8, 16]}\n")
    assert main(["spaces", "validate", str(good), str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    check_one_line_error(err, str(bad), "body[0].conv.kernel")
    assert out.count(f"ok  {good}") == 2
    assert main(["spaces", "validate", str(good)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "2 architectures" in out


def test_retargeted_validation(tmp_path: Path, capsys) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("input: [1, 32, 32]\nbody:\n  - pool: max\n  - pool: max\n  - pool: max\n  - pool: max\n")
    assert main(["spaces", "validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["spaces", "validate", str(path), "--input", "1,8,8"]) == 2
    check_one_line_error(capsys.readouterr().err, str(path), "body[3].pool.size", reason=r"space input 1x8x8")
    # the shipped image spaces fit 8x8 inputs (digits)
    assert main(["spaces", "validate", "--input", "1,8,8", *(str(shipped_spaces()[n]) for n in ("cnn", "resnet"))]) == 0
    # but not 4x4
    assert main(["spaces", "validate", "--input", "1,4,4", str(shipped_spaces()["cnn"])]) == 2
    check_one_line_error(capsys.readouterr().err, "cnn.yaml", "pool", reason=r"decided by stage\.times = 3")


def test_all_shipped_spaces_validate_from_the_repo_root() -> None:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "search_spaces").glob("*.yaml"))
    assert len(files) == 4
    proc = run_cli("spaces", "validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for f in files:
        assert f"ok  {f}" in proc.stdout


# -- CLI smoke tests ----------------------------------------------------------------------------
def test_spaces_list(capsys) -> None:
    assert main(["spaces", "list"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for name in ("cnn", "mlp", "nb201", "resnet"):
        assert re.search(rf"^{name}\s", out, re.M), out
    assert "15.6k" in out


def test_spaces_show_nb201(capsys) -> None:
    assert main(["spaces", "show", "nb201"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "15,625 architectures" in out
    assert "cell.3<-2" in out
    assert SearchSpace.from_yaml(shipped_spaces()["nb201"]).fingerprint in out


def test_spaces_show_mlp_json(capsys) -> None:
    assert main(["spaces", "show", "mlp", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(out)
    assert data["name"] == "mlp"
    assert data["input"] == [64] and data["classes"] == 10
    assert data["size"] == 570_037_273_200
    labels = [d["label"] for d in data["decisions"]]
    assert len(labels) == 23 and "train.momentum" in labels
    momentum = data["decisions"][labels.index("train.momentum")]
    assert momentum["values"] == [0.8, 0.9, 0.95]
    assert "train.optimizer = 'momentum'" in momentum["when"]
    assert data["decisions"][labels.index("train.optimizer")]["when"] is None


def test_spaces_sample_is_seeded(capsys) -> None:
    assert main(["spaces", "sample", "cnn", "--n", "3", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["spaces", "sample", "cnn", "--n", "3", "--seed", "1"]) == 0
    second = capsys.readouterr().out
    assert first == second
    assert len([line for line in first.splitlines() if re.match(r"^\d+\s+[0-9a-f]{16}\s", line)]) == 3
    assert main(["spaces", "sample", "cnn", "--n", "3", "--seed", "2"]) == 0
    assert capsys.readouterr().out != first


def test_spaces_sample_json_matches_a_real_process(capsys) -> None:
    assert main(["spaces", "sample", "nb201", "--n", "2", "--seed", "3", "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    proc = run_cli("spaces", "sample", "nb201", "--n", "2", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == here
    assert all(r["params"] > 0 and r["flops"] > 0 and len(r["key"]) == 16 for r in here)


@pytest.mark.parametrize("argv, mentions", [
    (["spaces", "sample", "cnn", "--n", "0"], "--n"),
    (["spaces", "sample", "cnn", "--n", "x"], "--n"),
    (["spaces", "validate", "x.yaml", "--input", "1,2"], "--input"),
    (["spaces", "show", "mlp", "--bogus"], "--bogus"),
    (["spaces", "frobnicate"], "frobnicate"),
])
def test_bad_flags_exit_2_with_one_line(capsys, argv: list[str], mentions: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    check_one_line_error(err, mentions)


def test_bad_flag_through_a_real_process() -> None:
    proc = run_cli("spaces", "sample", "cnn", "--n", "0")
    assert proc.returncode == 2
    assert proc.stdout == ""
    check_one_line_error(proc.stderr, "--n", reason=r"expected a positive integer, got 0")
