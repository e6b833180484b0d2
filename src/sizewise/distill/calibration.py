"""From a student's raw top-class probability to a confidence that transfers, and a threshold on it.

* :class:`ConfidenceMap`: isotonic regression of "the student agreed with the teacher" on the raw top
  probability, fitted on out-of-fold predictions (never on the data a model was fitted on, where it is
  over-confident), stored as its breakpoints and applied with ``np.interp``.
* :func:`choose_threshold`: the lowest confidence threshold whose answered set keeps ``target`` agreement
  with a finite-sample margin (conformal risk control, Angelopoulos et al. 2022: the disagreement rate
  among the answered counts one extra disagreement, ``(errors + 1) / (answered + 1) <= 1 - target``),
  so a threshold chosen on a few hundred answers does not fall short on the next ones by chance alone. Picking
  the largest answered set that passes favours thresholds whose errors fell low by chance, so a ``margin``
  (in standard deviations of the disagreement count at the target rate) can be added on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidenceMap:
    """Monotone map raw probability -> P(agree); identity until fitted."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def identity(cls) -> ConfidenceMap:
        return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]))

    @classmethod
    def fit(cls, raw: np.ndarray, agree: np.ndarray) -> ConfidenceMap:
        """Isotonic fit of ``agree`` (0/1) on ``raw``; identity when one class of outcome is missing."""
        raw, agree = np.asarray(raw, dtype=float), np.asarray(agree, dtype=float)
        if raw.size < 2 or agree.min() == agree.max():
            return cls.identity()
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(raw, agree)
        x, y = np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)
        # Break ties among equal plateaus by the raw value, so the threshold can still cut inside a plateau
        # (an isotonic plateau holding most answers would otherwise leave only all-or-nothing).
        y = y + 1e-6 * (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
        return cls(x, np.clip(y, 0.0, 1.0))

    def __call__(self, raw: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=float), self.x, self.y)


def choose_threshold(confidence: np.ndarray, agree: np.ndarray, target: float, margin: float = 0.0) -> float:
    """The lowest threshold on ``confidence`` whose answered set (confidence >= threshold) meets ``target``
    agreement with one extra disagreement counted, plus ``margin`` standard deviations of the number of
    disagreements at the target rate; ``inf`` (never answer) when none does."""
    confidence, agree = np.asarray(confidence, dtype=float), np.asarray(agree, dtype=float)
    if confidence.size == 0:
        return float("inf")
    order = np.argsort(-confidence, kind="stable")
    conf, errors = confidence[order], np.cumsum(1.0 - agree[order])
    answered = np.arange(1, conf.size + 1)
    # A cut is only possible after the last of equal confidences: all of them are answered or none.
    last_of_tie = np.r_[conf[1:] < conf[:-1], True]
    spread = margin * np.sqrt(answered * target * (1.0 - target))
    ok = (errors + 1.0 + spread <= (1.0 - target) * (answered + 1.0)) & last_of_tie
    if not ok.any():
        return float("inf")
    return float(conf[np.flatnonzero(ok)[-1]])


def coverage_agreement(confidence: np.ndarray, agree: np.ndarray, threshold: float) -> tuple[float, float]:
    """(share answered, agreement among the answered; NaN when none) at ``threshold``."""
    confidence, agree = np.asarray(confidence, dtype=float), np.asarray(agree, dtype=float)
    answered = confidence >= threshold
    coverage = float(answered.mean()) if confidence.size else 0.0
    return coverage, float(agree[answered].mean()) if answered.any() else float("nan")
