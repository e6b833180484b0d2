"""Shared plumbing of the learned routers: input checks, embeddings, targets from a table.

Every learned router predicts, per prompt, the expected gain of the strong model over the weak
one, E[q_strong - q_weak | prompt]. Sending the top-k% of prompts by that score to the strong
model maximises the quality at every strong-call share, so it is the right score for APGR/CPT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.checks import check_number  # the routers import it from here too
from sizewise.errors import ConfigError, DataError
from sizewise.routers.persist import saved_array as array  # noqa: F401 (the routers import it from here)

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable  # pandas: never imported on the request path


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list of strings; a :class:`DataError` for a bare string or a non-string item."""
    if isinstance(prompts, str | bytes):
        raise DataError("prompts must be a list of strings, not a single string")
    try:
        items = list(prompts)
    except TypeError:
        raise DataError(f"prompts must be a list of strings, got {type(prompts).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise DataError(f"prompts must be strings, got {type(item).__name__}")
    return items


def check_seed(owner: str, value: object) -> None:
    """A :class:`ConfigError` unless ``value`` is None or an integer >= 0."""
    if value is not None:
        check_number(owner, "seed", value, 0, integer=True)


#: Prompt embedders a learned router can use (its ``embedding`` parameter): MiniLM itself (best
#: quality, ~50 ms per new 200-token prompt, cached by prompt) or the static table distilled from it
#: (:mod:`sizewise.embedding.static`, microseconds per prompt).
EMBEDDINGS = ("minilm", "static")


def check_embedding(name: object) -> str:
    """``name`` if it is a known embedder, else a :class:`ConfigError`."""
    if name not in EMBEDDINGS:
        raise ConfigError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {name!r}")
    return str(name)


def embedding_dim(name: object) -> int:
    """Width of the vectors of embedder ``name`` (a ``ValueError`` for an unknown one, as loading expects)."""
    if name == "minilm":
        from sizewise.embedding.model import DIM

        return DIM
    if name == "static":
        from sizewise.embedding.static import DIM

        return DIM
    raise ValueError(f"unknown embedding {name!r}")


def embed_prompts(prompts: Sequence[str], embedding: str = "minilm") -> np.ndarray:
    """Embeddings of checked prompts by ``embedding`` (an empty list gives shape (0, dim))."""
    texts = check_prompts(prompts)
    if check_embedding(embedding) == "static":
        from sizewise.embedding.static import embed_static

        return embed_static(texts)
    from sizewise.embedding import embed

    return embed(texts)


def pair_outcomes(
    table: OutcomeTable, weak: str | None, strong: str | None
) -> tuple[str, str, list[str], np.ndarray, np.ndarray]:
    """``(weak, strong, texts, q_weak, q_strong)`` over prompts where both qualities are known."""
    from sizewise.core.table import OutcomeTable  # fitting only: scoring never imports pandas

    if not isinstance(table, OutcomeTable):
        raise DataError(f"fit needs an OutcomeTable, got {type(table).__name__}")
    table.require_nonempty()
    weak, strong = table.weak_strong(weak, strong)
    q_weak, q_strong = table.column(weak), table.column(strong)
    known = ~(np.isnan(q_weak) | np.isnan(q_strong))
    if known.sum() < 2:
        raise DataError(f"table {table.name!r}: fewer than 2 prompts with known quality for {weak} and {strong}")
    texts = [t for t, k in zip(table.texts, known, strict=True) if k]
    return weak, strong, texts, q_weak[known], q_strong[known]


def pair_meta(router: Any) -> dict[str, Any]:
    """The JSON part every learned two-model router saves."""
    return {"weak": router.weak_, "strong": router.strong_}


def set_pair_meta(router: Any, meta: dict[str, Any]) -> None:
    """Restore :func:`pair_meta`."""
    router.weak_, router.strong_ = str(meta["weak"]), str(meta["strong"])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))
