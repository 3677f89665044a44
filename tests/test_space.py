"""Behaviour of the search-space language: loading, sizes, seeded operations, genomes,
fingerprints, shared labels, conditions, keys and the NAS-Bench-201 cell space."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import python_env
from nas.build import build_model
from nas.nb201 import EDGES, NB201Table
from nas.space import (
    Architecture,
    InvalidArchitecture,
    SearchSpace,
    SpaceError,
    dsl,
    load_space,
    shipped_spaces,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = sorted(shipped_spaces())


def test_shipped_spaces_are_the_four_known_ones() -> None:
    assert NAMES == ["cnn", "mlp", "nb201", "resnet"]
    # the repo-root `search_spaces` is the package folder (a symlink), not a stale copy
    assert (REPO / "search_spaces").resolve() == (REPO / "nas" / "search_spaces").resolve()




def assert_exact_active_set(space: SearchSpace, arch: Architecture) -> None:
    """`arch` holds a value for exactly the decisions active under its own values: `make`
    raises on a missing active decision and drops inactive ones."""
    again = space.make(dict(arch))
    assert again == arch
    assert set(again) == set(arch)


# -- loading, checking, sizes ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shipped_space_loads_and_checks(name: str) -> None:
    by_name = load_space(name)
    by_path = load_space(shipped_spaces()[name])
    by_link = SearchSpace.from_yaml(REPO / "search_spaces" / f"{name}.yaml")
    assert by_name.fingerprint == by_path.fingerprint == by_link.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", by_name.fingerprint)
    assert by_name.name == name
    assert by_name.decisions, "a shipped space searches something"
    by_name.check()  # raises SpaceError on an impossible shape
    assert by_name.size() is not None and by_name.size() > 1
    # labels are unique; every decision has at least one value
    assert len(set(by_name.labels)) == len(by_name.labels)
    assert all(len(d.values) >= 1 for d in by_name.decisions)


def _hand_sizes() -> dict[str, int]:
    # nb201: 6 edges, 5 ops each
    nb201 = 5**6
    # mlp: 1-4 dense layers of units(6) x act(5) x norm(2) x dropout(3); optimizer: 3 without
    # momentum + momentum x 3 momentum values; lr 5, weight decay 3, schedule 2, batch 3
    layer = 6 * 5 * 2 * 3
    mlp = sum(layer**d for d in range(1, 5)) * (3 + 3) * 5 * 3 * 2 * 3
    # resnet: stem width 2; 1-3 stages of resblock out(4) x act(2) and 0-2 residual units of
    # skip(2) x kernel(2) x act(2); head dropout 2; optimizer 2, lr 3, wd 2, batch 2
    unit = 2 * 2 * 2
    stage = 4 * 2 * (1 + unit + unit**2)
    resnet = 2 * (stage + stage**2 + stage**3) * 2 * (2 * 3 * 2 * 2)
    # cnn: shared act(4); 1-3 stages, each: one width (shared by its blocks, 4), pool kind 2,
    # 1-3 blocks of conv (kernel 2 x norm 2) or sep_conv (kernel 2); final dropout 2;
    # optimizer adam or momentum (one momentum value), lr 3, wd 2, batch 2
    block = 2 * 2 + 2
    cstage = 4 * 2 * (block + block**2 + block**3)
    cnn = 4 * (cstage + cstage**2 + cstage**3) * 2 * (2 * 3 * 2 * 2)
    return {"nb201": nb201, "mlp": mlp, "resnet": resnet, "cnn": cnn}


@pytest.mark.parametrize("name", NAMES)
def test_shipped_space_size_by_hand(spaces: dict[str, SearchSpace], name: str) -> None:
    assert spaces[name].size() == _hand_sizes()[name]


def test_nb201_size_is_15625(spaces: dict[str, SearchSpace]) -> None:
    assert spaces["nb201"].size() == 15_625
    assert spaces["nb201"].genome_sizes() == (5,) * 6


TINY = """
name: tiny
input: [4]
classes: 3
body:
  - repeat:
      times: {int: [0, 2]}
      body:
        - dense: {units: [4, 8], act: [relu, tanh]}
  - choose:
      options:
        nothing: null
        extra: {dense: {units: [3, 5]}}
train:
  optimizer: [adam, momentum]
  momentum: {choice: [0.5, 0.9], when: {train.optimizer: momentum}}
"""
# repeat: 0 layers (1) + 1 layer (2x2) + 2 layers (4x4) = 21; choose: nothing (1) + extra (2) = 3;
# train: adam (1) + momentum x 2 = 3
TINY_SIZE = 21 * 3 * 3


def _all_archs(space: SearchSpace) -> list[Architecture]:
    return [space.decode(g) for g in itertools.product(*(range(n) for n in space.genome_sizes()))]


def test_tiny_space_size_by_hand_and_by_enumerating_genomes(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml(TINY)
    assert space.size() == TINY_SIZE == 189
    archs = _all_archs(space)
    assert len(archs) == 3 * 2**8  # the genome product counts inactive genes too
    distinct = set(archs)
    assert len(distinct) == TINY_SIZE
    assert all(a.valid for a in archs)
    # every distinct architecture builds a distinct network here
    assert len({a.key for a in distinct}) == TINY_SIZE
    for a in distinct:
        assert_exact_active_set(space, a)
    # sampling only ever returns members of the enumerated set
    assert set(space.sample_many(300, seed=1)) <= distinct


def test_tiny_cell_space_counts_validity_and_isomorphism_by_hand(tmp_path: Path, space_from_yaml) -> None:
    # one cell of 3 nodes: edges 1<-0, 2<-0, 2<-1, each none / skip_connect / nor_conv_1x1
    space = space_from_yaml("""
input: [2, 4, 4]
body:
  - cell: {nodes: 3, ops: [none, skip_connect, nor_conv_1x1]}
