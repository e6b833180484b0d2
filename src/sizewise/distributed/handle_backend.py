"""Backends that call a model's Ray Serve deployment through its handle (:func:`deployed_backend`).

The gateway's engine calls them like any transport; the model runs in its own deployment (its own CPUs,
GPUs and replicas). A chat model (:class:`RayHandleBackend`): Ray's own failures (a replica that died, a
deployment that is gone) become a retryable :class:`BackendError`, so the engine's one
retry-then-fallback loop handles them as it handles a dead upstream. The image classifier and the speech
model keep their gateway-side objects (labels, limits, the per-client transcript cache) and send only the
computation (decoding included) to the deployment; the deployment's own errors (a corrupt image, an
unreadable clip) come back as themselves, so the client gets the same 4xx as in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from sizewise.backends.base import Backend, BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.backends.speech import SpeechBackend, Transcript
from sizewise.backends.vision import ImageClassifier, load_labels
from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import RequestRejected
from sizewise.errors import SizewiseError

T = TypeVar("T")


def _translated(error: BaseException, model: str) -> BaseException:
    """The model's own :class:`BackendError` when the replica raised one, else a retryable one naming Ray's."""
    cause = getattr(error, "cause", None)  # RayTaskError carries the replica's exception
    if isinstance(cause, BackendError):
        return cause
    return BackendError(f"{model}: Ray deployment failed: {type(error).__name__}: {error}", retryable=True)


class RayHandleBackend(Backend):
    """Forwards ``complete``, ``stream`` and ``choice_logprobs`` to a ``ModelServer`` deployment handle."""

    def __init__(self, model: str, handle: Any) -> None:
        self.model = model
        self.handle = handle

    async def _call(self, response: Awaitable[T]) -> T:
        try:
            return await response
        except Exception as error:  # Ray's errors are many classes; each becomes one BackendError
            raise _translated(error, self.model) from None

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One whole answer from the model's deployment."""
        return await self._call(self.handle.complete.remote(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer's chunks as the deployment yields them (a streaming handle call)."""
        chunks = self.handle.options(stream=True).stream.remote(request)
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as error:
            raise _translated(error, self.model) from None

    async def choice_logprobs(self, request: ChatRequest, choices: list[str]) -> dict[str, float]:
        """Next-token log-probabilities, computed where the model lives."""
        return await self._call(self.handle.choice_logprobs.remote(request, choices))


def _own_error(error: BaseException) -> BaseException:
    """The deployment's own error (a bad image, an unreadable clip: the client's 4xx), else Ray's."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, (SizewiseError, RequestRejected)) else error


class RayClassifier(ImageClassifier):
    """An image classifier whose model runs in its deployment; the labels and limits stay here."""

    def __init__(self, handle: Any, local: ImageClassifier) -> None:
        super().__init__(local.key, threads=local.threads, limits=local.limits)
        self.handle = handle

    def _load(self) -> Any:  # only the class names: the onnxruntime session lives in the deployment
        with self._lock:
            if not self._labels:
                self._labels = load_labels()
        return None

    def probabilities(self, image_bytes: bytes, index: int = 0) -> Any:
        """The deployment's class probabilities (called from a worker thread: waits on the handle)."""
        try:
            return self.handle.probabilities.remote(image_bytes, index).result()
        except Exception as error:
            raise _own_error(error) from None


class RaySpeechBackend(SpeechBackend):
    """A Whisper model in its deployment; this side keeps each client's recent transcripts (as in one process)."""

    def __init__(self, local: SpeechBackend, handle: Any) -> None:
        super().__init__(local.spec, local.settings, None)
        self.handle = handle

    def transcribe_sync(
        self, data: bytes, language: str | None = None, prompt: str | None = None, temperature: float = 0.0
    ) -> Transcript:
        """The deployment's transcript (called from a worker thread by :meth:`transcribe`)."""
        try:
            return self.handle.transcribe.remote(data, language, prompt, temperature).result()  # type: ignore[no-any-return]
        except Exception as error:
            raise _own_error(error) from None

    def load(self) -> None:
        """Nothing to load here: the model loads in its deployment."""

    def state(self) -> dict[str, Any]:
        """For ``/healthz``: the model is in its own deployment."""
        return {"kind": "speech", "deployment": f"model-{self.model}"}


def deployed_backend(spec: ModelSpec, catalog: Any, handle: Any) -> Backend:
    """The backend of ``spec`` when the model is its own deployment reached through ``handle``."""
    from sizewise.backends.factory import make_backend
    from sizewise.backends.vision import VisionBackend

    if spec.backend == "llamacpp":
        return RayHandleBackend(spec.name, handle)
    local = make_backend(spec, catalog)  # nothing loads here: the model does in the deployment
    if isinstance(local, VisionBackend):
        local.classifier = RayClassifier(handle, local.classifier)
        return local
    if isinstance(local, SpeechBackend):
        return RaySpeechBackend(local, handle)
    raise ValueError(f"{spec.name}: backend {spec.backend!r} has no Ray deployment")  # pragma: no cover
