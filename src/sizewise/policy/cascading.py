"""The gateway's ``cascade-<scorer>`` policy: the smallest model answers, a scorer judges, bigger ones take over.

``model="cascade-logprob"`` (or ``cascade-consistency``, ``cascade-verifier``, ``cascade-answer-classifier``)
climbs the catalog's text models from the smallest. Each rung's answer is scored; it is accepted when the
score reaches the threshold, else the next model answers; the last rung is always accepted. A threshold
can be given in the name (``cascade-logprob:0.6``). A fitted scorer is read from
``<router_dir>/scorer-<name>.zip`` when present (``answer-classifier`` needs one).

A rung whose upstream fails (after the engine's one retry) is skipped: the next model answers and the
decision says ``fallback_from``. If the last rung fails, the best earlier answer is returned.
An answer cut at ``max_tokens`` (``finish_reason: length``) is never accepted below the top rung, whatever
its score: it is not scored, and the next model answers (its step says why).
Streaming requests are buffered: the accepted answer is streamed only once chosen, so the time to the
first token is the time of every rung tried plus scoring.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from sizewise.cascade.scorers.base import Answer, Scorer, load_scorer, make_scorer
from sizewise.catalog.schema import ModelSpec
from sizewise.core.chat import BackendError, ChatResult
from sizewise.errors import ConfigError, NotFittedError, SizewiseError
from sizewise.policy.routing import FILE_NAME
from sizewise.policy.types import (
    Caller,
    CascadePolicy,
    Decision,
    PolicyEnv,
    RequestContext,
    RequestRejected,
    Step,
    register_policy,
)

#: ``logprob``: calibrated on the embedded ladder's own answers, cut ones escalated as below (python
#: bench/train_default_router.py, 549 questions: the cheapest cascade keeping 95% of the 1.5B model's
#: accuracy with 95% confidence; 0.85 was chosen before cut answers were escalated).
#: The others are not calibrated yet (their scorers' model calls were not collected).
DEFAULT_THRESHOLDS = {"logprob": 0.73, "consistency": 0.67, "verifier": 0.5, "answer-classifier": 0.5}
#: Why a rung whose answer stopped at ``max_tokens`` is never accepted below the top: its confident start
#: says nothing of the part that is missing ("17*23 = 3" scored 0.775 with logprob, issue #23).
CUT = "answer cut at max_tokens (finish_reason length)"
#: A cut answer's rank among the answers kept when the rungs above fail: below any scored whole answer.
TRUNCATED_RANK = -1.0


class LiveCascade(CascadePolicy):
    """Climb a ladder of catalog models, accepting the first answer the scorer trusts."""

    def __init__(self, name: str, scorer: Scorer, threshold: float, env: PolicyEnv) -> None:
        super().__init__(name)
        self.scorer = scorer
        self.threshold = threshold
        self.env = env

    def ladder(self, candidates: list[ModelSpec]) -> list[ModelSpec]:
        """The candidates on the ladder (``gateway.ladder`` when set, else every text model), smallest first."""
        order = {spec.name: i for i, spec in enumerate(self.env.ladder())}
        return sorted((s for s in candidates if s.name in order), key=lambda s: order[s.name])

    async def _score(self, ctx: RequestContext, spec: ModelSpec, nxt: ModelSpec | None, result: ChatResult) -> float:
        answer = Answer(ctx.text, result.text, model=spec.name, logprobs=result.logprobs)
        answer = await self.scorer.enrich(
            answer, ctx.request, self.env.backend(spec), None if nxt is None else self.env.backend(nxt)
        )
        return float(self.scorer.score([answer])[0])

    async def run(
        self, ctx: RequestContext, candidates: list[ModelSpec], call: Caller, decision: Decision
    ) -> ChatResult:
        """Answer, score, escalate; every rung (score, threshold, why it stopped) is a step of ``decision``."""
        ladder = self.ladder(candidates)
        decision.threshold = self.threshold
        inner = replace(ctx, request=replace(ctx.request, logprobs=True))
        kept: list[tuple[float, ChatResult, ModelSpec]] = []
        failed_first: str | None = None
        for j, spec in enumerate(ladder):
            last = j == len(ladder) - 1
            started = time.perf_counter()
            try:
                result = await call(spec, inner)
            except BackendError as error:
                decision.steps.append(
                    Step(
                        spec.name,
                        reason="upstream failed; next model",
                        error=str(error),
                        latency_s=time.perf_counter() - started,
                    )
                )
                failed_first = failed_first or spec.name
                continue
            cost = spec.cost_usd(result.prompt_tokens, result.completion_tokens)
            decision.cost += cost
            step = Step(spec.name, threshold=None if last else self.threshold, cost=cost)
            decision.steps.append(step)
            truncated = result.finish_reason == "length"
            if last:
                step.accepted, step.reason = True, "last model of the ladder" + (f"; {CUT}" if truncated else "")
                step.latency_s = time.perf_counter() - started
                kept.append((float("inf"), result, spec))
                break
            if truncated:  # no score makes a cut answer whole; scoring it would only spend scorer calls
                step.reason, step.latency_s = f"{CUT}: not scored, escalate", time.perf_counter() - started
                kept.append((TRUNCATED_RANK, result, spec))
                continue
            try:
                score = await self._score(ctx, spec, ladder[j + 1], result)
            except (BackendError, SizewiseError) as error:
                score, step.error = 0.0, f"scorer failed: {error}"
            step.score = score
            step.latency_s = time.perf_counter() - started
            kept.append((score, result, spec))
            if score >= self.threshold:
                step.accepted, step.reason = True, f"score {score:.3f} >= {self.threshold:g}"
                break
            step.reason = f"score {score:.3f} < {self.threshold:g}: escalate"
        return self._settle(decision, kept, ladder[0].name, failed_first)

    def _settle(
        self, decision: Decision, kept: list[tuple[float, ChatResult, ModelSpec]], first: str, failed_first: str | None
    ) -> ChatResult:
        """The accepted answer (else the best kept one, marked), written into ``decision``."""
        if not kept:
            raise BackendError("every model of the cascade failed", retryable=False)
        accepted = [k for k in kept if any(s.accepted and s.model == k[2].name for s in decision.steps)]
        score, result, spec = accepted[-1] if accepted else max(kept, key=lambda k: k[0])
        if not accepted:  # the rungs above failed: keep the best answer we have and say so
            for step in decision.steps:
                if step.model == spec.name and step.error is None:
                    step.accepted, step.reason = True, step.reason + "; kept: the models above failed"
        decision.model = spec.name
        decision.score = None if score in (float("inf"), TRUNCATED_RANK) else score
        decision.escalated = spec.name != first
        if failed_first is not None:
            decision.fallback_from = failed_first
        decision.reason = f"cascade with {self.scorer.name}: answered by {spec.name} after {len(decision.steps)} steps"
        return result


def parse_name(model_field: str) -> tuple[str, float | None]:
    """``cascade-logprob:0.6`` -> (``logprob``, 0.6)."""
    rest = model_field.removeprefix("cascade-")
    scorer, _, threshold = rest.partition(":")
    if not threshold:
        return scorer, None
    try:
        return scorer, float(threshold)
    except ValueError:
        raise RequestRejected(400, f"bad cascade threshold {threshold!r} in {model_field!r}", "invalid_model") from None


def cascade_policy(model_field: str, env: PolicyEnv) -> LiveCascade:
    """Factory for ``cascade-<scorer>[:threshold]``."""
    name, threshold = parse_name(model_field)
    key = f"scorer:{name}"
    if key not in env.cache:
        # Only a plain name is looked up on disk: a path in a request must not reveal which files exist.
        directory = env.router_dir if FILE_NAME.fullmatch(name) else None
        path = None if directory is None else directory / f"scorer-{name}.zip"
        try:
            scorer: Any = load_scorer(path) if path is not None and path.is_file() else make_scorer(name)
            scorer.check_fitted()
        except NotFittedError as error:
            hint = f"save a fitted one as scorer-{name}.zip in the router directory (--router-dir, gateway.router_dir)"
            raise RequestRejected(400, f"{model_field}: {error}; {hint}", "invalid_model") from None
        except (SizewiseError, ConfigError) as error:
            raise RequestRejected(400, f"{model_field}: {error}", "invalid_model") from None
        env.cache[key] = scorer
    return LiveCascade(
        model_field, env.cache[key], DEFAULT_THRESHOLDS.get(name, 0.5) if threshold is None else threshold, env
    )


register_policy("cascade-", cascade_policy)