""")
    assert space.size() == 27
    archs = _all_archs(space)
    assert len(set(archs)) == 27
    invalid = [a for a in archs if not a.valid]
    # cut off iff 2<-0 is none and the path through node 1 is broken: 9 - 2x2 = 5 cells
    assert len(invalid) == 5
    assert all("cut off" in a.error for a in invalid)
    # distinct minimal networks (s = skip_connect, c, c' = two 1x1 convs): x (s, s-s, ...),
    # c(x), c(c'(x)), x + x, x + c(x) (also s + c-s: node 1 is summed into the output),
    # c(x) + c'(x), x + c(c'(x)), c(x) + c'(c''(x))
    keys = {a.key for a in archs if a.valid}
    assert len(keys) == 8
    # every key builds one parameter count: 0, 1, 2 or 3 convs of 2x2 weights and a batch norm
    by_key: dict[str, set[int]] = {}
    for a in archs:
        if a.valid:
            net = space.resolve(a).net
            cells = [layer for layer in net["body"] if layer["type"] == "cell"]
            convs = sum(op == "nor_conv_1x1" for layer in cells for _, _, op in layer["edges"])
            by_key.setdefault(a.key, set()).add(convs)
    assert all(len(v) == 1 for v in by_key.values())
    assert sorted(min(v) for v in by_key.values()) == [0, 0, 1, 1, 2, 2, 2, 3]


def test_size_returns_none_past_the_limit(spaces: dict[str, SearchSpace]) -> None:
    assert spaces["cnn"].size(limit=10) is None
    assert spaces["cnn"].size() == _hand_sizes()["cnn"]


# -- seeded determinism ------------------------------------------------------------------------
def _ops_summary(space: SearchSpace, seed: int) -> list:
    rng = random.Random(seed)
    archs = space.sample_many(12, seed=seed)
    one = [space.mutate(a, rng, n=1) for a in archs]
    three = [space.mutate(a, rng, n=3) for a in archs]
    kids = [space.crossover(archs[i], archs[i + 1], rng) for i in range(len(archs) - 1)]
    single = space.sample(seed)
    return [[dict(a) for a in archs], [a.key for a in archs], [dict(a) for a in one], [dict(a) for a in three],
            [dict(a) for a in kids], dict(single), [space.encode(a) for a in archs]]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_samples_mutations_crossovers(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    assert _ops_summary(space, 3) == _ops_summary(space, 3)
    # a freshly loaded copy of the space behaves the same
    assert _ops_summary(load_space(name), 3) == _ops_summary(space, 3)
    # random.Random instances and int seeds agree
    assert space.sample(5) == space.sample(random.Random(5))
    assert space.mutate(space.sample(5), 9, n=3) == space.mutate(space.sample(5), random.Random(9), n=3)


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_differ(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    a, b = _ops_summary(space, 3), _ops_summary(space, 4)
    for part_a, part_b in zip(a[:5], b[:5]):  # samples, keys, mutations, crossovers
        assert part_a != part_b


CROSS_PROCESS = r"""
import hashlib, json, random, sys
from nas.space import load_space, shipped_spaces

def summary():
    out = {}
    for name in sorted(shipped_spaces()):
        space = load_space(name)
        rng = random.Random(11)
        archs = space.sample_many(15, seed=2)
        out[name] = {
            "fingerprint": space.fingerprint,
            "keys": [a.key for a in archs],
            "values": [sorted((k, repr(v)) for k, v in a.items()) for a in archs],
            "mut1": [space.mutate(a, rng, n=1).key for a in archs],
            "mut3": [space.mutate(a, rng, n=3).key for a in archs],
            "cross": [space.crossover(archs[i], archs[i + 1], rng).key for i in range(len(archs) - 1)],
            "genomes": [list(space.encode(a)) for a in archs],
        }
    return out

if __name__ == "__main__":
    print(json.dumps(summary(), sort_keys=True))
"""


def test_determinism_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    script = tmp_path / "summary.py"
    script.write_text(CROSS_PROCESS)
    namespace: dict = {"__name__": "summary"}
    exec(compile(CROSS_PROCESS, str(script), "exec"), namespace)
    here = json.loads(json.dumps(namespace["summary"](), sort_keys=True))
    env = python_env()
    for hashseed in ("0", "4242"):
        proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                              env={**env, "PYTHONHASHSEED": hashseed}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        there = json.loads(proc.stdout)
        for name in here:
            assert there[name]["fingerprint"] == here[name]["fingerprint"], (name, hashseed)
            assert there[name] == here[name], (name, hashseed)


# -- mutation and crossover --------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 3])
def test_mutate_gives_a_valid_different_architecture(spaces: dict[str, SearchSpace], name: str, n: int) -> None:
    space = spaces[name]
    for i, parent in enumerate(space.sample_many(25, seed=n)):
        child = space.mutate(parent, random.Random(i), n=n)
        assert child.valid and child.error is None
        assert child != parent
        assert child.fingerprint == space.fingerprint
        assert_exact_active_set(space, child)
        common = set(parent) & set(child)
        changed = {label for label in common if parent[label] != child[label]}
        # decisions a change activates or deactivates are not counted; the changed ones stay active
        if n == 1:
            assert len(changed) == 1
        else:
            assert 1 <= len(changed) <= n
        for label in child:
            assert child[label] in space.decision(label).values


REPEAT_SPACE = """
input: [4]
body:
  - repeat:
      times: {int: [1, 3]}
      body:
        - dense: {units: [8, 16]}
train:
  optimizer: adam
