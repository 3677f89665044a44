"""Turn a space written as YAML or a Python dict into decisions and a layer template.

A *decision* is a labelled, finite set of values. The *template* is the network with every
decision replaced by a reference to its label and every repeat unrolled to its largest count;
each template node carries the condition under which it exists. Resolving an architecture is
then a walk over the template (see `space.py`).

Labels are the genome: a field's label is the path of its layer plus the field name, with the
copy index after each `repeat` (`body[1].repeat[2].body[0].conv.out`), unless the space names it.
A label written in two places is one shared decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import SpaceError
from .fields import REQUIRED, Bool, Field, FieldProblem, Float, Int, closest
from .layers import CELL_OPS, CONSTRAINT_FIELDS, HEAD_FIELDS, LAYERS, TRAIN_FIELDS, LayerSchema

TOP_KEYS = ("name", "description", "input", "classes", "body", "head", "train", "constraints", "decisions")
DECISION_FORMS = ("choice", "int", "float", "ref")
NODE_KEYS = ("when", "label")


@dataclass(frozen=True)
class Atom:
    """`label` is active and its value is one of `allowed`."""

    label: str
    allowed: frozenset

    def text(self) -> str:
        vals = sorted(self.allowed, key=repr)
        return f"{self.label} in {vals}" if len(vals) > 1 else f"{self.label} = {vals[0]!r}"


Cond = tuple  # tuple[Atom, ...]: all must hold


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Ref:
    label: str
    default: Any


@dataclass(frozen=True)
class Decision:
    """One searchable choice. Active when any of its `sites` (conjunctions of atoms) holds."""

    label: str
    values: tuple
    kind: str  # choice | int | float | option | edge
    path: str  # where the space first writes it
    sites: tuple  # tuple[Cond, ...]
    log: bool = False
    aliases: tuple = ()  # (as written, stored value) pairs of a declared decision whose values were coerced

    def describe(self) -> str:
        vals = self.values
        if self.kind in ("int", "float") and len(vals) > 6:
            shown = f"{vals[0]!r} .. {vals[-1]!r} ({len(vals)} values{', log' if self.log else ''})"
        else:
            shown = ", ".join(map(repr, vals))
        return shown


@dataclass
class LayerT:
    """A template layer: fields are Const or Ref; it exists when every atom of `cond` holds."""

    type: str
    fields: dict[str, Any]
    cond: Cond
    path: str  # field path in the file, for messages
    label: str  # label prefix of its decisions
    body: list["LayerT"] | None = None  # residual
    edges: list[tuple[int, int, Any]] | None = None  # cell: (to, from, Const|Ref)


@dataclass
class Compiled:
    name: str
    description: str
    input: tuple[int, ...]
    classes: int
    body: list[LayerT]
    head: dict[str, Any]
    train: dict[str, Any]
    constraints: dict[str, Any]
    decisions: list[Decision]  # in dependency order


@dataclass
class _Pending:
    values: tuple
    kind: str
    path: str
    log: bool
    sites: list[Cond] = field(default_factory=list)
    typed: dict[int, str] = field(default_factory=dict)  # id(field type) -> path, for $refs
    raw: tuple | None = None  # a declared decision's values as written, once a field has read them


def _fmt(values: Iterable[Any]) -> str:
    return "[" + ", ".join(map(repr, values)) + "]"


class Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.decisions: dict[str, _Pending] = {}
        self.atoms: list[tuple[Atom, str]] = []  # every condition written, checked at the end
        self.declared: set[str] = set()
        # copy index of each enclosing repeat, by the repeat's label, and `i` for the innermost:
        # explicit labels may use them ("stage{stage}.width") to share a decision within a copy
        self.scope: dict[str, int] = {}

    # -- errors -----------------------------------------------------------------------------
    def fail(self, path: str, reason: str) -> SpaceError:
        return SpaceError(reason, source=self.source, path=path or "(top level)")

    # -- entry ------------------------------------------------------------------------------
    def compile(self, raw: Any) -> Compiled:
        if raw is None:
            raise self.fail("", "the space is empty: expected a mapping with at least `input` and `body`")
        if not isinstance(raw, Mapping):
            raise self.fail("", f"expected a mapping with `input` and `body`, got {type(raw).__name__}")
        for key in raw:
            if key not in TOP_KEYS:
                raise self.fail(str(key), f"unknown top-level field{closest(str(key), TOP_KEYS)}; expected one of {', '.join(TOP_KEYS)}")
        name = raw.get("name") or ""
        if not isinstance(name, str):
            raise self.fail("name", f"expected a string, got {name!r}")
        desc = raw.get("description") or ""
        if not isinstance(desc, str):
            raise self.fail("description", f"expected a string, got {desc!r}")
        shape = self.input_shape(raw.get("input"))
        classes = self.constant(raw.get("classes", 10), Int(min=2), "classes")

        declared = raw.get("decisions") or {}
        if not isinstance(declared, Mapping):
            raise self.fail("decisions", "expected a mapping of decision names to decisions")
        for dname, spec in declared.items():
            self.declare(str(dname), spec, f"decisions.{dname}")

        if "body" not in raw:
            raise self.fail("body", "missing: a space needs a `body` list of layers")
        body = self.layer_list(raw["body"], "body", "body", ())
        if not body:
            raise self.fail("body", "expected a non-empty list of layers")
        head = self.section(raw.get("head"), HEAD_FIELDS, "head")
        train = self.section(raw.get("train"), TRAIN_FIELDS, "train")
        constraints = self.section(raw.get("constraints"), CONSTRAINT_FIELDS, "constraints")
        self.canonical_atoms(body)
        decisions = self.finish()
        return Compiled(name, desc, shape, classes, body, head, train, constraints, decisions)

    def input_shape(self, value: Any) -> tuple[int, ...]:
        if value is None:
            raise self.fail("input", "missing: give the input shape, e.g. [1, 28, 28] for images or [64] for vectors")
        if isinstance(value, Mapping) and set(value) == {"shape"}:
            value = value["shape"]
        if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
            raise self.fail("input", f"expected [features] or [channels, height, width], got {value!r}")
        try:
            return tuple(Int(min=1).check(v) for v in value)
        except FieldProblem as exc:
            raise self.fail("input", str(exc)) from None

    def constant(self, value: Any, ftype: Any, path: str) -> Any:
        try:
            return ftype.check(value)
        except FieldProblem as exc:
            raise self.fail(path, str(exc)) from None

    def section(self, raw: Any, fields: dict[str, Field], path: str) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise self.fail(path, f"expected a mapping of fields ({', '.join(fields)}), got {raw!r}")
        for key in raw:
            if key not in fields:
                raise self.fail(f"{path}.{key}", f"unknown field{closest(str(key), list(fields))}; expected one of {', '.join(fields)}")
        return {k: self.field_value(raw.get(k, f.default), f, f"{path}.{k}", f"{path}.{k}", (), has=k in raw) for k, f in fields.items()}

    def named(self, label: Any, path: str) -> str:
        """An explicit label with `{repeat}` placeholders filled from the enclosing copies."""
        if not isinstance(label, str) or not label.strip():
            raise self.fail(path, f"expected a non-empty string, got {label!r}")
        if "{" not in label:
            return label
        try:
            return label.format_map(self.scope)
        except (KeyError, ValueError, IndexError) as exc:
            known = ", ".join(f"{{{k}}}" for k in self.scope) or "none here"
            raise self.fail(path, f"label {label!r} has a placeholder that is not an enclosing repeat ({exc}); known: {known}") from None

    # -- decisions --------------------------------------------------------------------------
    def declare(self, name: str, spec: Any, path: str) -> None:
        if not name or name.startswith("$"):
            raise self.fail(path, "a decision name must be a non-empty string not starting with '$'")
        if not (isinstance(spec, list) or (isinstance(spec, Mapping) and set(spec) & set(DECISION_FORMS))):
            raise self.fail(path, "expected a decision: a list of choices, {choice: [...]}, {int: [low, high]} or {float: [low, high]}")
        if isinstance(spec, Mapping) and spec.get("label") not in (None, name):
            raise self.fail(f"{path}.label", f"a declared decision is labelled by its name {name!r}")
        values, kind, log, whens = self.domain(spec, path, None)
        self.declared.add(name)
        self.register(name, values, kind, path, (), whens, log)

    def domain(self, spec: Any, path: str, ftype: Any) -> tuple[tuple, str, bool, list[tuple[str, Any, str]]]:
        """Values, kind, log flag and raw `when` of a decision written at `path`."""
        whens: list[tuple[str, Any, str]] = []
        if isinstance(spec, list):
            values, kind, log = list(spec), "choice", False
        else:
            forms = [k for k in DECISION_FORMS if k in spec]
            if len(forms) != 1:
                raise self.fail(path, f"a decision takes exactly one of {', '.join(DECISION_FORMS[:3])}; got {', '.join(map(str, spec))}")
            form = forms[0]
            allowed = {"choice": ("label", "when"), "int": ("step", "log", "num", "label", "when"), "float": ("step", "log", "num", "label", "when")}[form]
            for key in spec:
                if key != form and key not in allowed:
                    raise self.fail(f"{path}.{key}", f"unknown key for a {form} decision{closest(str(key), allowed)}; expected {', '.join(allowed)}")
            log = bool(spec.get("log", False))
            if "log" in spec and not isinstance(spec["log"], bool):
                raise self.fail(f"{path}.log", f"expected true or false, got {spec['log']!r}")
            if form == "choice":
                values, kind = spec["choice"], "choice"
                if not isinstance(values, list):
                    raise self.fail(f"{path}.choice", f"expected a list of values, got {values!r}")
            else:
                values, kind = self.range_values(spec, form, path), form
            if "when" in spec:
                whens = self.when(spec["when"], f"{path}.when")
        if not values:
            raise self.fail(path, "a decision needs at least one value; got an empty list")
        for v in values:
            if isinstance(v, (list, dict)):
                raise self.fail(path, f"decision values must be scalars (numbers, strings, booleans), got {v!r}")
        if ftype is not None:
            values = self.typed(values, ftype, path)
        if len(set(map(_hashable, values))) != len(values):
            raise self.fail(path, f"duplicate values in {_fmt(values)}")
        return tuple(values), kind, log, whens

    def typed(self, values: Iterable[Any], ftype: Any, path: str) -> list[Any]:
        out = []
        for v in values:
            try:
                out.append(ftype.check(v))
            except FieldProblem as exc:
                raise self.fail(path, f"choice {v!r}: {exc}") from None
        return out

    def range_values(self, spec: Mapping[str, Any], form: str, path: str) -> list[Any]:
        bounds = spec[form]
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise self.fail(f"{path}.{form}", f"expected [low, high], got {bounds!r}")
        num_t: Any = Int() if form == "int" else Float()
        try:
            lo, hi = num_t.check(bounds[0]), num_t.check(bounds[1])
        except FieldProblem as exc:
            raise self.fail(f"{path}.{form}", str(exc)) from None
        if lo > hi:
            raise self.fail(f"{path}.{form}", f"low must be <= high, got [{lo}, {hi}]")
        log = bool(spec.get("log", False))
        if log and lo <= 0:
            raise self.fail(f"{path}.{form}", f"a log-scale range needs low > 0, got {lo}")
        step = spec.get("step")
        num = spec.get("num")
        if step is not None and (num is not None or log):
            raise self.fail(f"{path}.step", "give either step, or num/log, not both")
        if num is not None:
            num = self.constant(num, Int(min=2, max=10_000), f"{path}.num")
        if step is not None:
            step = self.constant(step, Int(min=1) if form == "int" else Float(min=1e-300), f"{path}.step")
            count = int(math.floor((hi - lo) / step + 1e-9)) + 1
            if count > 100_000:
                raise self.fail(f"{path}.step", f"{count} values is too many for one decision")
            values = [lo + i * step for i in range(count)]
            return values if form == "int" else [round(v, 12) for v in values]
        if form == "int":
            if log:
                num = num or int(math.floor(math.log2(hi / lo) + 1e-9)) + 1
                raw = [lo * (hi / lo) ** (i / (num - 1)) for i in range(num)] if num > 1 else [lo]
                return sorted({int(round(v)) for v in raw})
            if num is not None:
                return sorted({int(round(lo + (hi - lo) * i / (num - 1))) for i in range(num)})
            if hi - lo + 1 > 100_000:
                raise self.fail(f"{path}.int", f"{hi - lo + 1} values is too many for one decision; add a step")
            return list(range(lo, hi + 1))
        num = num or 5
        if lo == hi:
            return [lo]
        if log:
            return [float(f"{lo * (hi / lo) ** (i / (num - 1)):.6g}") for i in range(num)]
        return [float(f"{lo + (hi - lo) * i / (num - 1):.6g}") for i in range(num)]

    def when(self, raw: Any, path: str) -> list[tuple[str, Any, str]]:
        if not isinstance(raw, Mapping) or not raw:
            raise self.fail(path, "expected a mapping {label: value or [values]}")
        out = []
        for label, vals in raw.items():
            vals = vals if isinstance(vals, list) else [vals]
            if not vals:
                raise self.fail(f"{path}.{label}", "expected a value or a non-empty list of values")
            out.append((self.named(str(label), f"{path}.{label}"), vals, f"{path}.{label}"))
        return out

    def atoms_of(self, whens: list[tuple[str, Any, str]]) -> Cond:
        atoms = []
        for label, vals, path in whens:
            atom = Atom(label, frozenset(map(_hashable, vals)))
            self.atoms.append((atom, path))
            atoms.append(atom)
        return tuple(atoms)

    def register(self, label: str, values: tuple, kind: str, path: str, ctx: Cond, whens: list, log: bool = False) -> None:
        site = tuple(ctx) + self.atoms_of(whens)
        have = self.decisions.get(label)
        if have is None:
            self.decisions[label] = _Pending(values, kind, path, log, [site])
            return
        if tuple(map(_hashable, have.values)) != tuple(map(_hashable, values)):
            raise self.fail(path, f"label {label!r} is used with two different choice sets: {_fmt(values)} here and {_fmt(have.values)} at {have.path}")
        if site not in have.sites:
            have.sites.append(site)

    def field_value(self, spec: Any, fdef: Field, path: str, label: str, ctx: Cond, has: bool = True) -> Any:
        """Const or Ref for one field; registers the decision if the field is searched."""
        ftype = fdef.type
        if spec is REQUIRED:
            raise self.fail(path, "missing required field")
        if not has or spec is None:
            # defaults are trusted; None means "derive it" (e.g. out channels = in channels)
            return Const(spec)
        is_decision = isinstance(spec, list) or (isinstance(spec, Mapping) and set(spec) & set(DECISION_FORMS)) or (isinstance(spec, str) and spec.startswith("$"))
        if not is_decision:
            if isinstance(spec, Mapping):
                raise self.fail(path, f"expected a value or a decision ({{choice: [...]}}, {{int: [low, high]}}, {{float: [low, high]}}), got a mapping with {', '.join(map(str, spec))}")
            return Const(self.constant(spec, ftype, path))
        if not fdef.decision:
            raise self.fail(path, "this field is fixed by the space and cannot be searched")
        if isinstance(spec, str) or (isinstance(spec, Mapping) and "ref" in spec):
            name = spec[1:] if isinstance(spec, str) else spec["ref"]
            if isinstance(spec, Mapping) and len(spec) > 1:
                raise self.fail(path, "a {ref: name} takes no other keys")
            if name not in self.declared:
                raise self.fail(path, f"unknown decision {name!r}{closest(str(name), sorted(self.declared))}; declare it under `decisions:`")
            pending = self.decisions[name]
            if id(ftype) not in pending.typed:
                self.coerce_declared(name, pending, ftype, path)
                pending.typed[id(ftype)] = path
            return Ref(name, fdef.default)
        values, kind, log, whens = self.domain(spec, path, ftype)
        explicit = spec.get("label") if isinstance(spec, Mapping) else None
        if explicit is not None:
            explicit = self.named(explicit, f"{path}.label")
        if whens and fdef.default is REQUIRED:
            raise self.fail(f"{path}.when", "a required field cannot be conditional: it has no default to fall back on")
        if len(values) == 1 and explicit is None and not whens:
            return Const(values[0])
        label = explicit or label
        self.register(label, values, kind, path, ctx, whens, log)
        return Ref(label, fdef.default)

    def coerce_declared(self, name: str, pending: _Pending, ftype: Any, path: str) -> None:
        """Store a declared decision's values as the field reading them has them (`ReLU` ->
        `relu`, `swish` -> `silu`, "1e-3" -> 0.001): an architecture holds the canonical value,
        so two spellings of one value are one network."""
        raw = pending.raw if pending.raw is not None else pending.values
        coerced = tuple(self.typed(raw, ftype, path))
        if pending.raw is None:
            seen: dict[Any, Any] = {}
            for r, c in zip(raw, coerced):
                if _hashable(c) in seen:
                    raise self.fail(pending.path, f"{seen[_hashable(c)]!r} and {r!r} are the same value {c!r} here (read by {path}); keep one")
                seen[_hashable(c)] = r
            pending.raw, pending.values = tuple(raw), coerced
        elif coerced != pending.values:
            first = next(iter(pending.typed.values()))
            raise self.fail(path, f"decision {name!r} is read as {_fmt(coerced)} here but as {_fmt(pending.values)} at {first}; use two decisions")

    def canonical_atoms(self, body: list[LayerT]) -> None:
        """Conditions on a declared decision name its values as written: map them to the
        stored (coerced) values."""
        remap = {label: {_hashable(r): c for r, c in zip(p.raw, p.values)} for label, p in self.decisions.items()
                 if p.raw is not None and p.raw != p.values}
        if not remap:
            return

        def fix(cond: Cond) -> Cond:
            return tuple(Atom(a.label, frozenset(remap[a.label].get(v, v) for v in a.allowed)) if a.label in remap else a for a in cond)

        self.atoms = [(fix((a,))[0], path) for a, path in self.atoms]
        for p in self.decisions.values():
            p.sites = [fix(site) for site in p.sites]

        def walk(nodes: list[LayerT]) -> None:
            for n in nodes:
                n.cond = fix(n.cond)
                if n.body:
                    walk(n.body)

        walk(body)

    # -- layers -----------------------------------------------------------------------------
    def layer_list(self, raw: Any, fpath: str, lpath: str, ctx: Cond) -> list[LayerT]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raw = [raw]
        out: list[LayerT] = []
        for i, item in enumerate(raw):
            out.extend(self.layer(item, f"{fpath}[{i}]", f"{lpath}[{i}]", ctx))
        return out

    def layer(self, item: Any, fpath: str, lpath: str, ctx: Cond) -> list[LayerT]:
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, Mapping) or not item:
            raise self.fail(fpath, f"expected a layer such as {{conv: {{out: 32}}}} or a layer name, got {item!r}")
        types = [k for k in item if k not in NODE_KEYS]
        if len(types) != 1:
            raise self.fail(fpath, f"a layer is a mapping with one layer type as its key, got {', '.join(map(str, item)) or 'nothing'}")
        ltype = str(types[0])
        schema = LAYERS.get(ltype)
        if schema is None:
            raise self.fail(f"{fpath}.{ltype}", f"unknown layer type{closest(ltype, list(LAYERS))}; expected one of {', '.join(LAYERS)}")
        params = item[types[0]]
        fpath = f"{fpath}.{ltype}"
        if params is None:
            params = {}
        elif not isinstance(params, Mapping):
            if schema.primary is None:
                raise self.fail(fpath, f"expected a mapping of fields ({', '.join(list(schema.fields) + list(schema.extra)) or 'none'}), got {params!r}")
            params = {schema.primary: params}
        params = dict(params)
        for key in NODE_KEYS:  # `when`/`label` may sit beside the type or inside its fields
            if key in item:
                if key in params:
                    raise self.fail(f"{fpath}.{key}", f"`{key}` is given twice")
                params[key] = item[key]
        allowed = list(schema.fields) + list(schema.extra) + list(NODE_KEYS)
        for key in params:
            if key not in allowed:
                raise self.fail(f"{fpath}.{key}", f"unknown field for {ltype}{closest(str(key), allowed)}; expected one of {', '.join(allowed)}")
        label = params.get("label")
        if label is not None:
            label = lpath = self.named(label, f"{fpath}.label")
        else:
            lpath = f"{lpath}.{ltype}"
        if "when" in params:
            ctx = tuple(ctx) + self.atoms_of(self.when(params["when"], f"{fpath}.when"))
        if ltype == "repeat":
            return self.repeat(params, schema, fpath, lpath, label, ctx)
        if ltype == "choose":
            return self.choose(params, fpath, lpath, label, ctx)
        fields = {}
        for fname, fdef in schema.fields.items():
            if fname == "ops":
                continue
            fields[fname] = self.field_value(params.get(fname, fdef.default), fdef, f"{fpath}.{fname}", f"{lpath}.{fname}", ctx, has=fname in params)
        node = LayerT(ltype, fields, tuple(ctx), fpath, lpath)
        if ltype == "residual":
            node.body = self.layer_list(params.get("body"), f"{fpath}.body", f"{lpath}.body", ctx)
        elif ltype == "cell":
            node.edges = self.cell_edges(params, fields, fpath, lpath, ctx)
        return [node]

    def repeat(self, params: dict[str, Any], schema: LayerSchema, fpath: str, lpath: str, label: str | None, ctx: Cond) -> list[LayerT]:
        if "times" not in params:
            raise self.fail(f"{fpath}.times", "missing: how many times to repeat the body (a number or a decision)")
        share = self.constant(params.get("share", False), Bool(), f"{fpath}.share")
        times = self.field_value(params["times"], schema.fields["times"], f"{fpath}.times", f"{lpath}.times", ctx)
        if not params.get("body"):
            raise self.fail(f"{fpath}.body", "missing: the list of layers to repeat")
        if isinstance(times, Const):
            counts: tuple = (times.value,)
        else:
            counts = tuple(self.decisions[times.label].values)
        out: list[LayerT] = []
        for i in range(max(counts)):
            copy_ctx = tuple(ctx)
            if min(counts) < i + 1:
                copy_ctx += (Atom(times.label, frozenset(c for c in counts if c >= i + 1)),)
            copy_l = lpath if share else f"{lpath}[{i}]"
            saved = dict(self.scope)
            self.scope["i"] = i
            if label is not None:
                self.scope[label] = i
            try:
                out.extend(self.layer_list(params["body"], f"{fpath}.body", f"{copy_l}.body", copy_ctx))
            finally:
                self.scope = saved
        return out

    def choose(self, params: dict[str, Any], fpath: str, lpath: str, label: str | None, ctx: Cond) -> list[LayerT]:
        options = params.get("options")
        if not isinstance(options, Mapping) or not options:
            raise self.fail(f"{fpath}.options", "expected a mapping of option names to a layer or a list of layers")
        names = tuple(str(k) for k in options)
        dlabel = label or lpath
        self.register(dlabel, names, "option", f"{fpath}.options", ctx, [])
        out: list[LayerT] = []
        for name, spec in options.items():
            opt_ctx = tuple(ctx) + (Atom(dlabel, frozenset([str(name)])),)
            if spec is None:
                continue  # an empty option: the layer is left out
            out.extend(self.layer_list(spec, f"{fpath}.options.{name}", f"{dlabel}.{name}", opt_ctx))
        return out

    def cell_edges(self, params: dict[str, Any], fields: dict[str, Any], fpath: str, lpath: str, ctx: Cond) -> list[tuple[int, int, Any]]:
        ops = params.get("ops")
        if not isinstance(ops, list) or not ops:
            raise self.fail(f"{fpath}.ops", f"expected a non-empty list of edge operations from {', '.join(CELL_OPS)}")
        for op in ops:
            if op not in CELL_OPS:
                raise self.fail(f"{fpath}.ops", f"unknown cell operation {op!r}{closest(str(op), CELL_OPS)}; expected one of {', '.join(CELL_OPS)}")
        if len(set(ops)) != len(ops):
            raise self.fail(f"{fpath}.ops", f"duplicate operations in {_fmt(ops)}")
        nodes = fields["nodes"].value
        edges = []
        for i in range(1, nodes):
            for j in range(i):
                edge_label = f"{lpath}.{i}<-{j}"
                if len(ops) == 1:
                    edges.append((i, j, Const(ops[0])))
                else:
                    self.register(edge_label, tuple(ops), "edge", f"{fpath}.ops", ctx, [])
                    edges.append((i, j, Ref(edge_label, None)))
        return edges

    # -- finishing --------------------------------------------------------------------------
    def finish(self) -> list[Decision]:
        for atom, path in self.atoms:
            have = self.decisions.get(atom.label)
            if have is None:
                raise self.fail(path, f"condition on unknown label {atom.label!r}{closest(atom.label, list(self.decisions))}")
            domain = set(map(_hashable, have.values))
            for v in atom.allowed:
                if v not in domain:
                    raise self.fail(path, f"condition value {v!r} is not one of the choices of {atom.label!r}: {_fmt(have.values)}")
        order = self.dependency_order()
        return [
            Decision(label, tuple(p.values), p.kind, p.path, tuple(p.sites), p.log,
                     tuple((r, c) for r, c in zip(p.raw or (), p.values) if r != c))
            for label in order
            for p in [self.decisions[label]]
        ]

    def dependency_order(self) -> list[str]:
        deps = {label: {a.label for site in p.sites for a in site} for label, p in self.decisions.items()}
        order: list[str] = []
        placed: set[str] = set()
        state: dict[str, int] = {}

        def visit(label: str, trail: list[str]) -> None:
            if state.get(label) == 2:
                return
            if state.get(label) == 1:
                cycle = trail[trail.index(label):] + [label]
                raise self.fail(self.decisions[label].path, f"conditions form a cycle: {' -> '.join(cycle)}")
            state[label] = 1
            for dep in sorted(deps[label], key=list(self.decisions).index):
                visit(dep, trail + [label])
            state[label] = 2
            if label not in placed:
                placed.add(label)
                order.append(label)

        for label in self.decisions:
            visit(label, [])
        return order


def _hashable(v: Any) -> Any:
    return v
