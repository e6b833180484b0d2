"""Read a legacy (pre-1.6, non-zip) PyTorch ``.pth`` state dict into numpy arrays, without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. So the unpickler
here resolves only an allow-list of globals (the tensor rebuild function, ``OrderedDict`` and the
storage type tags) and refuses everything else before it is called. Layout of the legacy format
(``torch.serialization._legacy_load``): four pickles (magic number, protocol, system info, the object
whose tensors name storages by key), a pickled list of storage keys, then each storage's raw bytes in
that order, each preceded by its element count as a little-endian int64.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from sizewise.errors import ConfigError

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
#: Storage type tags of the legacy format and the dtype of their elements.
_STORAGES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageTag:
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage is read after the pickle: materialised by :func:`_materialise`."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; any other global is an error, never a call."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageTag(_STORAGES[name])
        raise pickle.UnpicklingError(f"refusing global {module}.{name} (not a plain tensor state dict)")

    def persistent_load(self, pid: Any) -> Any:
        # ("storage", type tag, key, location, element count, view of another storage or None)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[5] is None):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:60]}")
        _, tag, key, _location, numel, _view = pid
        if not isinstance(tag, _StorageTag):
            raise pickle.UnpicklingError("a storage without a known storage type")
        return _StorageRef(str(key), tag.dtype, int(numel))


def _read_storages(handle: IO[bytes], keys: list[str], refs: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise pickle.UnpicklingError(f"storage {key} is listed but no tensor uses it")
        (numel,) = struct.unpack("<q", handle.read(8))
        if numel != ref.numel:
            raise pickle.UnpicklingError(f"storage {key}: {numel} elements on disk, {ref.numel} in the pickle")
        raw = handle.read(numel * ref.dtype.itemsize)
        if len(raw) != numel * ref.dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)
    return storages


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    item = flat.dtype.itemsize
    if ref.size and ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True)) >= flat.size:
        raise pickle.UnpicklingError("a tensor reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :], shape=ref.size, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.array(view)  # a contiguous copy, detached from the file's buffer


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy ``.pth`` state dict, by name; ConfigError when the file is anything else."""
    try:
        with path.open("rb") as handle:
            header = [_Unpickler(handle).load() for _ in range(3)]
            if header[0] != _MAGIC or header[1] != _PROTOCOL:
                raise pickle.UnpicklingError("not a legacy PyTorch file (bad magic number or protocol)")
            if not isinstance(header[2], dict) or header[2].get("little_endian") is not True:
                raise pickle.UnpicklingError("only little-endian files are read")
            state = _Unpickler(handle).load()
            keys = _Unpickler(handle).load()
            tensors = state.items() if isinstance(state, dict) else ()
            refs = {value.storage.key: value.storage for _, value in tensors if isinstance(value, _TensorRef)}
            if not isinstance(state, dict) or not isinstance(keys, list) or not refs:
                raise pickle.UnpicklingError("the file holds no tensor state dict")
            storages = _read_storages(handle, [str(k) for k in keys], refs)
            return {str(k): _materialise(v, storages) for k, v in state.items() if isinstance(v, _TensorRef)}
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError) as error:
        raise ConfigError(f"cannot read {path} as a PyTorch state dict: {error}") from None