"""


def test_mutating_repeat_times_activates_and_drops_decisions(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml(REPEAT_SPACE)
    times = "body[0].repeat.times"
    unit = "body[0].repeat[{}].body[0].dense.units"
    assert space.labels == (times, unit.format(0), unit.format(1), unit.format(2))

    short = space.make({times: 1, unit.format(0): 16})
    grown: dict[int, Architecture] = {}
    for seed in range(200):
        child = space.mutate(short, random.Random(seed), n=1)
        if child[times] != 1:
            grown[child[times]] = child
            # only `times` changed: the first layer keeps its width
            assert child[unit.format(0)] == 16
            # the copies it switched on have values of their own
            assert set(child) == {times} | {unit.format(i) for i in range(child[times])}
            assert all(child[unit.format(i)] in (8, 16) for i in range(child[times]))
    assert set(grown) == {2, 3}

    tall = space.make({times: 3, unit.format(0): 8, unit.format(1): 16, unit.format(2): 8})
    shrunk = set()
    for seed in range(200):
        child = space.mutate(tall, random.Random(seed), n=1)
        if child[times] != 3:
            shrunk.add(child[times])
            # switched-off copies are dropped, the rest kept
            assert set(child) == {times} | {unit.format(i) for i in range(child[times])}
            assert all(child[unit.format(i)] == tall[unit.format(i)] for i in range(child[times]))
    assert shrunk == {1, 2}


def test_mutate_with_nothing_to_change_returns_the_architecture(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("input: [4]\nbody: [dense: 8]\n")
    arch = space.sample(0)
    assert len(arch) == 0 and space.size() == 1
    assert space.mutate(arch, 0) == arch


@pytest.mark.parametrize("name", NAMES)
def test_crossover_takes_every_value_from_a_parent_where_possible(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    parents = space.sample_many(40, seed=7)
    mixed = 0
    for i in range(0, len(parents), 2):
        a, b = parents[i], parents[i + 1]
        for seed in range(3):
            child = space.crossover(a, b, random.Random(seed))
            assert child.valid
            assert_exact_active_set(space, child)
            for label, value in child.items():
                from_parents = [p[label] for p in (a, b) if label in p]
                if from_parents:
                    assert value in from_parents, label
                else:
                    assert value in space.decision(label).values
            if child != a and child != b:
                mixed += 1
    assert mixed > 0, "uniform crossover never mixed two different parents"


def test_crossover_of_an_architecture_with_itself_is_itself(spaces: dict[str, SearchSpace]) -> None:
    for name in NAMES:
        space = spaces[name]
        for a in space.sample_many(10, seed=1):
            assert space.crossover(a, a, random.Random(0)) == a


# -- genomes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_round_trip(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    sizes = space.genome_sizes()
    for arch in space.sample_many(200, seed=13):
        genome = space.encode(arch)
        assert len(genome) == len(space.decisions) == len(sizes)
        assert all(isinstance(g, int) and 0 <= g < n for g, n in zip(genome, sizes))
        back = space.decode(genome)
        assert back == arch
        assert back.key == arch.key
        assert space.encode(back) == genome
        # decode accepts any integer sequence, e.g. a numpy array
        assert space.decode(np.asarray(genome)) == arch


def test_decode_ignores_genes_of_inactive_decisions(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["mlp"]
    labels = space.labels
    times = labels.index("body[0].repeat.times")
    deep_units = labels.index("body[0].repeat[3].body[0].dense.units")
    genome = [0] * len(labels)
    genome[times] = 0  # one layer: the fourth layer's units are inactive
    archs = set()
    for g in range(len(space.decision(labels[deep_units]).values)):
        genome[deep_units] = g
        archs.add(space.decode(genome))
    assert len(archs) == 1
    genome[times] = 3  # four layers: now the gene matters
    assert space.decode(genome) != space.decode([*genome[:deep_units], 0, *genome[deep_units + 1:]])


@pytest.mark.parametrize("name", NAMES)
def test_decode_rejects_bad_genomes(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    n = len(space.decisions)
    with pytest.raises(InvalidArchitecture, match=rf"{n - 1} genes.*{n} decisions"):
        space.decode([0] * (n - 1))
    with pytest.raises(InvalidArchitecture, match=rf"{n + 1} genes"):
        space.decode([0] * (n + 1))
    first = space.decisions[0]
    too_big = [len(first.values)] + [0] * (n - 1)
    with pytest.raises(InvalidArchitecture, match=re.escape(repr(first.label)) + ".*out of range"):
        space.decode(too_big)
    with pytest.raises(InvalidArchitecture, match="out of range"):
        space.decode([-1] + [0] * (n - 1))


# -- fingerprints -----------------------------------------------------------------------------
BASE = """# a comment
name: base
description: the base space
input: [1, 8, 8]
classes: 4
body:
  - conv: {out: [8, 16], kernel: 3}
  - pool: max
  - dense: {units: 32, act: relu}
train:
  optimizer: [adam, sgd]
  epochs: 5
"""


def _fp(space_from_yaml, text: str) -> str:
    return space_from_yaml(text, f"fp{abs(hash(text))}.yaml").fingerprint


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda t: t.replace("out: [8, 16]", "out: [8, 16, 32]"), id="choice-added"),
        pytest.param(lambda t: t.replace("out: [8, 16]", "out: [8, 32]"), id="choice-changed"),
        pytest.param(lambda t: t.replace("epochs: 5", "epochs: 6"), id="fixed-value-changed"),
        pytest.param(lambda t: t.replace("act: relu", "act: gelu"), id="default-overridden"),
        pytest.param(lambda t: t.replace("units: 32, act: relu", "units: 32, act: relu, norm: batch"), id="default-changed"),
        pytest.param(lambda t: t.replace("pool: max", "pool: avg"), id="primary-field-changed"),
        pytest.param(lambda t: t.replace("input: [1, 8, 8]", "input: [1, 9, 9]"), id="input-changed"),
        pytest.param(lambda t: t.replace("classes: 4", "classes: 5"), id="classes-changed"),
        pytest.param(lambda t: t + "head: {dropout: 0.1}\n", id="head-changed"),
        pytest.param(lambda t: t.replace("out: [8, 16]", "out: {choice: [8, 16], label: width}"), id="label-changed"),
        pytest.param(lambda t: t + "constraints: {max_params: 1000}\n", id="constraint-added"),
    ],
)
def test_fingerprint_changes_when_the_space_changes(space_from_yaml, edit) -> None:
    changed = edit(BASE)
    assert changed != BASE
    assert _fp(space_from_yaml, changed) != _fp(space_from_yaml, BASE)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda t: t.replace("name: base", "name: renamed"), id="name"),
        pytest.param(lambda t: t.replace("the base space", "another description"), id="description"),
        pytest.param(lambda t: t.replace("# a comment", "# another comment\n# and one more"), id="comments"),
        pytest.param(lambda t: t.replace("  - pool: max\n", "  - pool: max   # halve\n\n"), id="trailing-comment"),
        pytest.param(lambda t: t.replace("kernel: 3}", "kernel: 3, stride: 1}"), id="explicit-default"),
        pytest.param(lambda t: t.replace("{out: [8, 16], kernel: 3}", "{kernel: 3, out: [8, 16]}"), id="key-order"),
        pytest.param(lambda t: t.replace("out: [8, 16]", "out: {choice: [8, 16]}"), id="list-vs-choice"),
        pytest.param(lambda t: t.replace("name: base\ndescription: the base space\n", ""), id="no-name"),
    ],
)
def test_fingerprint_ignores_names_descriptions_comments(space_from_yaml, edit) -> None:
    same = edit(BASE)
    assert same != BASE
    assert _fp(space_from_yaml, same) == _fp(space_from_yaml, BASE)


def test_fingerprint_of_shipped_file_ignores_comments(space_from_yaml, spaces: dict[str, SearchSpace]) -> None:
    for name in NAMES:
        text = shipped_spaces()[name].read_text()
        stripped = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert stripped != text
        renamed = stripped.replace(f"name: {name}", "name: other")
        assert _fp(space_from_yaml, renamed) == spaces[name].fingerprint


def test_architectures_carry_their_space_fingerprint(spaces: dict[str, SearchSpace]) -> None:
    mlp, cnn = spaces["mlp"], spaces["cnn"]
    arch = mlp.sample(0)
    assert arch.fingerprint == mlp.fingerprint
    with pytest.raises(InvalidArchitecture, match="another space"):
        cnn.resolve(arch)
    assert arch.to_dict()["space"] == mlp.fingerprint
    assert mlp.make(arch.to_dict()["values"]) == arch


# -- shared labels ----------------------------------------------------------------------------
def test_two_fields_with_one_label_are_one_decision(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [6]
body:
  - dense: {units: {choice: [8, 16], label: width}, act: tanh}
  - dense: {units: {choice: [8, 16], label: width}, act: relu}
  - dense: {units: [4, 5]}
""")
    assert space.labels == ("width", "body[2].dense.units")
    assert space.size() == 2 * 2
    for w in (8, 16):
        arch = space.make({"width": w, "body[2].dense.units": 4})
        body = space.resolve(arch).net["body"]
        assert [layer["units"] for layer in body] == [w, w, 4]


