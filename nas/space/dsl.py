"""The DSL in Python: helpers that build the same dicts a YAML file holds.

    from nas.space import dsl
    space = dsl.space(
        input=[64],
        body=[dsl.repeat(dsl.integer(1, 3), dsl.dense(units=dsl.choice(64, 128)))],
        train={"lr": dsl.real(1e-3, 1e-1, log=True)},
    )

gives the same `SearchSpace` (same fingerprint) as the equivalent YAML.
"""

from __future__ import annotations

from typing import Any, Mapping

from .space import SearchSpace


def _extra(d: dict[str, Any], label: str | None, when: Mapping[str, Any] | None) -> dict[str, Any]:
    if label is not None:
        d["label"] = label
    if when is not None:
        d["when"] = dict(when)
    return d


def choice(*values: Any, label: str | None = None, when: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One of `values`."""
    return _extra({"choice": list(values)}, label, when)


def integer(low: int, high: int, *, step: int | None = None, log: bool = False, num: int | None = None,
            label: str | None = None, when: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Integers low..high: every `step`, or `num` of them, or powers-of-two-like steps with `log`."""
    d: dict[str, Any] = {"int": [low, high]}
    if step is not None:
        d["step"] = step
    if log:
        d["log"] = True
    if num is not None:
        d["num"] = num
    return _extra(d, label, when)


def real(low: float, high: float, *, num: int | None = None, log: bool = False, step: float | None = None,
         label: str | None = None, when: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`num` (default 5) numbers from low to high, evenly or log-spaced, or every `step`."""
    d: dict[str, Any] = {"float": [low, high]}
    if step is not None:
        d["step"] = step
    if log:
        d["log"] = True
    if num is not None:
        d["num"] = num
    return _extra(d, label, when)


def layer(kind: str, /, *, label: str | None = None, when: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A layer of any registered type: `layer("conv", out=32)` is `{"conv": {"out": 32}}`."""
    return {kind: _extra(dict(fields), label, when)}


def conv(**fields: Any) -> dict[str, Any]:
    return layer("conv", **fields)


def sep_conv(**fields: Any) -> dict[str, Any]:
    return layer("sep_conv", **fields)


def dense(**fields: Any) -> dict[str, Any]:
    return layer("dense", **fields)


def pool(**fields: Any) -> dict[str, Any]:
    return layer("pool", **fields)


def resblock(**fields: Any) -> dict[str, Any]:
    return layer("resblock", **fields)


def repeat(times: Any, *body: Any, share: bool = False, label: str | None = None, when: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`body` repeated `times` times (a number or a decision)."""
    fields: dict[str, Any] = {"times": times, "body": list(body)}
    if share:
        fields["share"] = True
    return layer("repeat", label=label, when=when, **fields)


def residual(*body: Any, skip: Any = True, label: str | None = None, when: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A skip connection around `body`."""
    return layer("residual", label=label, when=when, skip=skip, body=list(body))


def choose(*, label: str | None = None, when: Mapping[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """One of the named options, each a layer, a list of layers, or None for nothing."""
    return layer("choose", label=label, when=when, options=dict(options))


def cell(ops: list[str], *, nodes: int = 4, label: str | None = None) -> dict[str, Any]:
    """A cell DAG with one op from `ops` on every edge."""
    return layer("cell", label=label, ops=list(ops), nodes=nodes)


def space(*, input: list[int], body: list[Any], classes: int = 10, train: Mapping[str, Any] | None = None,
          head: Mapping[str, Any] | None = None, constraints: Mapping[str, Any] | None = None,
          decisions: Mapping[str, Any] | None = None, name: str | None = None, description: str | None = None) -> SearchSpace:
    """A `SearchSpace` from Python values."""
    raw: dict[str, Any] = {"input": list(input), "classes": classes, "body": list(body)}
    for key, val in (("train", train), ("head", head), ("constraints", constraints), ("decisions", decisions), ("name", name), ("description", description)):
        if val is not None:
            raw[key] = dict(val) if isinstance(val, Mapping) else val
    return SearchSpace.from_dict(raw, source=f"<python:{name or 'space'}>")
