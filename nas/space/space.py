"""`SearchSpace` and `Architecture`: the decisions of a space and what one set of answers builds."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .cell import _minimal, cell_string, parse_cell_string
from .compile import Compiled, Compiler, Decision, LayerT, Ref
from .errors import InvalidArchitecture, ShapeMismatch, SpaceError
from .layers import LAYERS, Shape, ShapeProblem

RngLike = random.Random | int | None


def _rng(rng: RngLike) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _replay(hit: tuple[Any, Any, Any], frags: list[Any], out: list[Any] | None) -> Any:
    """Use a memoised layer (its output shape, key fragment, layer): add its fragment to the key
    and a copy of the layer to the spec being built; return the shape after it."""
    new, frag, layer = hit
    if frag is not None:
        frags.append(frag)
        if out is not None:
            out.append(_fresh(layer))
    return new


def _fresh(obj: Any) -> Any:
    """A copy of a JSON-like spec whose dicts and lists are new objects (memoised layers are
    handed out as copies, so a caller that edits a resolved spec cannot change a later one)."""
    if type(obj) is dict:
        return {k: _fresh(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_fresh(v) for v in obj]
    return obj


#: Bound of each of a space's memo tables (cleared when full; NAS-Bench-201 needs 15,625).
MEMO_SIZE = 1 << 16

_CUT_OFF = object()  # memo marker: the cell's output is cut off from its input
_NOTHING = object()  # memo marker: the cell builds nothing (its output is its input's tensor)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Plan:
    """A template node's fields (and cell edges) as (name, label or None, default or value)."""

    __slots__ = ("fields", "const", "values", "edges", "edges_id", "by_shape")

    def __init__(self, node: LayerT, interned: dict[tuple, tuple]) -> None:
        self.fields = tuple((k, f.label, f.default) if isinstance(f, Ref) else (k, None, f.value) for k, f in node.fields.items())
        self.const = all(label is None for _, label, _ in self.fields)
        self.values = {k: v for k, _, v in self.fields} if self.const else None
        # a node with constant fields: input shape -> (shape, _canon(layer) or None, layer or None);
        # for a cell, input shape -> True once its shape check passed
        self.by_shape: dict[Any, Any] = {}
        if node.edges is None:
            self.edges = None
        else:
            edges = tuple((i, j, f.label, f.default) if isinstance(f, Ref) else (i, j, None, f.value) for i, j, f in node.edges)
            try:  # cells with the same edges share one tuple: one minimal form per resolve
                self.edges = interned.setdefault(edges, edges)
            except TypeError:  # an unhashable constant
                self.edges = edges
        self.edges_id = id(self.edges)  # alive as long as the plan

    def remember(self, shape: Any, entry: Any) -> None:
        if len(self.by_shape) >= MEMO_SIZE:
            self.by_shape.clear()
        self.by_shape[shape] = entry