def test_shared_label_through_a_declared_decision(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [1, 8, 8]
decisions:
  act: [relu, gelu]
body:
  - conv: {out: 4, act: $act}
  - conv: {out: 4, act: $act}
  - dense: {units: 8, act: $act}
""")
    assert space.labels == ("act",)
    for act in ("relu", "gelu"):
        body = space.resolve(space.make({"act": act})).net["body"]
        assert [layer["act"] for layer in body] == [act] * 3


def test_cnn_stage_placeholder_gives_one_width_per_stage(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["cnn"]
    widths = [label for label in space.labels if label.endswith("width")]
    assert widths == ["stage0.width", "stage1.width", "stage2.width"]
    for d in (space.decision(w) for w in widths):
        assert d.values == (16, 32, 64, 96)
    for arch in space.sample_many(100, seed=21):
        stages = arch["stage.times"]
        assert {w for w in widths if w in arch} == {f"stage{i}.width" for i in range(stages)}
        body = space.resolve(arch).net["body"]
        # the body is: stage 0 blocks, pool, stage 1 blocks, pool, ..., [dropout]
        segments: list[list[dict]] = [[]]
        for layer in body:
            if layer["type"] == "pool":
                segments.append([])
            elif layer["type"] in ("conv", "sep_conv"):
                segments[-1].append(layer)
        segments = segments[:-1]
        assert len(segments) == stages
        for i, blocks in enumerate(segments):
            assert len(blocks) == arch[f"stage[{i}].body[0].repeat.times"]
            assert {b["out"] for b in blocks} == {arch[f"stage{i}.width"]}


def test_shared_activation_label_in_cnn(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["cnn"]
    for arch in space.sample_many(30, seed=2):
        acts = {layer["act"] for layer in space.resolve(arch).net["body"] if layer["type"] in ("conv", "sep_conv")}
        assert acts == {arch["act"]}


# -- conditional decisions --------------------------------------------------------------------
def test_mlp_momentum_is_active_only_for_the_momentum_optimizer(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["mlp"]
    seen = set()
    for arch in space.sample_many(300, seed=4):
        uses = arch["train.optimizer"] == "momentum"
        seen.add(uses)
        assert ("train.momentum" in arch) == uses
        train = space.resolve(arch).train
        assert ("momentum" in train) == uses
        if uses:
            assert train["momentum"] == arch["train.momentum"]
    assert seen == {True, False}

    base = dict(space.sample(random.Random(1)))
    base.pop("train.momentum", None)
    adam = space.make({**base, "train.optimizer": "adam", "train.momentum": 0.95})
    assert "train.momentum" not in adam  # an inactive value is dropped
    assert adam == space.make({**base, "train.optimizer": "adam"})
    with pytest.raises(InvalidArchitecture, match="missing value.*train.momentum"):
        space.make({**base, "train.optimizer": "momentum"})
    partial = space.make({**base, "train.optimizer": "momentum"}, partial=True)
    assert partial["train.momentum"] == 0.8


def test_a_when_on_a_layer_removes_it_from_the_network(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [4]
decisions:
  extra: [false, true]
body:
  - dense: {units: 8}
  - dense: {units: [5, 6], act: tanh, when: {extra: true}}
""")
    assert space.labels == ("extra", "body[1].dense.units")
    assert space.size() == 1 + 2
    off = space.make({"extra": False, "body[1].dense.units": 6})
    assert dict(off) == {"extra": False}
    assert [layer["units"] for layer in space.resolve(off).net["body"]] == [8]
    on = space.make({"extra": True, "body[1].dense.units": 6})
    body = space.resolve(on).net["body"]
    assert [(layer["units"], layer["act"]) for layer in body] == [(8, "relu"), (6, "tanh")]
    assert off.key != on.key
    assert {dict(a).get("body[1].dense.units") for a in space.sample_many(50, seed=0)} == {None, 5, 6}


