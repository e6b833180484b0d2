"""Learning that cannot make things worse: refit on a deployment's judged requests, shrunk toward the
incumbent router, and promote only what a paired test on held-out requests shows better.

* **Refit**: :func:`refit` builds a ``retrained`` router (:mod:`sizewise.routers.retrained`): the
  incumbent's score plus a ridge correction weighing about n / (n + shrink).
* **Guard**: :func:`paired_comparison` cross-fits the candidate (k folds: each fold is scored by a
  candidate that never saw it) and compares it with the incumbent on the same requests at the operating
  point, both sending the same share of each fold to the strong model (the share the target asks of the
  incumbent on this traffic), so cost is equal and only quality differs. Ranking within each fold keeps
  fold-level offsets out of the comparison. The candidate is promoted only when the lower end of the 95%
  paired-bootstrap interval of the mean quality difference is above zero.
* **Recalibration**: :func:`calibration` picks the threshold that meets the target (share of strong
  calls, quality as a fraction of the strong model's, or budget per 1,000 requests) on the judged
  traffic itself, weighting each request by the inverse of its chance of being judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.errors import ConfigError, DataError
from sizewise.routers.calibration import _cut
from sizewise.routers.retrained import RetrainedRouter, features

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable
    from sizewise.routers.base import Router

TARGET_KINDS = ("share", "quality", "budget")
#: Fewest judged requests a promotion may rest on: below this a paired test says little.
MIN_OUTCOMES = 50


@dataclass(frozen=True)
class Target:
    """The configured operating point: ``share`` of strong calls, ``quality`` (fraction of the strong
    model's), or ``budget`` (USD per 1,000 requests)."""

    kind: str
    value: float

    @property
    def key(self) -> str:
        """The calibration key, as router files record it (``share_0.5``, ``quality_0.95``)."""
        return f"{self.kind}_{self.value:g}"


def parse_target(text: str) -> Target:
    """``share:0.5``, ``quality:0.95``, ``budget:2.5`` (or ``share_0.5`` as files record it)."""
    kind, _, value = str(text).replace("_", ":", 1).partition(":")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind not in TARGET_KINDS or not np.isfinite(number) or number < 0:
        raise ConfigError(f"target must be share:S, quality:Q or budget:USD_PER_1K, got {text!r}")
    if kind in ("share", "quality") and not 0 <= number <= 1:
        raise ConfigError(f"target {kind} must lie in [0, 1], got {number:g}")
    return Target(kind, number)


def incumbent_target(router: Router, fallback: str = "share:0.5") -> Target:
    """The target a router file's calibration names as its default, else ``fallback``."""
    calibration = getattr(router, "provenance_", {}).get("calibration")
    default = calibration.get("default") if isinstance(calibration, dict) else None
    return parse_target(default) if isinstance(default, str) else parse_target(fallback)


@dataclass
class Outcomes:
    """Judged requests as vectors: prompt texts, both models' quality, optional costs and weights."""

    texts: list[str]
    q_weak: np.ndarray
    q_strong: np.ndarray
    c_weak: np.ndarray | None = None
    c_strong: np.ndarray | None = None
    weights: np.ndarray | None = None

    @classmethod
    def from_table(cls, table: OutcomeTable, weak: str, strong: str, weights: np.ndarray | None = None) -> Outcomes:
        """The rows of ``table`` where both models' quality is known."""
        q_weak, q_strong = table.column(weak), table.column(strong)
        known = ~(np.isnan(q_weak) | np.isnan(q_strong))
        costs = None
        if table.cost is not None:
            c_weak, c_strong = table.column(weak, "cost"), table.column(strong, "cost")
            if not np.isnan(c_weak[known]).any() and not np.isnan(c_strong[known]).any():
                costs = (c_weak[known], c_strong[known])
        texts = [t for t, k in zip(table.texts, known, strict=True) if k]
        w = None if weights is None else np.asarray(weights, dtype=float)[known]
        c_weak_known, c_strong_known = costs or (None, None)
        return cls(texts, q_weak[known], q_strong[known], c_weak_known, c_strong_known, weights=w)

    def w(self) -> np.ndarray:
        """Weights (ones when none were given)."""
        return np.ones(len(self.texts)) if self.weights is None else self.weights


def weighted_threshold(scores: np.ndarray, outcomes: Outcomes, target: Target) -> float:
    """The threshold meeting ``target`` on these requests, each counted with its weight."""
    w = outcomes.w()
    order = np.argsort(-scores, kind="stable")
    ordered, w_sorted = scores[order], w[order]
    total = float(w.sum())
    cum_w = np.r_[0.0, np.cumsum(w_sorted)]
    if target.kind == "share":
        k = int(np.argmin(np.abs(cum_w - target.value * total)))
        return _cut(ordered, k)
    if target.kind == "quality":
        gain = (w * (outcomes.q_strong - outcomes.q_weak))[order]
        curve = (float((w * outcomes.q_weak).sum()) + np.r_[0.0, np.cumsum(gain)]) / total
        goal = target.value * float((w * outcomes.q_strong).sum()) / total
        reached = np.flatnonzero(curve >= goal - 1e-12)
        return _cut(ordered, int(reached[0]) if reached.size else len(ordered))
    if outcomes.c_weak is None or outcomes.c_strong is None:
        raise DataError("the judged requests carry no costs: cannot calibrate to a budget")
    extra = (w * (outcomes.c_strong - outcomes.c_weak))[order]
    cost = (float((w * outcomes.c_weak).sum()) + np.r_[0.0, np.cumsum(extra)]) / total * 1000
    within = np.flatnonzero(cost <= target.value + 1e-12)
    if not within.size:
        raise ConfigError(f"budget {target.value:g} USD per 1k requests is below the weak model's own cost")
    return _cut(ordered, int(within[-1]))


def routed_quality(scores: np.ndarray, threshold: float, outcomes: Outcomes) -> dict[str, float]:
    """Weighted share of strong calls, mean quality and (when known) cost per 1k at ``threshold``."""
    w = outcomes.w()
    strong = scores >= threshold
    quality = np.where(strong, outcomes.q_strong, outcomes.q_weak)
    result = {"share": float(np.average(strong, weights=w)), "quality": float(np.average(quality, weights=w))}
    if outcomes.c_weak is not None and outcomes.c_strong is not None:
        result["cost_per_1k"] = float(np.average(np.where(strong, outcomes.c_strong, outcomes.c_weak), weights=w)) * 1e3
    return result


def calibration(
    router: Router,
    outcomes: Outcomes,
    target: Target,
    scores: np.ndarray | None = None,
    heldout: np.ndarray | None = None,
) -> dict[str, Any]:
    """A router file's calibration record for ``target``, measured on the judged traffic (``scores``: the
    router's scores of ``outcomes.texts``, when the caller has them).

    ``heldout``: scores of the same requests by routers that never saw them (cross-fitted). The router was
    fitted on these requests, so its own scores flatter it; the share of strong calls the target needs is
    then found on ``heldout``, and the threshold sends that share of ``scores`` to the strong model."""
    scores = np.asarray(router.score(outcomes.texts) if scores is None else scores, dtype=float)
    if heldout is None:
        threshold = weighted_threshold(scores, outcomes, target)
        measured = routed_quality(scores, threshold, outcomes)
    else:
        honest = np.asarray(heldout, dtype=float)
        measured = routed_quality(honest, weighted_threshold(honest, outcomes, target), outcomes)
        threshold = weighted_threshold(scores, outcomes, Target("share", measured["share"]))
    entry = {"threshold": threshold, **measured, "n_judged": len(scores)}
    entry["strong_quality"] = float(np.average(outcomes.q_strong, weights=outcomes.w()))
    return {"default": target.key, "targets": {target.key: entry}, "source": "judged traffic"}


def refit(
    incumbent: Router | None,
    table: OutcomeTable,
    *,
    shrink: float = 300.0,
    weak: str | None = None,
    strong: str | None = None,
    weights: np.ndarray | None = None,
    base_scores: np.ndarray | None = None,
    phi: np.ndarray | None = None,
) -> RetrainedRouter:
    """A candidate fitted on ``table``, shrunk toward ``incumbent`` (its base router when it is itself retrained)."""
    router = RetrainedRouter(shrink=shrink)
    return router.fit(table, weak, strong, incumbent=incumbent, weights=weights, base_scores=base_scores, phi=phi)


def base_of(router: Router) -> Router:
    """The router a retrain starts from: a retrained router's base, else the router itself."""
    base = getattr(router, "base_", None) if isinstance(router, RetrainedRouter) else None
    return base if base is not None else router


@dataclass
class Comparison:
    """The paired test of candidate against incumbent on the same held-out judged requests."""

    n: int
    share: float
    incumbent_quality: float
    candidate_quality: float
    diff: float
    ci: tuple[float, float]
    changed: int
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _top_share(scores: np.ndarray, w: np.ndarray, share: float) -> np.ndarray:
    """Which requests go to the strong model when the top ``share`` (by weight) of them do."""
    order = np.argsort(-scores, kind="stable")
    cum = np.cumsum(w[order]) / float(w.sum())
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[order[cum <= share + 1e-12]] = True
    return chosen


def paired_comparison(
    incumbent_scores: np.ndarray,
    candidate_scores: np.ndarray,
    folds: np.ndarray,
    outcomes: Outcomes,
    share: float,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Quality of each router at the same strong share within each fold, paired per request; promote when
    the bootstrap 95% interval of the weighted mean difference lies above zero."""
    w = outcomes.w()
    routed_inc, routed_cand = np.zeros(len(w), dtype=bool), np.zeros(len(w), dtype=bool)
    for fold in np.unique(folds):
        rows = np.flatnonzero(folds == fold)
        routed_inc[rows] = _top_share(incumbent_scores[rows], w[rows], share)
        routed_cand[rows] = _top_share(candidate_scores[rows], w[rows], share)
    q_inc = np.where(routed_inc, outcomes.q_strong, outcomes.q_weak)
    q_cand = np.where(routed_cand, outcomes.q_strong, outcomes.q_weak)
    diff = q_cand - q_inc
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, 100):  # in blocks: 100 x n indices at a time, whatever the table's size
        idx = rng.integers(0, len(w), size=(min(100, n_boot - start), len(w)))
        boot[start : start + len(idx)] = (diff[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    low, high = float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
    mean = float(np.average(diff, weights=w))
    if len(w) < MIN_OUTCOMES:
        promote, reason = False, f"only {len(w)} judged requests (at least {MIN_OUTCOMES} needed)"
    elif low > 0:
        promote, reason = True, f"better by {mean:+.4f} quality at share {share:.2f} (95% CI {low:+.4f}..{high:+.4f})"
    else:
        promote, reason = (
            False,
            f"not shown better: {mean:+.4f} quality at share {share:.2f} (95% CI {low:+.4f}..{high:+.4f})",
        )
    return Comparison(
        n=len(w),
        share=share,
        incumbent_quality=float(np.average(q_inc, weights=w)),
        candidate_quality=float(np.average(q_cand, weights=w)),
        diff=mean,
        ci=(low, high),
        changed=int((routed_inc != routed_cand).sum()),
        promote=promote,
        reason=reason,
    )


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A random, balanced fold number per request."""
    return np.random.default_rng(seed).permutation(np.arange(n) % max(2, min(folds, n)))


@dataclass
class RetrainResult:
    """A candidate, the guard's verdict on it, and its calibration on the judged traffic."""

    candidate: RetrainedRouter
    comparison: Comparison
    calibration: dict[str, Any]
    incumbent_calibration: dict[str, Any]
    n_outcomes: int
    #: False for a retrained incumbent: it was fitted on some of these requests, so its own scores flatter
    #: it and ``incumbent_calibration`` must not replace the threshold it was promoted with.
    incumbent_honest: bool = True

    @property
    def promote(self) -> bool:
        """Whether the guard lets the candidate replace the incumbent."""
        return self.comparison.promote


def retrain(
    incumbent: Router,
    table: OutcomeTable,
    target: Target,
    *,
    shrink: float = 300.0,
    weights: np.ndarray | None = None,
    folds: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
    cached: dict[str, np.ndarray] | None = None,
    pair: tuple[str, str] | None = None,
) -> RetrainResult:
    """Refit on ``table`` (the judged requests), test the candidate against ``incumbent`` and calibrate both.

    ``pair``: the (weak, strong) models of the table (default: the incumbent's, else the table's own).
    ``cached``: what the caller already computed for the rows with both outcomes known (``base``: the base
    router's scores, ``phi``: :func:`~sizewise.routers.retrained.features`, ``incumbent``: its scores)."""
    cached = cached or {}
    weak, strong = table.weak_strong(*pair) if pair is not None else _pair(incumbent, table)
    outcomes = Outcomes.from_table(table, weak, strong, weights)
    if len(outcomes.texts) < 4:
        raise DataError(f"table {table.name!r}: need at least 4 judged requests with both outcomes to retrain")
    known = ~(np.isnan(table.column(weak)) | np.isnan(table.column(strong)))
    judged = table.subset(np.flatnonzero(known))
    fold = fold_ids(len(outcomes.texts), folds, seed)
    base_scores = cached["base"] if "base" in cached else base_of(incumbent).score(outcomes.texts)
    phi = cached["phi"] if "phi" in cached else features(outcomes.texts)
    candidate_scores = np.zeros(len(fold))
    for k in np.unique(fold):
        train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        part = refit(
            incumbent,
            judged.subset(train),
            shrink=shrink,
            weak=weak,
            strong=strong,
            weights=None if outcomes.weights is None else outcomes.weights[train],
            base_scores=base_scores[train],
            phi=phi[train],
        )
        candidate_scores[held] = part.score_from(base_scores[held], phi[held])
    incumbent_scores = cached["incumbent"] if "incumbent" in cached else incumbent.score(outcomes.texts)
    inc_calibration = calibration(incumbent, outcomes, target, incumbent_scores)
    share = inc_calibration["targets"][target.key]["share"]
    comparison = paired_comparison(incumbent_scores, candidate_scores, fold, outcomes, share, n_boot=n_boot, seed=seed)
    candidate = refit(
        incumbent,
        judged,
        shrink=shrink,
        weak=weak,
        strong=strong,
        weights=outcomes.weights,
        base_scores=base_scores,
        phi=phi,
    )
    chosen = calibration(candidate, outcomes, target, candidate.score_from(base_scores, phi), candidate_scores)
    honest = not isinstance(incumbent, RetrainedRouter)
    return RetrainResult(candidate, comparison, chosen, inc_calibration, len(outcomes.texts), honest)


def _pair(incumbent: Router, table: OutcomeTable) -> tuple[str, str]:
    """The table's (weak, strong) pair; the incumbent's own names when the table has them."""
    own = (getattr(incumbent, "weak_", None), getattr(incumbent, "strong_", None))
    if own[0] in table.models and own[1] in table.models:
        return str(own[0]), str(own[1])
    return table.weak_strong()


def provenance(result: RetrainResult, table: OutcomeTable, parent: str | None) -> dict[str, Any]:
    """What a retrained router's file records: sizewise version, training-data digest, parent, guard, calibration
    (the embedding's id is added by the router itself)."""
    from sizewise import __version__
    from sizewise.learn.versions import data_digest

    weak, strong = result.candidate.weak_, result.candidate.strong_
    return {
        "sizewise_version": __version__,
        "training_data": {
            "name": table.name,
            "digest": data_digest(table.texts, table.column(weak), table.column(strong)),
            "n_judged": result.n_outcomes,
        },
        "parent": parent,
        "shrink": result.candidate.shrink,
        "guard": result.comparison.to_dict(),
        "calibration": result.calibration,
    }