class Architecture(Mapping[str, Any]):
    """A frozen label -> value mapping (active decisions only) with its space's fingerprint.

    `key` is a hash of the network spec it builds and the training it gets: architectures that
    build the same network (inactive choices dropped, cells in their minimal canonical form)
    share it, and one key is one network. `error` says
    why the space cannot build it, or is None.
    """

    __slots__ = ("_values", "fingerprint", "key", "error", "space", "_hash")

    def __init__(self, values: Mapping[str, Any], fingerprint: str, key: str, error: str | None = None,
                 space: "SearchSpace | None" = None) -> None:
        self._values = dict(values)
        self.fingerprint = fingerprint
        self.key = key
        self.error = error
        self.space = space  # the space that made it (not part of equality; not serialised)
        self._hash: int | None = None

    def __getitem__(self, label: str) -> Any:
        return self._values[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.fingerprint, tuple(sorted((k, repr(v)) for k, v in self._values.items()))))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return self.fingerprint == other.fingerprint and self._values == other._values

    def __repr__(self) -> str:
        return f"Architecture({self._values!r}, key={self.key!r})"

    @property
    def valid(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; `SearchSpace.make(d["values"])` rebuilds it."""
        return {"values": dict(self._values), "space": self.fingerprint, "key": self.key}


@dataclass(frozen=True)
class Resolved:
    """What an architecture builds: the concrete network spec and the training hyperparameters."""

    net: dict[str, Any]  # {"input", "classes", "body": [layer dicts], "head"}: torch-free, JSON-able
    train: dict[str, Any]
    key: str


class SearchSpace:
    """Ordered, labelled decisions parsed from the DSL, with seeded space operations."""

    def __init__(self, raw: Mapping[str, Any], source: str = "<dict>") -> None:
        self.raw = raw
        self.source = source
        self._c: Compiled = Compiler(source).compile(raw)
        self.decisions: tuple[Decision, ...] = tuple(self._c.decisions)
        self._by_label = {d.label: d for d in self.decisions}
        self._index = {d.label: i for i, d in enumerate(self.decisions)}
        self.fingerprint = hashlib.sha256(_canon(self._describe()).encode()).hexdigest()[:16]
        self._cell = self._single_cell()
        self._always = frozenset(d.label for d in self.decisions if () in d.sites)  # active whatever the values
        # memo tables of the resolver (results depend on the values only, see `_arch`, `_walk`)
        self._plans: dict[int, _Plan] = {}
        self._interned: dict[tuple, tuple] = {}
        self._layers: dict[tuple, tuple] = {}
        self._keys: dict[tuple, tuple[str, str | None]] = {}
        self._memo_values = self._values_are_distinct()
        self._const_head = all(not isinstance(f, Ref) for f in self._c.head.values())
        self._const_train = all(not isinstance(f, Ref) for f in self._c.train.values())
        self._json_classes = _canon(self._c.classes)
        self._json_input = _canon(list(self._c.input))
        self._static = self._static_cells()
        self._static_keys: dict[tuple, str] = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<python>") -> "SearchSpace":
        return cls(raw, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        import yaml

        path = Path(path)
        source = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SpaceError("no such file", source=source) from None
        except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, a file as a folder
            raise SpaceError(f"cannot read the file: {exc.__class__.__name__}", source=source) from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpaceError(f"YAML syntax error: {problem}", source=source, path=where) from None
        return cls(raw, source)

    def with_input(self, shape: Sequence[int] | None = None, classes: int | None = None) -> "SearchSpace":
        """The same space for another input shape or class count (e.g. the data's)."""
        raw = dict(self.raw)
        if shape is not None:
            raw["input"] = [int(s) for s in shape]
        if classes is not None:
            raw["classes"] = int(classes)
        return SearchSpace(raw, self.source)

    # -- facts ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._c.name or Path(self.source).stem

    @property
    def description(self) -> str:
        return self._c.description

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._c.input

    @property
    def classes(self) -> int:
        return self._c.classes

    @property
    def constraints(self) -> dict[str, Any]:
        return {k: v.value for k, v in self._c.constraints.items() if v.value is not None}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(d.label for d in self.decisions)

    def decision(self, label: str) -> Decision:
        try:
            return self._by_label[label]
        except KeyError:
            raise KeyError(f"no decision labelled {label!r} in {self.source}") from None

    def genome_sizes(self) -> tuple[int, ...]:
        """Number of values of each gene (one gene per decision, in `decisions` order)."""
        return tuple(len(d.values) for d in self.decisions)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.decisions)} decisions, fingerprint={self.fingerprint})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # -- activity ---------------------------------------------------------------------------
    @staticmethod
    def _holds(cond: Iterable[Any], values: Mapping[str, Any]) -> bool:
        for atom in cond:
            if atom.label not in values or values[atom.label] not in atom.allowed:
                return False
        return True

    def _active(self, d: Decision, values: Mapping[str, Any]) -> bool:
        return any(self._holds(site, values) for site in d.sites)

    def _complete(self, given: Mapping[str, Any], rng: random.Random, fill: Any = None) -> dict[str, Any]:
        """Values for every active decision: from `given`, else `fill(decision)`, else random."""
        out: dict[str, Any] = {}
        always = self._always
        for d in self.decisions:
            if d.label not in always and not self._active(d, out):
                continue
            if d.label in given:
                out[d.label] = given[d.label]
            else:
                picked = fill(d) if fill is not None else None
                out[d.label] = picked[0] if picked else rng.choice(d.values)
        return out

    # -- architectures ----------------------------------------------------------------------
    def make(self, values: Mapping[str, Any], *, partial: bool = False) -> Architecture:
        """An `Architecture` from label -> value. Unknown labels and values outside a decision's
        choices are errors; values of inactive decisions are dropped; a missing active decision
        is an error unless `partial` (then it takes its first value). A declared decision's
        value may be given as the space writes it (`swish` for the stored `silu`)."""
        values = {k: self._stored(k, v) for k, v in values.items()}
        for label, value in values.items():
            d = self._by_label.get(label)
            if d is None:
                from .fields import closest

                raise InvalidArchitecture(f"unknown decision label {label!r}{closest(label, self.labels)}", source=self.source)
            if value not in d.values:
                matched = [v for v in d.values if str(v) == str(value)]
                if not matched:
                    raise InvalidArchitecture(f"value {value!r} is not one of the choices of {label!r}: {list(d.values)}", source=self.source)
        fixed = {k: next((v for v in self._by_label[k].values if v == val or str(v) == str(val)), val) for k, val in values.items()}
        missing: list[str] = []

        def first(d: Decision) -> tuple[Any] | None:
            if not partial:
                missing.append(d.label)
            return (d.values[0],)

        out = self._complete(fixed, random.Random(0), fill=first)
        if missing:
            raise InvalidArchitecture(f"missing value for decision(s) {', '.join(missing)}", source=self.source)
        return self._arch(out)

    def _stored(self, label: str, value: Any) -> Any:
        d = self._by_label.get(label)
        if d is None or not d.aliases:
            return value
        return next((c for r, c in d.aliases if r == value), value)

    def _values_are_distinct(self) -> bool:
        """True when no decision has two equal values (1 and True, 0.0 and -0.0) or an unhashable
        one: then the values an architecture is made of (always its decisions' own value objects)
        are told apart by equality, and `_arch` may memoise key and error by the values tuple."""
        try:
            return all(len(set(d.values)) == len(d.values) for d in self.decisions)
        except TypeError:
            return False

    def _arch(self, values: dict[str, Any]) -> Architecture:
        memo = None
        if self._memo_values:
            memo = tuple(values.items())
            hit = self._keys.get(memo)
            if hit is not None:
                return Architecture(values, self.fingerprint, hit[0], hit[1], self)
        try:
            key, error = self._key_values(values), None
        except InvalidArchitecture as exc:
            digest = hashlib.sha256(_canon(values).encode()).hexdigest()[:16]
            key, error = "invalid-" + digest, f"{exc.path}: {exc.reason}" if exc.path else exc.reason
        if memo is not None:
            if len(self._keys) >= MEMO_SIZE:
                self._keys.clear()
            self._keys[memo] = (key, error)
        return Architecture(values, self.fingerprint, key, error, self)

    def sample(self, rng: RngLike = None, *, tries: int = 1000) -> Architecture:
        """A uniformly drawn value for every active decision, redrawn until the network is valid."""
        rng = _rng(rng)
        last = None
        for _ in range(tries):
            arch = self._arch(self._complete({}, rng))
            if arch.valid:
                return arch
            last = arch.error
        raise SpaceError(f"no valid architecture in {tries} samples; the last failed with: {last}", source=self.source)

    def sample_many(self, n: int, seed: int = 0) -> list[Architecture]:
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]

    def mutate(self, arch: Architecture, rng: RngLike = None, n: int = 1, *, tries: int = 100) -> Architecture:
        """Change `n` active decisions to other values; decisions this activates are drawn afresh."""
        rng = _rng(rng)
        movable = [d for d in self.decisions if d.label in arch and len(d.values) > 1]
        if not movable:
            return arch
        for _ in range(tries):
            values = dict(arch)
            for d in rng.sample(movable, min(n, len(movable))):
                values[d.label] = rng.choice([v for v in d.values if v != values[d.label]])
            child = self._arch(self._complete(values, rng))
            if child.valid and child != arch:
                return child
        raise SpaceError(f"no valid mutation of {arch.key} in {tries} tries", source=self.source)

    def crossover(self, a: Architecture, b: Architecture, rng: RngLike = None, *, tries: int = 100) -> Architecture:
        """Uniform crossover: each active decision from one parent or the other."""
        rng = _rng(rng)
        for _ in range(tries):
            out: dict[str, Any] = {}
            for d in self.decisions:
                if not self._active(d, out):
                    continue
                have = [p[d.label] for p in (a, b) if d.label in p]
                out[d.label] = rng.choice(have) if have else rng.choice(d.values)
            child = self._arch(out)
            if child.valid:
                return child
        return a

    def encode(self, arch: Architecture) -> tuple[int, ...]:
        """Integer genome: the index of each decision's value (0 for an inactive decision)."""
        return tuple(d.values.index(arch[d.label]) if d.label in arch else 0 for d in self.decisions)

    def decode(self, genome: Sequence[int]) -> Architecture:
        """Inverse of `encode`: genes of inactive decisions are ignored."""
        if len(genome) != len(self.decisions):
            raise InvalidArchitecture(f"genome has {len(genome)} genes; this space has {len(self.decisions)} decisions", source=self.source)
        picks = {}
        for d, g in zip(self.decisions, genome):
            if not 0 <= int(g) < len(d.values):
                raise InvalidArchitecture(f"gene {g} of {d.label!r} is out of range 0..{len(d.values) - 1}", source=self.source)
            picks[d.label] = d.values[int(g)]
        out: dict[str, Any] = {}
        for d in self.decisions:
            if self._active(d, out):
                out[d.label] = picks[d.label]
        return self._arch(out)

    def size(self, limit: int = 2_000_000) -> int | None:
        """Exact number of distinct architectures (assignments of active decisions), valid or
        not; None if counting would visit more than `limit` branches."""
        controllers = {a.label for d in self.decisions for site in d.sites for a in site}
        order = [d for d in self.decisions if d.label in controllers]
        leaves = [d for d in self.decisions if d.label not in controllers]
        budget = [limit]

        def count(i: int, values: dict[str, Any]) -> int:
            budget[0] -= 1
            if budget[0] < 0:
                raise OverflowError
            if i == len(order):
                return math.prod(len(d.values) for d in leaves if self._active(d, values))
            d = order[i]
            if not self._active(d, values):
                return count(i + 1, values)
            total = 0
            for v in d.values:
                values[d.label] = v
                total += count(i + 1, values)
            del values[d.label]
            return total

        try:
            return count(0, {})
        except OverflowError:
            return None

    def is_valid(self, arch: Architecture) -> bool:
        return arch.valid

    def check(self, samples: int = 64, seed: int = 0) -> None:
        """Raise SpaceError if some architecture of the space cannot be built for its input.

        Tries the architecture with every decision at its first value, the one with every
        decision at its last value (deepest repeats, last choices), and `samples` seeded random
        ones. Cells cut off by `none` edges are not errors (they are skipped when sampling).
        """
        rng = random.Random(seed)
        trials = [
            self._complete({}, rng, fill=lambda d: (d.values[0],)),
            self._complete({}, rng, fill=lambda d: (d.values[-1],)),
        ]
        trials += [self._complete({}, rng) for _ in range(samples)]
        for values in trials:
            try:
                self._resolve_values(values)
            except ShapeMismatch as exc:
                raise SpaceError(f"impossible shape: {exc.reason}", source=self.source, path=exc.path) from None
            except InvalidArchitecture:
                continue

    # -- resolution -------------------------------------------------------------------------
    def resolve(self, arch: Architecture | Mapping[str, Any]) -> Resolved:
        """The concrete network and training of `arch`; InvalidArchitecture if it cannot be built."""
        if isinstance(arch, Architecture) and arch.fingerprint != self.fingerprint:
            raise InvalidArchitecture(f"architecture belongs to another space (fingerprint {arch.fingerprint}, this space {self.fingerprint})", source=self.source)
        return self._resolve_values(dict(arch))

    def _resolve_values(self, values: Mapping[str, Any]) -> Resolved:
        body: list[dict[str, Any]] = []
        frags, shape = self._walk(self._c.body, tuple(self._c.input), values, body, {})
        head_json, head, train_json, train = self._head_train(values, shape, fresh=True)
        net = {"input": list(self._c.input), "classes": self._c.classes, "body": body, "head": head}
        return Resolved(net, train, self._key_of(frags, head_json, train_json))

    def _key_values(self, values: Mapping[str, Any]) -> str:
        """`_resolve_values(values).key` without building the spec (InvalidArchitecture alike)."""
        forms = None
        if self._static is not None:  # the key is a function of the cells' minimal forms
            forms = tuple([_minimal(n, tuple([(i, j, values.get(label, v) if label is not None else v) for i, j, label, v in edges]))
                           for edges, n in self._static])
            key = self._static_keys.get(forms)
            if key is not None:
                return key
        frags, shape = self._walk(self._c.body, tuple(self._c.input), values, None, {})
        head_json, _, train_json, _ = self._head_train(values, shape, fresh=False)
        key = self._key_of(frags, head_json, train_json)
        if forms is not None:  # resolved without a problem
            if len(self._static_keys) >= MEMO_SIZE:
                self._static_keys.clear()
            self._static_keys[forms] = key
        return key

    def _static_cells(self) -> list[tuple[tuple, int]] | None:
        """When only cells' edges are decided (every layer unconditional, every field, the head
        and the training constant, no residual blocks: a NAS-Bench-201-like space), the distinct
        (edges plan, node count) of its cells, in order: the resolved network is then a function
        of their minimal forms alone (a cell keeps its input's shape), and so are the problems
        resolving it can meet. None otherwise."""
        if not (self._const_head and self._const_train):
            return None
        out: list[tuple[tuple, int]] = []
        seen: set[tuple[int, int]] = set()
        for node in self._c.body:
            if node.cond or node.type == "residual":
                return None
            plan = self._plan(node)
            if not plan.const:
                return None
            if node.type == "cell":
                nodes = plan.values["nodes"]
                if type(nodes) is not int:
                    return None
                if (plan.edges_id, nodes) not in seen:
                    seen.add((plan.edges_id, nodes))
                    out.append((plan.edges or (), nodes))
        return out

    def _key_of(self, frags: list[str], head_json: str, train_json: str) -> str:
        # the key hashes exactly the spec `nas.ops.Network` builds (cells in their minimal,
        # canonically numbered form), so one key is one network, one parameter count and one
        # state_dict layout by construction. The text is _canon({"net": net, "train": train}),
        # put together from each layer's memoised _canon text (JSON nests: sorted keys, one
        # separator, so the parts' texts make the whole's)
        text = ('{"net":{"body":[' + ",".join(frags) + '],"classes":' + self._json_classes + ',"head":' + head_json
                + ',"input":' + self._json_input + '},"train":' + train_json + "}")
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _head_train(self, values: Mapping[str, Any], shape: Shape, fresh: bool) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
        """(_canon(head), head, _canon(train), train): the head dict and the training (fresh
        copies if `fresh`, else not to be changed)."""
        memo = ("head+train", shape) if self._const_head and self._const_train and type(shape) is tuple else None
        hit = self._layers.get(memo) if memo is not None else None
        if hit is not None:
            return (hit[0], _fresh(hit[1]), hit[2], _fresh(hit[3])) if fresh else hit

        def value(f: Any) -> Any:
            if isinstance(f, Ref):
                return values.get(f.label, f.default)
            return f.value

        head = {k: value(f) for k, f in self._c.head.items()}
        if len(shape) == 1:
            head["pool"] = None
        head = {**head, "in": list(shape)}
        train = {k: value(f) for k, f in self._c.train.items()}
        if train["optimizer"] not in ("momentum", "nesterov"):
            train.pop("momentum")
        if train["schedule"] != "exponential":
            train.pop("gamma")
        head_json, train_json = _canon(head), _canon(train)
        if memo is not None:
            self._remember(memo, (head_json, _fresh(head), train_json, _fresh(train)))
        return head_json, head, train_json, train

    def _remember(self, memo: tuple, entry: tuple) -> None:
        if len(self._layers) >= MEMO_SIZE:
            self._layers.clear()
        self._layers[memo] = entry

    def _plan(self, node: LayerT) -> _Plan:
        plan = self._plans.get(id(node))
        if plan is None:
            plan = self._plans[id(node)] = _Plan(node, self._interned)
        return plan
    def _problem(self, node: LayerT, values: Mapping[str, Any], problem: ShapeProblem, shape: Shape) -> InvalidArchitecture:
        blame = []
        f = node.fields.get(problem.field) if problem.field else None
        if isinstance(f, Ref):
            blame.append(f"{f.label} = {values.get(f.label, f.default)!r}")
        for atom in node.cond:
            blame.append(f"{atom.label} = {values.get(atom.label)!r}")
        where = f"{node.label}.{problem.field}" if problem.field else node.label
        input_text = "x".join(map(str, self._c.input))
        reason = f"{problem} (space input {input_text})"
        if blame:
            reason += f"; decided by {', '.join(dict.fromkeys(blame))}"
        return ShapeMismatch(reason, source=self.source, path=where)

    def _walk(self, nodes: list[LayerT], shape: Shape, values: Mapping[str, Any], out: list[dict[str, Any]] | None,
              cells: dict[tuple, Any]) -> tuple[list[str], Shape]:
        """Resolve `nodes` from `shape`: the `_canon` text of each layer they build, and the shape
        they end on; with `out`, also the layer dicts (fresh copies) appended to it.

        A layer is memoised by what it is made of: a layer with constant fields by its node and
        input shape (in the node's plan), one with decided fields by its node, input shape and
        the fields' values (scalars, told apart by type), a cell by its input shape and minimal
        form. `cells` holds what the cells resolved so far in this call built, by their
        (interned) edges, node count and input shape. Problems are not memoised: they are
        raised as they are found, in the same order."""
        frags: list[str] = []
        for node in nodes:
            if node.cond and not self._holds(node.cond, values):
                continue
            plan = self._plans.get(id(node)) or self._plan(node)
            t = node.type
            const = plan.const and type(shape) is tuple
            if const and t != "cell" and t != "residual":
                hit = plan.by_shape.get(shape)
                if hit is not None:
                    shape = _replay(hit, frags, out)
                    continue
            # a constant node's fields are shared: read here, copied before a layer is made of them
            fields = plan.values if plan.const else {k: (values.get(label, v) if label is not None else v) for k, label, v in plan.fields}
            if t == "cell":
                if const and shape in plan.by_shape:  # the shape check passed before
                    built = cells.get((plan.edges_id, fields["nodes"], shape))  # a cell like an earlier one
                    if built is not None and built is not _CUT_OFF:
                        if built is not _NOTHING:
                            frags.append(built[0])
                            if out is not None:
                                out.append(_fresh(built[1]))
                        continue
                else:
                    try:
                        LAYERS["cell"].shape(fields, shape)
                    except ShapeProblem as exc:
                        raise self._problem(node, values, exc, shape) from None
                    if const:
                        plan.remember(shape, True)
                built = self._cell_layer(plan, fields["nodes"], shape, values, cells)
                if built is _CUT_OFF:
                    labels = sorted({f.label for _, _, f in node.edges or [] if isinstance(f, Ref)})
                    raise InvalidArchitecture("the cell's output is cut off from its input: every path has a `none` edge", source=self.source, path=node.label if not labels else labels[0].rsplit(".", 1)[0])
                if built is not None:  # None: a cell whose output is its input's tensor builds nothing
                    frags.append(built[0])
                    if out is not None:
                        out.append(_fresh(built[1]))
                continue
            if t == "residual":
                body: list[dict[str, Any]] | None = [] if out is not None else None
                inner, end = self._walk(node.body or [], shape, values, body, cells)
                if not inner:
                    continue
                if not fields["skip"]:
                    frags.extend(inner)
                    if out is not None:
                        out.extend(body or [])
                    shape = end
                    continue
                proj = self._projection(node, values, shape, end) if end != shape else None
                # _canon of {"type": "residual", "in": shape, "body": body, "proj": proj}, keys sorted
                frags.append('{"body":[' + ",".join(inner) + '],"in":' + _canon(list(shape)) + ',"proj":' + _canon(proj) + ',"type":"residual"}')
                if out is not None:
                    out.append({"type": "residual", "in": list(shape), "body": body, "proj": proj})
                shape = end
                continue
            if plan.const:
                fields = dict(fields)
            memo = None
            if not const and type(shape) is tuple:
                decided = tuple(fields.values())
                kinds = tuple(v.__class__ for v in decided)
                if all(k in _SCALARS for k in kinds) and not any(k is float and v == 0.0 for k, v in zip(kinds, decided)):
                    memo = (id(node), shape, decided, kinds)  # 1 and True, 0.0 and -0.0 are not confused
                    hit = self._layers.get(memo)
                    if hit is not None:
                        shape = _replay(hit, frags, out)
                        continue
            schema = LAYERS[t]
            try:
                new = schema.shape(fields, shape)
            except ShapeProblem as exc:
                raise self._problem(node, values, exc, shape) from None
            layer = self._concrete(t, fields, shape, new)
            frag = _canon(layer) if layer is not None else None
            if memo is not None:
                self._remember(memo, (new, frag, _fresh(layer)))
            elif const:
                plan.remember(shape, (new, frag, _fresh(layer)))
            if layer is not None:
                frags.append(frag)  # type: ignore[arg-type]
                if out is not None:
                    out.append(layer)
            shape = new
        return frags, shape

    def _cell_layer(self, plan: _Plan, nodes: Any, shape: Shape, values: Mapping[str, Any], cells: dict[tuple, Any]) -> Any:
        """(_canon(layer), layer) of a cell with `plan`'s edges; None when it builds nothing,
        _CUT_OFF when its output is cut off from its input."""
        seen = (plan.edges_id, nodes, shape if type(shape) is tuple else tuple(shape))
        built = cells.get(seen)
        if built is not None:
            return built if built is not _NOTHING else None
        form = cells.get((plan.edges_id, nodes))
        if form is None:
            edges = tuple([(i, j, values.get(label, v) if label is not None else v) for i, j, label, v in plan.edges or ()])
            form = _minimal(int(nodes), edges)
            cells[(plan.edges_id, nodes)] = form = _CUT_OFF if form is None else form
        if form is _CUT_OFF:
            built = _CUT_OFF
        elif form[0] <= 1:
            built = _NOTHING
        else:
            memo = ("cell", shape, form) if type(shape) is tuple else None
            built = self._layers.get(memo) if memo is not None else None
            if built is None:
                edges_json = self._layers.get(("edges", form))
                if edges_json is None:
                    edges_json = _canon([list(e) for e in form[1]])
                    self._remember(("edges", form), edges_json)
                layer = {"type": "cell", "in": list(shape), "nodes": form[0], "edges": [list(e) for e in form[1]]}
                # _canon(layer), keys sorted
                built = ('{"edges":' + edges_json + ',"in":' + _canon(layer["in"]) + ',"nodes":' + str(int(form[0])) + ',"type":"cell"}', layer)
                if memo is not None:
                    self._remember(memo, built)
        cells[seen] = built
        return built if built is not _NOTHING else None
    def _projection(self, node: LayerT, values: Mapping[str, Any], shape: Shape, end: Shape) -> dict[str, Any]:
        if len(shape) != len(end):
            raise self._problem(node, values, ShapeProblem(f"the skip connection cannot join a {len(shape)}-d input to a {len(end)}-d output"), shape)
        if len(shape) == 1:
            return {"kind": "linear", "out": end[0]}
        stride = max(1, round(shape[1] / end[1]))
        if -(-shape[1] // stride) != end[1] or -(-shape[2] // stride) != end[2]:
            raise self._problem(node, values, ShapeProblem(f"the skip connection cannot match a {shape[1]}x{shape[2]} input to a {end[1]}x{end[2]} output with a strided 1x1 conv"), shape)
        return {"kind": "conv", "out": end[0], "stride": stride}

    @staticmethod
    def _concrete(t: str, fields: dict[str, Any], shape: Shape, new: Shape) -> dict[str, Any] | None:
        """A layer dict for the builder; None for layers that do nothing (they do not change the key)."""
        if t == "identity" or (t == "act" and fields["fn"] == "none") or (t == "norm" and fields["kind"] == "none") or (t == "dropout" and fields["p"] == 0):
            return None
        layer = {"type": t, "in": list(shape), **fields}
        if t in ("conv", "sep_conv", "resblock"):
            layer["out"] = new[0]
        if t == "pool":
            layer["stride"] = fields["stride"] or fields["size"]
        if t == "flatten" and len(shape) == 1:
            return None
        return layer

    # -- text forms -------------------------------------------------------------------------
    def _single_cell(self) -> tuple[int, list[str]] | None:
        """(nodes, edge labels in order) when every decision is an edge of one shared cell."""
        def find(nodes: list[LayerT]) -> Iterator[LayerT]:
            for n in nodes:
                if n.type == "cell":
                    yield n
                if n.body:
                    yield from find(n.body)

        cells = list(find(self._c.body))
        if not cells:
            return None
        labels = [f.label for _, _, f in cells[0].edges or [] if isinstance(f, Ref)]
        if len(labels) != len(cells[0].edges or []) or set(labels) != set(self.labels):
            return None
        for c in cells[1:]:
            if [f.label for _, _, f in c.edges or [] if isinstance(f, Ref)] != labels:
                return None
        return cells[0].fields["nodes"].value, labels

    @property
    def cell_form(self) -> tuple[int, list[str]] | None:
        """(nodes, edge labels in edge order) when the architecture is exactly one cell, else None."""
        return (self._cell[0], list(self._cell[1])) if self._cell is not None else None

    @property
    def is_cell_space(self) -> bool:
        """True when an architecture is exactly one cell (NAS-Bench-201 style strings apply)."""
        return self._cell is not None

    def format_arch(self, arch: Architecture) -> str:
        """NAS-Bench-201 string for single-cell spaces, else compact JSON of the values."""
        if self._cell is not None:
            nodes, labels = self._cell
            return cell_string(nodes, [arch[label] for label in labels])
        return json.dumps(dict(arch), separators=(", ", ": "))

    def parse_arch(self, text: str | Mapping[str, Any]) -> Architecture:
        """An architecture from a NAS-Bench-201 string, a JSON object (values, or {"values": ...}),
        or `label=value,label=value`."""
        if isinstance(text, Mapping):
            data: Any = text
        else:
            text = text.strip()
            if text.startswith("|"):
                if self._cell is None:
                    raise InvalidArchitecture("a cell string fits only a space whose decisions are one cell's edges", source=self.source)
                nodes, labels = self._cell
                try:
                    got_nodes, ops = parse_cell_string(text)
                except ValueError as exc:
                    raise InvalidArchitecture(str(exc), source=self.source) from None
                if got_nodes != nodes:
                    raise InvalidArchitecture(f"cell string has {got_nodes} nodes; this space's cell has {nodes}", source=self.source)
                return self.make(dict(zip(labels, ops)))
            if text.startswith("{"):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InvalidArchitecture(f"architecture JSON is malformed: {exc.msg} at line {exc.lineno} column {exc.colno}", source=self.source) from None
            else:
                data = {}
                for part in filter(None, (p.strip() for p in text.split(","))):
                    label, sep, raw = part.partition("=")
                    if not sep:
                        raise InvalidArchitecture(f"expected label=value, got {part!r}", source=self.source)
                    try:
                        data[label.strip()] = json.loads(raw)
                    except json.JSONDecodeError:
                        data[label.strip()] = raw.strip()
        if not isinstance(data, Mapping):
            raise InvalidArchitecture("an architecture is a JSON object of label -> value", source=self.source)
        if "values" in data and isinstance(data["values"], Mapping):
            data = data["values"]
        return self.make(data)

    def summary(self, arch: Architecture, train: bool = True) -> str:
        """A short human description of the network: `conv32k3 > maxpool2 > dense64 | adam lr 0.003`."""
        if self._cell is not None:
            return self.format_arch(arch)
        if not arch.valid:
            return f"invalid: {arch.error}"
        res = self.resolve(arch)

        def one(layer: dict[str, Any]) -> str:
            t = layer["type"]
            if t in ("conv", "sep_conv"):
                text = f"{'sep' if t == 'sep_conv' else 'conv'}{layer['out']}k{layer['kernel']}" + (f"s{layer['stride']}" if layer["stride"] > 1 else "")
                return text + (f"/{layer['act']}" if layer["act"] != "relu" else "") + ("" if layer["norm"] == "batch" else "/nonorm")
            if t == "dense":
                return f"dense{layer['units']}" + (f"/{layer['act']}" if layer["act"] != "relu" else "") + ("/bn" if layer["norm"] == "batch" else "") + (f"/drop{layer['dropout']:g}" if layer["dropout"] else "")
            if t == "pool":
                return f"{layer['kind']}pool{layer['size']}"
            if t == "resblock":
                return f"res{layer['out']}" + (f"s{layer['stride']}" if layer["stride"] > 1 else "")
            if t == "residual":
                return "(" + " > ".join(one(x) for x in layer["body"]) + ")+skip"
            if t == "cell":
                return "cell"
            if t == "dropout":
                return f"drop{layer['p']:g}"
            if t == "act":
                return layer["fn"]
            if t == "norm":
                return "bn"
            return t

        text = " > ".join(one(layer) for layer in res.net["body"])
        if train:
            tr = res.train
            text += f" | {tr['optimizer']} lr {tr['lr']:g} bs {tr['batch_size']}"
        return text

    # -- fingerprint ------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        def field(f: Any) -> Any:
            return ["ref", f.label, f.default] if isinstance(f, Ref) else ["const", f.value]

        def cond(c: Iterable[Any]) -> list[Any]:
            return sorted([a.label, sorted(map(repr, a.allowed))] for a in c)

        def node(n: LayerT) -> dict[str, Any]:
            d: dict[str, Any] = {"t": n.type, "f": {k: field(v) for k, v in n.fields.items()}, "c": cond(n.cond)}
            if n.body is not None:
                d["b"] = [node(x) for x in n.body]
            if n.edges is not None:
                d["e"] = [[i, j, field(f)] for i, j, f in n.edges]
            return d

        return {
            "input": list(self._c.input),
            "classes": self._c.classes,
            "body": [node(n) for n in self._c.body],
            "head": {k: field(v) for k, v in self._c.head.items()},
            "train": {k: field(v) for k, v in self._c.train.items()},
            "constraints": {k: field(v) for k, v in self._c.constraints.items()},
            "decisions": [[d.label, list(map(repr, d.values)), [cond(s) for s in d.sites]] for d in self.decisions],
        }
