"""Safe on-disk format for anything learned: one zip with ``meta.json`` and ``arrays.npz``.

No pickle: arrays are loaded with ``allow_pickle=False`` and everything else is JSON,
so opening a router file from elsewhere cannot run code. The header may carry a
``provenance`` object (what the estimator was built on: its embedding's id, its calibration);
files written before it existed simply have none, so they keep loading.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.errors import RouterFileError

FORMAT = "sizewise-estimator"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Bundle:
    """What one file holds: the registered name, the estimator's JSON meta, its arrays and provenance."""

    name: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)


def save_bundle(
    path: str | Path,
    kind: str,
    name: str,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write an estimator of ``kind`` (``router``/``scorer``) registered as ``name``."""
    path = Path(path)
    header: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "name": name, "meta": meta}
    if provenance:
        header["provenance"] = provenance
    buffer = io.BytesIO()
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("meta.json", json.dumps(header))
            archive.writestr("arrays.npz", buffer.getvalue())
    except OSError as error:
        raise RouterFileError(f"{path}: cannot write the {kind} file ({error.strerror or error})") from None
    return path


def read_header(path: str | Path, kind: str, name: str | None = None) -> dict[str, Any]:
    """The checked JSON header of a file (no arrays): format, version, kind and, if given, name."""
    path = Path(path)
    if not path.is_file():
        raise RouterFileError(f"{path}: no such {kind} file")
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(archive.read("meta.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        raise RouterFileError(f"{path}: not a valid sizewise {kind} file ({error})") from None
    return _checked(header, path, kind, name)


def read_bundle(path: str | Path, kind: str, name: str | None = None) -> Bundle:
    """Read a whole file; a :class:`RouterFileError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise RouterFileError(f"{path}: no such {kind} file")
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(archive.read("meta.json"))
            with np.load(io.BytesIO(archive.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        raise RouterFileError(f"{path}: not a valid sizewise {kind} file ({error})") from None
    header = _checked(header, path, kind, name)
    return Bundle(str(header["name"]), dict(header.get("meta") or {}), arrays, dict(header.get("provenance") or {}))


def load_bundle(
    path: str | Path, kind: str, name: str | None = None
) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Read a bundle; returns ``(name, meta, arrays)``. Raises :class:`RouterFileError` naming the problem."""
    bundle = read_bundle(path, kind, name)
    return bundle.name, bundle.meta, bundle.arrays


def _checked(header: Any, path: Path, kind: str, name: str | None) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("meta", {}), dict):
        raise RouterFileError(f"{path}: not a sizewise {kind} file")
    if header.get("version") != FORMAT_VERSION:
        raise RouterFileError(f"{path}: file format version {header.get('version')}, expected {FORMAT_VERSION}")
    if header.get("kind") != kind:
        raise RouterFileError(f"{path}: holds a {header.get('kind')}, expected a {kind}")
    if name is not None and header.get("name") != name:
        raise RouterFileError(f"{path}: holds {kind} {header.get('name')!r}, expected {name!r}")
    if not isinstance(header.get("provenance", {}), dict):
        raise RouterFileError(f"{path}: the {kind} file's provenance is not an object")
    return header


def saved_array(
    arrays: dict[str, np.ndarray],
    key: str,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
    *,
    kind: str = "router",
) -> np.ndarray:
    """A saved array, checked for presence, shape (``None`` = any size on that axis) and, unless
    ``finite=False``, for NaN or infinite values; a :class:`RouterFileError` naming the array otherwise."""
    if key not in arrays:
        raise RouterFileError(f"{kind} file lacks array {key!r}")
    value = np.asarray(arrays[key])
    if shape is not None and (
        value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape, strict=True))
    ):
        raise RouterFileError(f"{kind} file array {key!r} has shape {value.shape}, expected {shape}")
    if value.dtype.kind not in "biuf":
        raise RouterFileError(f"{kind} file array {key!r} is not numeric ({value.dtype})")
    if finite and not np.isfinite(value).all():
        raise RouterFileError(f"{kind} file array {key!r} holds NaN or infinite values")
    return value
