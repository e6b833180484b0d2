"""The image step of the request path: a chat request with an image may be answered by the local classifier.

Before the filters and the policy, :meth:`ImageStep.answer` checks every image part (count, bytes, format,
declared pixels: a 4xx for a bad one) and, when the catalog has a ``kind: vision`` model and the request is
routed (``model`` is a policy, not a named chat model), asks two questions:

1. can a label answer the question? (:func:`sizewise.serve.vision_intent.classifiable`, from the text);
2. is the classifier sure? (top-1 probability >= the model's calibrated ``threshold``).

Both yes: the classifier answers ("This looks like an espresso (0.95).") with the top 5 in the ``sizewise``
object's ``vision`` field, and no chat model is called. Otherwise the request goes on to the filters, where
the modality filter keeps only chat models that read images (or answers 400 when the catalog has none),
and ``vision`` says why the classifier did not answer. A request naming the vision model is always
classified. ``http(s)`` image URLs are fetched only when the model's ``fetch_urls`` allows it, and never under
``gateway.privacy: local-only``: a URL (its query string above all) may carry personal data, and fetching it
sends that to its host before the privacy filter has run; a scan of the URL would miss ids it has no rule for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sizewise.backends.base import Backend, ChatResult
from sizewise.backends.image_input import ImageLimits, ImageRef, decode_rgb, image_refs
from sizewise.backends.imagenet_groups import alternatives, classes_of
from sizewise.backends.vision import answer_text
from sizewise.catalog.schema import GatewaySettings, ModelSpec, OnnxSettings
from sizewise.core.decision import Decision, RequestRejected, Step
from sizewise.core.text import last_user_text
from sizewise.errors import ConfigError
from sizewise.policy.types import RequestContext
from sizewise.serve.vision_intent import classifiable

_NOTE = "vision"
#: Images decoded (and classified) at once, per engine.
DECODERS = 2


class ImageStep:
    """The local classifier in front of the chat models; one per engine, built when the catalog has one."""

    def __init__(
        self,
        spec: ModelSpec,
        backend_of: Callable[[ModelSpec], Backend],
        settings: OnnxSettings,
        *,
        local_only: bool = False,
    ) -> None:
        self.spec = spec
        self.settings = settings
        #: ``gateway.privacy: local-only``: no image URL is fetched, whatever ``fetch_urls`` says.
        self.local_only = local_only
        self.limits = ImageLimits(settings.max_images, settings.max_image_bytes, settings.max_pixels)
        self._backend_of = backend_of  # the engine's: the classifier is created (not loaded) on first use
        # Decoded pixels are the memory an image costs (3 bytes each): at most DECODERS images at once, so a
        # burst of large photos holds 2 x 3 x max_pixels bytes, not one decode per waiting request.
        self._decoders = asyncio.Semaphore(DECODERS)

    @classmethod
    def build(
        cls,
        models: list[ModelSpec],
        backend_of: Callable[[ModelSpec], Backend],
        gateway: GatewaySettings | None = None,
    ) -> ImageStep | None:
        """The step for the catalog's first ``kind: vision`` model on ``backend: onnx``; None without one."""
        local_only = gateway is not None and gateway.privacy == "local-only"
        wrong = [spec.name for spec in models if spec.backend == "onnx" and spec.kind != "vision"]
        if wrong:  # an onnx model only classifies images: as a chat model it would "answer" every prompt
            raise ConfigError(f"model {wrong[0]!r}: backend 'onnx' is an image classifier; give it kind: vision")
        for spec in models:
            if spec.kind == "vision" and spec.backend == "onnx":
                return cls(spec, backend_of, OnnxSettings.model_validate(spec.settings), local_only=local_only)
        return None

    async def answer(self, ctx: RequestContext, named: str | None) -> tuple[ChatResult, Decision] | None:
        """The classifier's answer, or None to let the chat models answer. ``named``: the catalog model the
        request names (None when it names a policy). Raises :class:`RequestRejected` for a bad image."""
        if "image" not in ctx.modalities:
            return None
        refs = image_refs(ctx.messages, self.limits)
        question = last_user_text(ctx.messages)
        if named == self.spec.name:  # asked for the classifier itself: it answers whatever the question
            return await self._classify(ctx, refs, question, forced=True, why="the request names the vision model")
        ok, why = (False, f"the request names model {named!r}") if named else classifiable(question)
        if ok and "audio" in ctx.modalities:  # the question may be spoken: heard later, by the speech step
            ok, why = False, "the request has audio too (a spoken question is not read here)"
        if ok and len(refs) > 1:
            ok, why = False, f"{len(refs)} images (the classifier names one)"
        if ok and refs[0].data is None and not self.settings.fetch_urls:
            ok, why = False, "an image URL, and fetch_urls is off"
        if ok and refs[0].data is None and self.local_only:  # _fetch refuses it too: named requests
            ok, why = False, "an image URL, and privacy 'local-only' fetches none"
        if not ok:
            await self._check(refs)
            ctx.extras[_NOTE] = {"answered": False, "reason": why}
            return None
        return await self._classify(ctx, refs, question, forced=False, why=why)

    def note(self, ctx: RequestContext, decision: Decision) -> None:
        """Say in ``decision`` why the classifier left the request to the chat models (when it did)."""
        if _NOTE in ctx.extras:
            decision.notes[_NOTE] = ctx.extras[_NOTE]

    async def _check(self, refs: list[ImageRef]) -> None:
        """Decode the images the chat models get (small: JPEG at 1/8 scale), in a thread: a corrupt, truncated
        or bomb image is refused here with a 4xx, not passed upstream."""
        for ref in refs:
            if ref.data is not None:
                async with self._decoders:
                    await asyncio.to_thread(decode_rgb, ref.data, ref.index, self.limits, 32)

    async def _classify(
        self, ctx: RequestContext, refs: list[ImageRef], question: str, *, forced: bool, why: str
    ) -> tuple[ChatResult, Decision] | None:
        start = time.perf_counter()
        data = refs[0].data if refs[0].data is not None else await self._fetch(refs[0])
        classifier = self._backend_of(self.spec).classifier  # type: ignore[attr-defined]
        async with self._decoders:
            probs = await asyncio.to_thread(classifier.probabilities, data, refs[0].index)
        labels = classifier.top(probs, 5)
        latency = time.perf_counter() - start
        threshold = self.settings.threshold
        note: dict[str, Any] = {"question": why, "top5": [label.to_dict() for label in labels], "threshold": threshold}
        name, top = labels[0].name, labels[0].score
        pair = alternatives(question)
        if pair is not None:  # "is this a cat or a dog?": each alternative's classes, summed
            groups = {phrase: classes_of(phrase, classifier.names) for phrase in pair}
            unknown = [phrase for phrase, classes in groups.items() if not classes]
            if unknown and not forced:
                await self._decline(ctx, refs, f"{' and '.join(map(repr, unknown))}: no such class", note)
                return None
            note["choices"] = {phrase: round(float(probs[c].sum()), 4) for phrase, c in groups.items() if c}
            name, top = max(note["choices"].items(), key=lambda item: item[1])
        if not forced and top < threshold:
            await self._decline(ctx, refs, f"top-1 {top:.2f} < threshold {threshold}", note)
            return None
        reason = f"vision model answered: {why}; {name} {top:.2f} >= {threshold}"
        decision = Decision(policy=ctx.model_field, model=self.spec.name, score=top, threshold=threshold)
        decision.reason = "vision model answered (named)" if forced else reason
        decision.steps.append(Step(self.spec.name, top, threshold, accepted=True, reason=reason, latency_s=latency))
        decision.notes[_NOTE] = {"answered": True, **note}
        return ChatResult(model=self.spec.name, text=answer_text(name, top), latency_s=latency), decision

    async def _decline(self, ctx: RequestContext, refs: list[ImageRef], reason: str, note: dict[str, Any]) -> None:
        await self._check(refs[1:])
        ctx.extras[_NOTE] = {"answered": False, "reason": reason, **note}

    async def _fetch(self, ref: ImageRef) -> bytes:
        """The bytes at an image URL: ``fetch_timeout_s`` for the whole transfer, at most ``max_image_bytes``.
        The one place that fetches, so every path (a request naming the classifier too) obeys ``fetch_urls`` and
        ``local-only``."""
        import httpx

        url, cap = str(ref.url), self.limits.max_bytes

        def refuse(message: str, status: int = 400, code: str = "invalid_image") -> RequestRejected:
            return RequestRejected(status, f"image {ref.index}: {message}", code, param="messages")

        if self.local_only:
            raise refuse(
                "privacy 'local-only' fetches no image URL; send the image as a data URL", 400, "privacy_image_url"
            )
        if not self.settings.fetch_urls:
            raise refuse("this gateway fetches no image URL (fetch_urls is off); send the image as a data URL")

        async def allowed(request: httpx.Request) -> None:  # every hop, so a redirect cannot leave the list
            if not host_allowed(request.url.host, self.settings.fetch_hosts):
                raise refuse(f"host {request.url.host!r} is not in fetch_hosts")

        try:
            async with (
                asyncio.timeout(self.settings.fetch_timeout_s),
                httpx.AsyncClient(event_hooks={"request": [allowed]}) as client,
                client.stream("GET", url, follow_redirects=True) as response,
            ):
                if response.status_code != 200:
                    raise refuse(f"fetching {url} answered HTTP {response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise refuse(f"{url} is larger than {cap} bytes", 413, "image_too_large")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:
            raise refuse(f"fetching {url} took longer than {self.settings.fetch_timeout_s} s") from None
        except httpx.HTTPError as error:
            raise refuse(f"cannot fetch {url}: {type(error).__name__}") from None


def host_allowed(host: str, hosts: list[str]) -> bool:
    """Whether ``host`` matches ``hosts`` (names, or ``*.domain`` for its subdomains); an empty list allows any."""
    host = host.lower().rstrip(".")
    if not hosts:
        return True
    return any(host == h.lower() or (h.startswith("*.") and host.endswith(h[1:].lower())) for h in hosts)
