"""Static token embeddings distilled from all-MiniLM-L6-v2 (the Model2Vec recipe): ~0.3 ms per prompt.

Every WordPiece token of MiniLM's vocabulary is passed through MiniLM once, alone
(``[CLS] tok [SEP]``, mean pooled and normalised, as the model embeds a sentence). The 30,522 vectors
are centred and reduced with PCA, and each token's row is scaled by a SIF weight ``a / (a + p)`` with
``p`` its Zipf probability by vocabulary rank (BERT's vocabulary is roughly frequency-ordered), so
frequent tokens count less. A prompt's embedding is the mean of its tokens' rows, L2-normalised:
no transformer runs at query time, so word order and context are lost; that is the trade-off.

The table is built from the installed MiniLM weights (deterministic, no network, about 20 s on one core)
and cached as ``<cache_dir>/embeddings/<STATIC_ID>-<weights digest>.npz`` (float16).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.paths import cache_dir

VERSION = 1
PCA_DIM = 256
# Milder than Model2Vec's 1e-4, which cost 0.005 APGR on RouteLLM MMLU; no weighting scored the same as 1e-3.
SIF_A = 1e-3
STATIC_ID = f"static-minilm-v{VERSION}-pca{PCA_DIM}-sif{SIF_A:g}"
DIM = PCA_DIM
MAX_STATIC_TOKENS = 4096  # bounds one decision's cost; far beyond MiniLM's 256-token window
_BUILD_BATCH = 512  # tokens per forward pass while building (3 positions each)

__all__ = ["DIM", "STATIC_ID", "StaticTable", "build_table", "embed_static", "get_table", "table_id", "token_vectors"]


@dataclass(frozen=True)
class StaticTable:
    """The distilled table: ``vectors[id]`` is token ``id``'s (weighted, reduced) row, float32 in memory."""

    vectors: np.ndarray  # (vocab, DIM): (raw - mean) @ components.T * weights[:, None]
    mean: np.ndarray  # (384,) PCA centre
    components: np.ndarray  # (DIM, 384) PCA directions
    weights: np.ndarray  # (vocab,) SIF weights

    def project(self, raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Rows for raw MiniLM token vectors ``raw`` of tokens ``ids`` (what ``build_table`` stores)."""
        return ((raw - self.mean) @ self.components.T * self.weights[ids, None]).astype(np.float32)


def token_vectors(ids: Sequence[int] | np.ndarray, model: Any = None) -> np.ndarray:
    """MiniLM's sentence embedding of each token alone, ``[CLS] tok [SEP]``: shape ``(len(ids), 384)``."""
    from sizewise.embedding.model import get_model

    model = model or get_model()
    ids = np.asarray(ids, dtype=np.int64)
    cls_id, sep_id = (model.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    out = np.zeros((len(ids), model.word.shape[1]), dtype=np.float32)
    for start in range(0, len(ids), _BUILD_BATCH):
        chunk = ids[start : start + _BUILD_BATCH]
        batch = np.stack([np.full(len(chunk), cls_id), chunk, np.full(len(chunk), sep_id)], axis=1)
        out[start : start + len(chunk)] = model.forward(batch, np.ones(batch.shape, dtype=np.float32))
    return out


def _pca(raw: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre and the top ``dim`` principal directions, each signed so its largest entry is positive
    (eigenvectors' signs are arbitrary; fixing them makes the table reproducible)."""
    mean = raw.mean(axis=0, dtype=np.float64)
    centred = raw.astype(np.float64) - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, np.argsort(values)[::-1][:dim]].T
    signs = np.sign(top[np.arange(dim), np.abs(top).argmax(axis=1)])
    return mean.astype(np.float32), (top * signs[:, None]).astype(np.float32)


def sif_weights(vocab_size: int, a: float = SIF_A) -> np.ndarray:
    """``a / (a + p)`` with ``p`` the Zipf probability of each vocabulary rank (id)."""
    inv_rank = 1.0 / np.arange(2, vocab_size + 2)
    return (a / (a + inv_rank / inv_rank.sum())).astype(np.float32)


def build_table(model: Any = None) -> StaticTable:
    """Distil the table from MiniLM (about 20 s on one core; deterministic)."""
    from sizewise.embedding.model import get_model

    model = model or get_model()
    ids = np.arange(model.word.shape[0])
    raw = token_vectors(ids, model)
    mean, components = _pca(raw, PCA_DIM)
    weights = sif_weights(len(ids))
    table = StaticTable(np.zeros(0), mean, components, weights)
    # Stored as float16 on disk; round here too so a fresh build and a reloaded one are identical.
    vectors = table.project(raw, ids).astype(np.float16).astype(np.float32)
    return StaticTable(vectors, mean, components, weights)


def source_digest(label: str) -> str:
    """16 hex digits of sha256 over ``label`` and the installed MiniLM files (size and head of each)."""
    from sizewise.embedding.model import model_dir

    folder = model_dir()
    digest = hashlib.sha256(label.encode())
    for name in ("tokenizer.json", "model.safetensors"):
        path = folder / name
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as handle:  # the head holds the safetensors header: enough to tell versions apart
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def table_id() -> str:
    """The installed table's id: its settings (``STATIC_ID``) and a digest of the MiniLM files it is built
    from. A router file records it, so one trained on another table is refused instead of fed garbage."""
    return f"{STATIC_ID}-{source_digest(STATIC_ID)}"


def table_path() -> Path:
    """Where the table is cached; the name is the table's id."""
    return cache_dir() / "embeddings" / f"{table_id()}.npz"


def _save(table: StaticTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:  # written aside and renamed, so concurrent readers never see half a file
        np.savez(
            handle,
            vectors=table.vectors.astype(np.float16),
            mean=table.mean,
            components=table.components,
            weights=table.weights,
        )
    tmp.replace(path)


def _load(path: Path) -> StaticTable | None:
    try:
        with np.load(path) as data:
            table = StaticTable(data["vectors"].astype(np.float32), data["mean"], data["components"], data["weights"])
    except (OSError, KeyError, ValueError):
        return None  # missing or damaged: rebuild
    if table.vectors.ndim != 2 or table.vectors.shape[1] != DIM or len(table.weights) != len(table.vectors):
        return None
    return table


_TABLE: StaticTable | None = None
_TOKENIZER: Any = None
_LOCK = threading.Lock()


def get_table() -> StaticTable:
    """The process-wide table: loaded from the cache (~50 ms), else built once and cached."""
    global _TABLE
    if _TABLE is None:
        with _LOCK:
            if _TABLE is None:
                path = table_path()
                table = _load(path)
                if table is None:
                    table = build_table()
                    _save(table, path)
                _TABLE = table
    return _TABLE


def _tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer, without special tokens and with a wide truncation window."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from tokenizers import Tokenizer

        from sizewise.embedding.model import model_dir

        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_STATIC_TOKENS)
        tokenizer.no_padding()
        _TOKENIZER = tokenizer
    return _TOKENIZER


def embed_static(texts: Sequence[str]) -> np.ndarray:
    """Unit-length static embeddings, shape ``(len(texts), DIM)``, float32 (a text with no tokens gives zeros)."""
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    if not texts:
        return out
    vectors = get_table().vectors
    for i, encoding in enumerate(_tokenizer().encode_batch(texts, add_special_tokens=False)):
        if encoding.ids:
            # Per text, so the gathered rows stay in cache (one big gather + reduceat was 10x slower).
            # The sum, not the mean: the 1/n vanishes in the normalisation.
            out[i] = vectors[np.asarray(encoding.ids)].sum(axis=0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)