def test_a_when_on_a_decision_inside_a_repeat(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [1, 8, 8]
body:
  - repeat:
      times: 2
      body:
        - conv:
            out: 4
            norm: [batch, none]
            act: {choice: [relu, gelu], when: {"body[0].repeat[{i}].body[0].conv.norm": batch}}
""")
    act = "body[0].repeat[{}].body[0].conv.act"
    norm = "body[0].repeat[{}].body[0].conv.norm"
    # per copy: norm none (1) or batch x act (2)
    assert space.size() == 3 * 3
    arch = space.make({norm.format(0): "none", norm.format(1): "batch", act.format(1): "gelu"})
    assert set(arch) == {norm.format(0), norm.format(1), act.format(1)}
    body = space.resolve(arch).net["body"]
    assert [(x["norm"], x["act"]) for x in body] == [("none", "relu"), ("batch", "gelu")]


# -- the Python DSL ---------------------------------------------------------------------------
def test_python_dsl_matches_mlp_yaml(spaces: dict[str, SearchSpace]) -> None:
    space = dsl.space(
        name="mlp",
        description="MLPs for flat feature vectors (digits by default)",
        input=[64],
        classes=10,
        body=[
            dsl.repeat(
                dsl.integer(1, 4),
                dsl.dense(
                    units=dsl.integer(16, 512, log=True),
                    act=dsl.choice("relu", "gelu", "silu", "leaky_relu", "tanh"),
                    norm=dsl.choice("batch", "none"),
                    dropout=dsl.choice(0.0, 0.1, 0.3),
                ),
            ),
        ],
        train={
            "optimizer": dsl.choice("adam", "adamw", "momentum", "sgd"),
            "lr": dsl.real(0.0003, 0.03, log=True, num=5),
            "momentum": dsl.choice(0.8, 0.9, 0.95, when={"train.optimizer": "momentum"}),
            "weight_decay": dsl.choice(0.0, 0.0001, 0.001),
            "schedule": dsl.choice("cosine", "fixed"),
            "batch_size": dsl.choice(32, 64, 128),
            "epochs": 60,
        },
    )
    yaml_space = spaces["mlp"]
    assert space.fingerprint == yaml_space.fingerprint
    assert space == yaml_space
    assert space.labels == yaml_space.labels
    assert [d.values for d in space.decisions] == [d.values for d in yaml_space.decisions]
    assert [a.key for a in space.sample_many(20, seed=3)] == [a.key for a in yaml_space.sample_many(20, seed=3)]


def test_python_dsl_helpers_build_the_yaml_dicts(tmp_path: Path, space_from_yaml) -> None:
    py = dsl.space(
        input=[1, 8, 8],
        body=[
            dsl.conv(out=dsl.choice(8, 16, label="w"), kernel=3),
            dsl.residual(dsl.conv(out=dsl.choice(8, 16, label="w")), skip=dsl.choice(True, False)),
            dsl.choose(a=dsl.pool(kind="max"), b=None),
            dsl.layer("dropout", p=dsl.real(0.0, 0.5, num=3)),
        ],
        train={"batch_size": dsl.integer(16, 64, step=16)},
    )
    text = """
input: [1, 8, 8]
body:
  - conv: {out: {choice: [8, 16], label: w}, kernel: 3}
  - residual:
      skip: [true, false]
      body:
        - conv: {out: {choice: [8, 16], label: w}}
  - choose: {options: {a: {pool: max}, b: null}}
  - dropout: {p: {float: [0.0, 0.5], num: 3}}
train:
  batch_size: {int: [16, 64], step: 16}
"""
    assert py.fingerprint == space_from_yaml(text).fingerprint
    assert py.decision("train.batch_size").values == (16, 32, 48, 64)
    assert py.decision("body[3].dropout.p").values == (0.0, 0.25, 0.5)


# -- keys -------------------------------------------------------------------------------------
def test_residual_without_skip_is_the_plain_sequence(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [2, 8, 8]
body:
  - choose:
      options:
        res_off: {residual: {skip: false, body: [{conv: {out: 4}}, {conv: {out: 2, act: none}}]}}
        res_on: {residual: {skip: true, body: [{conv: {out: 4}}, {conv: {out: 2, act: none}}]}}
        plain: [{conv: {out: 4}}, {conv: {out: 2, act: none}}]
""")
    keys = {opt: space.make({"body[0].choose": opt}).key for opt in ("res_off", "res_on", "plain")}
    assert keys["res_off"] == keys["plain"]
    assert keys["res_on"] != keys["plain"]


def test_layers_that_do_nothing_do_not_change_the_key(tmp_path: Path, space_from_yaml) -> None:
    space = space_from_yaml("""
input: [1, 8, 8]
body:
  - conv: {out: 4}
  - choose:
      options:
        bare: null
        noops: [identity, {dropout: 0.0}, {act: none}, {norm: none}, {act: identity}]
        drop: {dropout: 0.5}
        relu: {act: relu}
  - dropout: [0.0, 0.3]
""")
    key = lambda opt, p: space.make({"body[1].choose": opt, "body[2].dropout.p": p}).key  # noqa: E731
    assert key("bare", 0.0) == key("noops", 0.0)
    assert len({key("bare", 0.0), key("drop", 0.0), key("relu", 0.0), key("bare", 0.3)}) == 4


def test_keys_ignore_labels_and_inactive_values_but_not_training(tmp_path: Path, space_from_yaml, spaces: dict[str, SearchSpace]) -> None:
    a = space_from_yaml("input: [4]\nbody:\n  - dense: {units: [8, 16]}\n", "a.yaml")
    b = space_from_yaml("name: b\ninput: [4]\nbody:\n  - dense: {units: {choice: [16, 8], label: w}}\n", "b.yaml")
    assert a.fingerprint != b.fingerprint
    assert a.make({"body[0].dense.units": 16}).key == b.make({"w": 16}).key
    assert a.make({"body[0].dense.units": 8}).key != b.make({"w": 16}).key

    mlp = spaces["mlp"]
    base = dict(mlp.make({**dict(mlp.sample(0)), "train.optimizer": "adam"}))
    arch = mlp.make(base)
    net = mlp.resolve(arch).net
    for label in ("train.lr", "train.batch_size", "train.weight_decay", "train.schedule", "train.optimizer"):
        other = next(v for v in mlp.decision(label).values if v != base[label])
        changed = mlp.make({**base, label: other}, partial=True)
        assert mlp.resolve(changed).net == net
        assert changed.key != arch.key, label


