"""Reference routers: ``random``, ``always-small``, ``always-large`` and the ``oracle``.

They bound what a learned router can do: random is the line from always-weak to always-strong
(APGR 0.5), the oracle is the physical limit (it reads the outcomes it is scored on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from sizewise.errors import DataError
from sizewise.routers._learned import array, check_prompts, pair_outcomes
from sizewise.routers.base import Router, register

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


class _Baseline(Router):
    """Fit only checks the table and remembers the pair."""

    #: Share of strong calls when the router ignores thresholds (always-small/large); None for curves.
    fixed_share: ClassVar[float | None] = None

    def __init__(self) -> None:
        """No parameters."""

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        """Check the table (non-empty, known qualities) and remember the (weak, strong) pair."""
        self.weak_, self.strong_, _, _, _ = pair_outcomes(table, weak, strong)
        self.fitted_ = True
        return self

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"weak": self.weak_, "strong": self.strong_}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.weak_, self.strong_ = str(meta["weak"]), str(meta["strong"])


@register
class RandomRouter(_Baseline):
    """Sends each prompt to the strong model with probability ``1 − threshold``.

    ``score`` is a uniform number in [0, 1) derived from a hash of the prompt and ``seed`` (the same prompt
    always gets the same score). In evaluation ``score_table`` returns a constant instead, so the curve is
    the random router's expected value, not one noisy sample.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """A reproducible uniform score per prompt."""
        self.check_fitted()
        out = np.empty(len(items := check_prompts(prompts)))
        for i, text in enumerate(items):
            digest = hashlib.blake2b(f"{self.seed}\0{text}".encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "big") / 2**64
        return out

    def score_table(self, table: OutcomeTable) -> np.ndarray:
        """All prompts tied: the exact expected curve of random routing."""
        self.check_fitted()
        return np.zeros(len(table))


@register
class AlwaysSmallRouter(_Baseline):
    """Every prompt to the weak model (score −inf, below any threshold)."""

    name = "always-small"
    fixed_share = 0.0

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """−inf for every prompt."""
        self.check_fitted()
        return np.full(len(check_prompts(prompts)), -np.inf)


@register
class AlwaysLargeRouter(_Baseline):
    """Every prompt to the strong model (score +inf, above any threshold)."""

    name = "always-large"
    fixed_share = 1.0

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """+inf for every prompt."""
        self.check_fitted()
        return np.full(len(check_prompts(prompts)), np.inf)


@register
class OracleRouter(_Baseline):
    """The physical limit: scores each prompt by the strong model's true gain ``q_strong − q_weak``.

    ``score_table`` reads the outcomes of the table it is asked about. ``score`` on bare prompts can only
    answer for prompts seen in ``fit`` (it remembers their gains) and raises a :class:`DataError` otherwise.
    """

    name = "oracle"

    def fit(self, table: OutcomeTable, weak: str | None = None, strong: str | None = None) -> Self:
        """Remember the gain of every prompt of the table."""
        self.weak_, self.strong_, texts, q_weak, q_strong = pair_outcomes(table, weak, strong)
        self.texts_ = list(texts)
        self.gains_ = q_strong - q_weak
        self.fitted_ = True
        return self

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """The remembered gain of each prompt (mean gain for a text seen several times)."""
        self.check_fitted()
        lookup: dict[str, list[float]] = {}
        for text, value in zip(self.texts_, self.gains_, strict=True):
            lookup.setdefault(text, []).append(float(value))
        out = []
        for text in check_prompts(prompts):
            if text not in lookup:
                raise DataError("the oracle only knows the outcomes of the prompts it was fitted on")
            out.append(float(np.mean(lookup[text])))
        return np.asarray(out)

    def score_table(self, table: OutcomeTable) -> np.ndarray:
        """The true gain of the strong model on each prompt of ``table``."""
        self.check_fitted()
        gain = table.column(self.strong_) - table.column(self.weak_)
        if np.isnan(gain).any():
            raise DataError(f"table {table.name!r}: unknown quality for {self.weak_} or {self.strong_}")
        return gain

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, _ = super()._state()
        return {**meta, "texts": self.texts_}, {"gains": self.gains_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(meta, arrays)
        self.texts_ = [str(t) for t in meta["texts"]]
        self.gains_ = array(arrays, "gains", (len(self.texts_),)).astype(float)
