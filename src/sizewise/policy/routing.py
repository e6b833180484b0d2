"""Routing policies: a router scores the prompt and picks the small or the big model before generating.

Model-field names served here:

* ``router-<name>-<threshold>`` (as RouteLLM): ``<name>`` is a router file ``<router_dir>/<name>.zip``
  (``gateway.router_dir`` or the ``router_dir`` given to the app) or, failing that, a registered router
  name that needs no training. Score >= threshold sends the prompt to the big model.
* ``sizewise``: the default policy. It uses, in order, the first that exists:

  1. ``gateway.router`` (a file path or a router name in ``router_dir``) with ``gateway.threshold``;
  2. a router file ``default.zip`` in ``router_dir``;
  3. the pretrained router shipped in the package (``sizewise/routers/pretrained/default.zip``, a
     ``gbdt`` router on static embeddings distilled from MiniLM + text features, under 1 ms per new
     prompt, see its README) with the threshold
     calibrated for 50% big-model calls on held-out data, recorded in the file with the id of the
     embedding it was trained on (a file that does not fit the installed embedding stops start-up);
  4. the built-in :class:`HeuristicScorer` (prompt length, step/math/code markers, turns) with
     threshold 0.5, only when no router file can be loaded.

  ``gateway.threshold`` overrides the threshold in every case.
  When ``gateway.default_policy`` names another policy (e.g. a ``cascade-...``), the engine uses that
  one for ``sizewise`` instead.

The pair: with ``gateway.ladder`` set, its last two entries are (small, big); otherwise the two largest
LLMs of the catalog by parameter count (then price). On the default catalog that is
qwen2.5-coder-0.5b (small) and qwen2.5-coder-1.5b (big); the tiny model is a fault fallback only.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from sizewise.catalog.catalog import ladder_key
from sizewise.catalog.schema import ModelSpec
from sizewise.core.decision import RequestRejected
from sizewise.errors import ConfigError, NotFittedError, SizewiseError, UnknownNameError
from sizewise.policy.types import Plan, PolicyEnv, RequestContext, RoutingPolicy, register_policy

logger = logging.getLogger(__name__)

_STEP = re.compile(
    r"\b(prove|derive|step[- ]by[- ]step|explain why|calculate|compute|solve|optimi[sz]e|algorithm|implement|debug|"
    r"refactor|complexity|theorem|integral|equation|how many|analy[sz]e|compare)\b",
    re.I,
)
_CODE = re.compile(r"```|\bdef |\bclass |#include|\bfunction\b|=>|\bSELECT\b", re.I)
_DIGIT = re.compile(r"\d")


class HeuristicScorer:
    """Stop-gap default scorer in [0, 1]: longer, multi-step, math or code prompts need the big model.

    Not learned: used only when no trained router is configured or shipped (see the module docstring).
    """

    name = "heuristic"

    def score(self, prompts: Sequence[str]) -> list[float]:
        """One score per prompt; >= 0.5 means the big model."""
        out = []
        for text in prompts:
            length = min(math.log1p(len(text)) / math.log1p(2000), 1.0)
            steps = min(len(_STEP.findall(text)) / 2, 1.0)
            code = 1.0 if _CODE.search(text) else 0.0
            digits = min(len(_DIGIT.findall(text)) / 12, 1.0)
            turns = min(text.count("\nassistant:") / 3, 1.0)
            out.append(round(0.35 * length + 0.3 * steps + 0.15 * code + 0.12 * digits + 0.08 * turns, 4))
        return out


def model_pair(env: PolicyEnv) -> tuple[ModelSpec, ModelSpec]:
    """(small, big) for two-model routing: the last two of ``gateway.ladder``, else the two largest LLMs."""
    ladder = env.ladder()
    if len(ladder) < 2:
        raise ConfigError("routing needs at least two LLMs in the catalog (or gateway.ladder)")
    return ladder[-2], ladder[-1]


#: A router or scorer file name a request may give: a plain name inside the router directory, never a
#: path (no separator, no leading dot), so a client cannot probe which files exist on the server.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _find_router_file(name: str, env: PolicyEnv, trusted: bool) -> Path | None:
    if not trusted and not FILE_NAME.fullmatch(name):
        return None
    candidates = [Path(name)] if trusted and name.endswith(".zip") else []
    if env.router_dir is not None:
        candidates += [env.router_dir / name, env.router_dir / f"{name}.zip"]
    return next((path for path in candidates if path.is_file()), None)


def load_router(name: str, env: PolicyEnv, *, trusted: bool = False) -> tuple[Any, float | None]:
    """A fitted router by file or registry name, and its saved threshold; loaded once per env.

    ``trusted`` (the catalog's own ``gateway.router``) may be a file path; a name from a request
    (``router-<name>-...``) is looked up only in the router directory.
    """
    key = f"router:{'config:' if trusted else ''}{name}"
    if key not in env.cache:
        env.cache[key] = _load_router(name, env, trusted)
    return env.cache[key]


def _load_router(name: str, env: PolicyEnv, trusted: bool) -> tuple[Any, float | None]:
    from sizewise.routers import base as routers

    if name == HeuristicScorer.name:
        return HeuristicScorer(), 0.5
    path = _find_router_file(name, env, trusted)
    if path is None and not trusted and not FILE_NAME.fullmatch(name):
        raise UnknownNameError(f"unknown router {name!r}: name a router file in the router directory, not a path")
    if path is None and not trusted and name.endswith(".zip"):
        raise UnknownNameError(f"router file {name!r}: not in the router directory")
    if path is None and name.endswith(".zip"):
        where = f" or in the router directory {env.router_dir}" if env.router_dir is not None else ""
        raise UnknownNameError(f"router file {name!r}: no such file (looked at {name}{where})")
    router = routers.load_router(path) if path is not None else routers.make_router(name)
    if path is None:
        try:
            router.score(["probe"])
        except NotFittedError:
            raise UnknownNameError(
                f"router {name!r} needs training: save a trained one as {name}.zip in the router directory"
            ) from None
    return router, getattr(router, "threshold_", None)


class RouterPolicy(RoutingPolicy):
    """Score the whole conversation with a router; score >= threshold picks the big model."""

    def __init__(self, name: str, scorer: Any, threshold: float, small: ModelSpec, big: ModelSpec) -> None:
        super().__init__(name)
        self.scorer = scorer
        self.threshold = threshold
        self.small = small
        self.big = big
        # Learned routers may embed text (milliseconds of CPU): score them off the event loop.
        self._inline = isinstance(scorer, HeuristicScorer)

    async def plan(self, ctx: RequestContext, candidates: list[ModelSpec]) -> Plan:
        score = await self._score(ctx.text)
        names = {spec.name for spec in candidates}
        want_big = score >= self.threshold
        first, second = (self.big, self.small) if want_big else (self.small, self.big)
        order = [spec for spec in (first, second) if spec.name in names]
        # Remaining candidates serve as fault fallbacks, largest first.
        order += sorted(
            (spec for spec in candidates if spec.name not in (first.name, second.name)),
            key=ladder_key,
            reverse=True,
        )
        reason = f"score {score:.3f} {'>=' if want_big else '<'} threshold {self.threshold:g}"
        if order and order[0].name != first.name:
            reason += f"; {first.name} filtered out"
        return Plan(order, score=score, threshold=self.threshold, reason=reason, escalated=order[0] is self.big)

    async def _score(self, text: str) -> float:
        if self._inline:
            return float(self.scorer.score([text])[0])
        import anyio

        scores = await anyio.to_thread.run_sync(self.scorer.score, [text])
        return float(scores[0])


class BypassPolicy(RoutingPolicy):
    """The client named a catalog model: use it; with ``fallback``, on a fault fall back to the others, largest
    first (else a fault is the answer: ``gateway.fallback_for_named_models`` is off by default)."""

    def __init__(self, spec: ModelSpec, reason: str = "model named in the request", *, fallback: bool = True) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.reason = reason
        self.fallback = fallback

    async def plan(self, ctx: RequestContext, candidates: list[ModelSpec]) -> Plan:
        if not any(spec.name == self.spec.name for spec in candidates):
            raise RequestRejected(400, f"model {self.spec.name!r} cannot serve this request", "model_not_suitable")
        if not self.fallback:
            return Plan([self.spec], reason=self.reason)
        others = sorted((s for s in candidates if s.name != self.spec.name), key=ladder_key, reverse=True)
        return Plan([self.spec, *others], reason=self.reason)


def parse_router_field(model_field: str, prefix: str = "router-") -> tuple[str, float]:
    """``router-<name>-<threshold>`` (or another ``prefix``) -> (name, number); names may contain dashes."""
    # The shortest name that leaves a number, so a negative threshold parses: router-knn--0.1.
    found = re.fullmatch(r"(.+?)-(-?(?:\d+\.?\d*|\.\d+)(?:e-?\d+)?)", model_field.removeprefix(prefix))
    name, value = (found.group(1), float(found.group(2))) if found else ("", math.nan)
    if not name or not math.isfinite(value):
        raise UnknownNameError(f"model {model_field!r}: expected {prefix}<name>-<number>, e.g. {prefix}mf-0.5")
    return name, value


def router_policy(model_field: str, env: PolicyEnv) -> RouterPolicy:
    """Factory for ``router-<name>-<threshold>``."""
    name, threshold = parse_router_field(model_field)
    scorer, _ = load_router(name, env)
    small, big = model_pair(env)
    return RouterPolicy(model_field, scorer, threshold, small, big)


#: The router shipped in the package; its file records its calibration (the default threshold among them).
PRETRAINED_PACKAGE = "sizewise.routers"
PRETRAINED_FILE = "pretrained/default.zip"


def shipped_router() -> tuple[Path, float | None]:
    """(path of the pretrained default router, the default threshold recorded in it or None); a
    :class:`RouterFileError` for a file or calibration that cannot be read."""
    from sizewise.routers.base import calibrated_threshold

    path = Path(str(files(PRETRAINED_PACKAGE).joinpath(PRETRAINED_FILE)))
    return path, (calibrated_threshold(path) if path.is_file() else None)


def default_policy(model_field: str, env: PolicyEnv) -> RoutingPolicy:
    """Factory for ``sizewise``: the configured router, else a default router file, else the heuristic;
    with a single LLM and nothing configured, that model (there is nothing to route between)."""
    settings = env.settings
    if len(env.llms()) == 1 and not settings.router and len(settings.ladder) < 2:
        return BypassPolicy(env.llms()[0], reason="the catalog's only LLM")
    small, big = model_pair(env)
    if settings.router:
        scorer, saved = load_router(settings.router, env, trusted=True)
    else:
        local = env.router_dir / "default.zip" if env.router_dir is not None else None
        shipped = Path(str(files(PRETRAINED_PACKAGE).joinpath(PRETRAINED_FILE)))
        path, saved = (local if local is not None and local.is_file() else shipped), None
        scorer = HeuristicScorer()
        if path.is_file():
            from sizewise.routers import base as routers

            try:
                scorer = routers.load_router(path)  # its threshold_ is the calibration recorded in the file
            except ImportError as error:  # a router needing a library this install lacks: route by heuristic
                logger.warning("default router %s unusable (%s); using the heuristic scorer", path, error)
            except SizewiseError as error:  # corrupt, or built on another embedding: never route on garbage
                raise ConfigError(f"default router unusable: {error}") from None
            else:
                saved = scorer.threshold_
        if isinstance(scorer, HeuristicScorer):
            saved = 0.5
    threshold = settings.threshold if settings.threshold is not None else (saved if saved is not None else 0.5)
    return RouterPolicy(model_field, scorer, float(threshold), small, big)


register_policy("router-", router_policy)
register_policy("sizewise", default_policy)