def test_declared_decision_with_alias_values_stores_the_canonical_ones(tmp_path: Path, space_from_yaml) -> None:
    import nas

    space = space_from_yaml("""
input: [64]
decisions:
  act: [ReLU, swish]
body:
  - dense: {units: 16, act: $act}
  - dense: {units: 8, act: $act, when: {act: swish}}
train: {epochs: 1}
""")
    assert space.decision("act").values == ("relu", "silu")
    assert space.make({"act": "swish"}) == space.make({"act": "silu"}) == space.parse_arch("act=swish")
    assert dict(space.parse_arch("act=ReLU")) == {"act": "relu"}
    same = space_from_yaml("input: [64]\nbody:\n  - dense: {units: 16, act: {choice: [relu, silu], label: a}}\n  - dense: {units: 8, act: silu, when: {a: silu}}\ntrain: {epochs: 1}\n", "b.yaml")
    archs = space.sample_many(20, seed=0)
    assert {a["act"] for a in archs} == {"relu", "silu"}
    for act in ("relu", "silu"):
        arch = space.make({"act": act})
        # swish is silu: one network, one key, whichever way the space spells it
        assert arch.key == same.make({"a": act}).key
        assert len(build_model(space, arch).body) == (2 if act == "silu" else 1)
    # the value that used to fail every build (KeyError: 'swish') trains
    metrics = nas.evaluate(space.make({"act": "silu"}), space=space, data="digits", device="cpu")
    assert metrics["status"] == "complete", metrics
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["params"] == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10


def test_key_is_a_hash_of_the_resolved_network(spaces: dict[str, SearchSpace]) -> None:
    for name in NAMES:
        space = spaces[name]
        for arch in space.sample_many(20, seed=8):
            res = space.resolve(arch)
            assert res.key == arch.key
            # exactly the spec that is built, and the training: nothing else, nothing less
            text = json.dumps({"net": res.net, "train": res.train}, sort_keys=True, separators=(",", ":"))
            assert res.key == hashlib.sha256(text.encode()).hexdigest()[:16]
            json.dumps(res.net)  # the spec is plain JSON
            json.dumps(res.train)


# -- text forms -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_format_and_parse_round_trip(spaces: dict[str, SearchSpace], name: str) -> None:
    space = spaces[name]
    for arch in space.sample_many(50, seed=6):
        text = space.format_arch(arch)
        assert "\n" not in text
        assert space.parse_arch(text) == arch
        assert space.parse_arch(json.dumps(arch.to_dict())) == arch
        assert space.parse_arch(dict(arch)) == arch
    assert space.is_cell_space == (name == "nb201")


def test_parse_arch_accepts_json_pairs_and_cell_strings(spaces: dict[str, SearchSpace]) -> None:
    mlp = spaces["mlp"]
    arch = mlp.sample(3)
    pairs = ", ".join(f"{k}={v}" for k, v in arch.items())  # bare strings, numbers, booleans
    assert mlp.parse_arch(pairs) == arch
    quoted = ",".join(f"{k}={json.dumps(v)}" for k, v in arch.items())
    assert mlp.parse_arch(quoted) == arch
    assert mlp.parse_arch(json.dumps(dict(arch))) == arch
    assert mlp.parse_arch(json.dumps({"values": dict(arch)})) == arch

    nb = spaces["nb201"]
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    cell = nb.parse_arch("  " + text + "\n")
    assert dict(cell) == dict(zip(nb.labels, ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect"]))
    assert nb.format_arch(cell) == text
    assert nb.parse_arch(",".join(f"{k}={v}" for k, v in cell.items())) == cell


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("nb201", "|nor_conv_3x3~0|+|", r"node 2 must look like"),
        ("nb201", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", r"'conv_9x9' is not one of the choices of 'cell.1<-0'"),
        ("nb201", "|none~0|", r"2 nodes.*has 4"),
        ("nb201", "|skip_connect~1|+|none~0|none~1|+|none~0|none~1|none~2|", r"must read from node 0"),
        ("nb201", '{"cell.1<-0": "none"}', r"missing value for decision\(s\) cell.2<-0"),
        ("mlp", "|none~0|", r"cell string fits only"),
        ("mlp", "{not json", r"JSON is malformed.*line 1 column 2"),
        ("mlp", "[1, 2]", r"expected label=value"),
        ("mlp", "train.lr=0.5", r"0.5 is not one of the choices of 'train.lr'"),
        ("mlp", "nosuch=1", r"unknown decision label 'nosuch'"),
        ("mlp", '{"train.optimizr": "adam"}', r"did you mean 'train.optimizer'"),
        ("mlp", "train.optimizer=adam", r"missing value for decision\(s\) body\[0\].repeat.times"),
        ("mlp", "body[0].repeat.times", r"expected label=value, got 'body\[0\].repeat.times'"),
    ],
)
def test_parse_arch_errors_are_readable(spaces: dict[str, SearchSpace], name: str, text: str, reason: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        spaces[name].parse_arch(text)
    message = str(info.value)
    assert re.search(reason, message), message
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(str(shipped_spaces()[name]))
    assert isinstance(info.value, SpaceError) and isinstance(info.value, ValueError)


# -- NAS-Bench-201 ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nb201_all(spaces: dict[str, SearchSpace]) -> tuple[NB201Table, SearchSpace, list[str], list[Architecture]]:
    table = NB201Table.load()
    space = spaces["nb201"]
    strings = [table.arch_str(i) for i in range(table.n)]
    return table, space, strings, [space.parse_arch(s) for s in strings]


def test_nb201_strings_round_trip(nb201_all) -> None:
    table, space, strings, archs = nb201_all
    assert len(strings) == len(set(strings)) == 15_625
    for text, arch in zip(strings, archs):
        assert space.format_arch(arch) == text
    assert len(set(archs)) == 15_625
    # the genome of index i is its table ops
    assert all(list(space.encode(a)) == table.ops[i].tolist() for i, a in enumerate(archs))


def test_nb201_cut_off_cells_are_the_tables_degenerate_ones(nb201_all) -> None:
    table, space, strings, archs = nb201_all
    invalid = np.array([not a.valid for a in archs])
    assert invalid.sum() == 341
    assert (invalid == table.degenerate).all()
    for arch in (a for a in archs if not a.valid):
        assert "cut off" in arch.error
        assert arch.key.startswith("invalid-")
        with pytest.raises(InvalidArchitecture, match="cut off"):
            space.resolve(arch)
    assert not any(a.key.startswith("invalid-") for a in archs if a.valid)


def test_nb201_distinct_networks(nb201_all) -> None:
    table, space, strings, archs = nb201_all
    keys = {a.key for a in archs if a.valid}
    print(f"NB201: {len(keys)} distinct keys among {sum(a.valid for a in archs)} valid cells")
    # NAS-Bench-201's own count of functionally distinct cells, by its `to_unique_str` rule
    # (D-X-Y/AutoDL-Projects, CellStructure.to_unique_str(consider_zero=True)), written out here
    assert len({_nb201_unique_str(s) for s in strings}) == 6_466
    # the minimal networks: dead edges dropped, skip_connect nodes contracted, sums unordered,
    # isomorphic cells merged. Fewer than NB201's count (which keeps a `#` for every zero term),
    # although that rule also merges cells that are not one network: it writes conv(x) + conv(x)
    # both for one conv summed twice and for two convs of their own
    assert len(keys) == 5_424 <= 6_466


def _nb201_unique_str(text: str) -> str:
    """NAS-Bench-201's `to_unique_str(consider_zero=True)` of an arch string: `#` is zero, a
    skip_connect is its input's string, an op is `(input)@op`, a node sorts and joins its terms."""
    nodes = {0: "0"}
    for i, group in enumerate(text.split("+"), start=1):
        terms = []
        for item in group.strip("|").split("|"):
            op, _, src = item.partition("~")
            x = nodes[int(src)]
            terms.append("#" if op == "none" or x == "#" else x if op == "skip_connect" else f"({x})@{op}")
        nodes[i] = "+".join(sorted(terms))
    return nodes[len(nodes) - 1]


def test_nb201_isomorphic_cells_share_a_key(nb201_all) -> None:
    table, space, strings, archs = nb201_all
    labels = space.labels
    assert labels == tuple(f"cell.{t}<-{f}" for t, f in EDGES)
    # swap the roles of nodes 1 and 2 (possible when there is no edge 2<-1):
    # 1<-0 <-> 2<-0 and 3<-1 <-> 3<-2
    swap = {"cell.1<-0": "cell.2<-0", "cell.2<-0": "cell.1<-0", "cell.3<-1": "cell.3<-2", "cell.3<-2": "cell.3<-1",
            "cell.2<-1": "cell.2<-1", "cell.3<-0": "cell.3<-0"}
    by_values = {tuple(a[label] for label in labels): a for a in archs}
    pairs = differing = 0
    for arch in archs:
        if not arch.valid or arch["cell.2<-1"] != "none":
            continue
        twin = by_values[tuple(arch[swap[label]] for label in labels)]
        assert twin.valid
        assert twin.key == arch.key, (space.format_arch(arch), space.format_arch(twin))
        pairs += 1
        differing += twin != arch
    assert pairs > 1000 and differing > 500

    a = space.parse_arch("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    b = space.parse_arch("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    c = space.parse_arch("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    assert a != b and a.key == b.key
    assert c.key != a.key  # the ops moved with the wrong node: a different network


def test_nb201_dead_edges_do_not_change_the_key(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["nb201"]
    # node 1 never reaches the output (3<-1 and 2<-1 are none): its input edge is dead
    keys = {space.parse_arch(f"|{op}~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|").key
            for op in ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")}
    assert len(keys) == 1


def test_nb201_cells_equal_through_skip_connect_share_a_key(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["nb201"]
    # both compute one 3x3 conv of the input: node 1 is the input's tensor in the first
    a = space.parse_arch("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    b = space.parse_arch("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert a.key == b.key
    assert space.resolve(a).net == space.resolve(b).net
    cell = next(layer for layer in space.resolve(a).net["body"] if layer["type"] == "cell")
    assert (cell["nodes"], cell["edges"]) == (2, [[1, 0, "nor_conv_3x3"]])
    # a skip chain to the output is the identity: the cells build nothing
    ident = space.parse_arch("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    assert not any(layer["type"] == "cell" for layer in space.resolve(ident).net["body"])
    assert ident.key == space.parse_arch("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|").key
    # a node used only through one skip_connect is summed where it is used
    c = space.parse_arch("|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|skip_connect~1|none~2|")
    d = space.parse_arch("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    assert c.key != d.key
    e = space.parse_arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    assert c.key == e.key  # both: conv3x3(x) + conv1x1(x) summed at the output
    # but one conv used twice is not two convs (NB201's to_unique_str writes both the same)
    twice = space.parse_arch("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|")
    two = space.parse_arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    assert _nb201_unique_str(space.format_arch(twice)) == _nb201_unique_str(space.format_arch(two))
    assert twice.key != two.key


def _tied_eval(nodes: int, edges, x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """A cell evaluated with every op of a kind the same function (a fixed random map)."""
    states = [x]
    for i in range(1, nodes):
        total = np.zeros_like(x)
        for t, f, op in edges:
            if t == i and op != "none":
                total = total + (states[f] if op == "skip_connect" else np.tanh(weights[op] @ states[f]))
        states.append(total)
    return states[-1]


def _cell_modules(edges) -> list[str]:
    return sorted(op for _, _, op in edges if op not in ("none", "skip_connect"))


def test_minimal_cells_compute_the_same_function_with_the_live_modules() -> None:
    """Every NB201 cell, and random 8-node cells: the minimal form computes what the full cell
    computes (ops of one kind tied to one function) with exactly the ops on live edges."""
    from nas.space.cell import live_edges, minimal_cell

    gen = np.random.default_rng(0)
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    weights = {op: gen.normal(size=(5, 5)) for op in ops}
    x = gen.normal(size=5)
    cells = [(4, [(t, f, op) for (t, f), op in zip(EDGES, combo)]) for combo in itertools.product(ops, repeat=6)]
    rng = random.Random(0)
    pairs = [(t, f) for t in range(1, 8) for f in range(t)]
    cells += [(8, [(t, f, rng.choice(ops[:3] + ("skip_connect",) * 2 + ("none",) * 4)) for t, f in pairs]) for _ in range(3000)]
    checked = 0
    for nodes, edges in cells:
        form = minimal_cell(nodes, edges)
        if form is None:
            continue
        n, minimal = form
        got = x if n == 1 else _tied_eval(n, minimal, x, weights)
        assert np.allclose(got, _tied_eval(nodes, edges, x, weights)), (edges, form)
        assert _cell_modules(minimal) == _cell_modules(live_edges(nodes, edges)), (edges, form)
        assert all(f < t for t, f, _ in minimal)
        assert minimal_cell(n, minimal) == form if n > 1 else True  # minimal forms are fixed points
        checked += 1
    assert checked > 15_284 + 1000


def _wl_pair() -> tuple[list, list]:
    """Two 12-node cells WL colour refinement cannot tell apart: 5 convs of the input, 5 nodes
    summing 1x1 convs of two of them, the output summing 3x3 convs of those 5. The 1x1 edges
    form one 10-cycle in the first cell, a 4-cycle and a 6-cycle in the second."""

    def cell(pairs):
        edges = [(a, 0, "nor_conv_3x3") for a in range(1, 6)]
        for b, (x, y) in zip(range(6, 11), pairs):
            edges += [(b, x, "nor_conv_1x1"), (b, y, "nor_conv_1x1")]
        return edges + [(11, b, "nor_conv_3x3") for b in range(6, 11)]

    return cell([(1, 2), (2, 3), (3, 4), (4, 5), (5, 1)]), cell([(1, 2), (1, 2), (3, 4), (4, 5), (5, 3)])


def test_cells_weisfeiler_lehman_cannot_tell_apart_get_different_keys(tmp_path: Path, space_from_yaml) -> None:
    import warnings

    import networkx as nx

    ring, split = _wl_pair()

    def wl(edges) -> str:
        graph = nx.DiGraph()
        for t, f, op in edges:
            graph.add_edge(f, t, op=op)
        for n in graph.nodes:
            graph.nodes[n]["role"] = "in" if n == 0 else "out" if n == 11 else "mid"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nx.weisfeiler_lehman_graph_hash(graph, node_attr="role", edge_attr="op", iterations=12)

    assert wl(ring) == wl(split)  # the pair really defeats WL
    space = space_from_yaml("input: [2, 4, 4]\nbody:\n  - cell: {label: c, nodes: 12, ops: [none, nor_conv_1x1, nor_conv_3x3]}\n")

    def arch(edges):
        values = {f"c.{t}<-{f}": "none" for t in range(1, 12) for f in range(t)}
        values.update({f"c.{t}<-{f}": op for t, f, op in edges})
        return space.make(values)

    a, b = arch(ring), arch(split)
    assert a.valid and b.valid and a.key != b.key
    # renumbering the intermediate nodes (keeping the DAG order) does not change the key
    order = {0: 0, 11: 11, 1: 3, 2: 1, 3: 5, 4: 2, 5: 4, 6: 8, 7: 10, 8: 6, 9: 9, 10: 7}
    assert arch([(order[t], order[f], op) for t, f, op in ring]).key == a.key


def test_canonical_form_agrees_with_brute_force() -> None:
    """Random cells with parallel edges: the canonical form is equal exactly when some
    permutation of the intermediate nodes maps one cell onto the other."""
    from nas.space.cell import canonical_form

    def brute(n, edges):
        return min(tuple(sorted((m[t], m[f], op) for t, f, op in edges))
                   for p in itertools.permutations(range(1, n - 1)) for m in [{0: 0, n - 1: n - 1, **dict(zip(range(1, n - 1), p))}])

    rng = random.Random(3)
    ops = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3")
    graphs = []
    for _ in range(150):
        n = rng.randint(4, 7)
        edges = [(t, f, rng.choice(ops)) for t in range(1, n) for f in range(t) if rng.random() < 0.4]
        edges += [(t, rng.randrange(t), rng.choice(ops)) for t in range(1, n) if not any(e[0] == t for e in edges)]
        edges += [(rng.randrange(f + 1, n), f, rng.choice(ops)) for f in range(1, n - 1) if not any(e[1] == f for e in edges)]
        edges += edges[:1] * rng.randint(0, 1)  # sometimes a parallel edge
        graphs.append((n, edges))
        perm = list(range(1, n - 1))
        rng.shuffle(perm)
        m = {0: 0, n - 1: n - 1, **dict(zip(range(1, n - 1), perm))}
        assert canonical_form(n, [(m[t], m[f], op) for t, f, op in edges]) == canonical_form(n, edges)
    for (n1, e1), (n2, e2) in itertools.combinations(graphs, 2):
        if n1 == n2 and len(e1) == len(e2):
            assert (canonical_form(n1, e1) == canonical_form(n2, e2)) == (brute(n1, e1) == brute(n2, e2))
    # symmetric cells stay fast: ten parallel convs, five parallel chains
    began = time.perf_counter()
    canonical_form(12, [(i, 0, "nor_conv_3x3") for i in range(1, 11)] + [(11, i, "nor_conv_1x1") for i in range(1, 11)])
    canonical_form(12, [e for c in range(5) for e in ((2 * c + 1, 0, "nor_conv_3x3"), (2 * c + 2, 2 * c + 1, "nor_conv_3x3"), (11, 2 * c + 2, "nor_conv_1x1"))])
    assert time.perf_counter() - began < 2.0


def test_nb201_sampling_and_search_operations_never_give_a_cut_off_cell(spaces: dict[str, SearchSpace]) -> None:
    space = spaces["nb201"]
    archs = space.sample_many(1500, seed=0)
    assert all(a.valid for a in archs)
    rng = random.Random(0)
    for a, b in zip(archs[:200], archs[200:400]):
        assert space.mutate(a, rng).valid
        assert space.mutate(a, rng, n=3).valid
        assert space.crossover(a, b, rng).valid


def test_memoised_keys_match_a_fresh_resolution_and_resolve_hands_out_copies() -> None:
    # keys come from memo tables (values tuple, cells' minimal forms, layers' texts); a space
    # whose tables are empty, resolving in the order of `make`, must agree on every key, and a
    # caller editing a resolved spec must not change what a later resolve returns
    for name in ("nb201", "cnn", "resnet"):
        space = load_space(name)
        rng = random.Random(1)
        archs = [space.sample(rng) for _ in range(150)] + [space.sample(rng) for _ in range(50)]
        fresh = load_space(name)
        for a in reversed(archs):
            res = fresh.resolve(dict(a))
            assert res.key == a.key == space.make(dict(a)).key
            text = json.dumps({"net": res.net, "train": res.train}, sort_keys=True, separators=(",", ":"), default=str)
            assert hashlib.sha256(text.encode()).hexdigest()[:16] == a.key
        first = space.resolve(archs[0])
        want = json.dumps(first.net, sort_keys=True)
        first.net["body"][1].clear()
        first.net["head"]["in"].append(7)
        first.train["lr"] = 9.0
        again = space.resolve(archs[0])
        assert json.dumps(again.net, sort_keys=True) == want and again.train == fresh.resolve(archs[0]).train
        assert again.key == archs[0].key
