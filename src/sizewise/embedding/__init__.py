"""Local prompt embeddings: all-MiniLM-L6-v2 (384-d, unit length), batched and cached on disk.

``embed(texts)`` is all most callers need. The model loads on first use; vectors are kept in
an on-disk SQLite cache keyed by the text's sha256 and in a small in-process memo, so a
14,000-prompt table is embedded once and a repeated prompt costs microseconds.
No network, no API key, no torch. A client's texts skip both caches (:data:`CLIENT_TEXTS`).

``embed_static(texts)`` (:mod:`sizewise.embedding.static`) is the fast alternative: a token table
distilled from the same model, a prompt is the mean of its tokens' rows (256-d, ~0.3 ms per prompt).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from sizewise.embedding.cache import EmbeddingCache, text_key
from sizewise.embedding.model import DIM, MAX_TOKENS, MODEL_ID, get_model
from sizewise.embedding.static import embed_static
from sizewise.progress import Progress

__all__ = ["DIM", "MAX_TOKENS", "MODEL_ID", "clear_memo", "embed", "embed_id", "embed_static", "get_cache"]

_MEMO: OrderedDict[bytes, np.ndarray] = OrderedDict()
_MEMO_SIZE = 50_000
_CACHE: EmbeddingCache | None = None
_WRITE_EVERY = 512  # texts encoded between cache writes, so an interrupted job keeps its progress
#: True while the gateway handles a request (:mod:`sizewise.gateway.client_texts`): the texts are a client's, and
#: the caches are shared by every client (the disk one by every process, for good). A cached text answers about
#: twice as fast, so a hit would tell one client that someone else had sent that text; and each new text would
#: grow the disk cache for good. Set per request, so it follows the request into its threads and nothing else.
CLIENT_TEXTS: ContextVar[bool] = ContextVar("sizewise_client_texts", default=False)


def embed_id(name: object) -> str:
    """The installed id of embedder ``name`` (``"minilm"`` or ``"static"``): its settings and a digest of
    the MiniLM files. A router file records it, since a router is only valid with the embedding it was
    trained on. A ``ValueError`` for an unknown name."""
    from sizewise.embedding.static import source_digest, table_id

    if name == "static":
        return table_id()
    if name == "minilm":
        return f"{MODEL_ID}-{source_digest(MODEL_ID)}"
    raise ValueError(f"unknown embedding {name!r}")


def get_cache() -> EmbeddingCache | None:
    """The process-wide disk cache (None when ``SIZEWISE_EMBED_CACHE=0``)."""
    global _CACHE
    if os.environ.get("SIZEWISE_EMBED_CACHE", "1") == "0":
        return None
    if _CACHE is None:
        _CACHE = EmbeddingCache()
    return _CACHE


def clear_memo() -> None:
    """Forget the in-process memo (the disk cache stays); used by benchmarks to time cold paths."""
    _MEMO.clear()


def embed(
    texts: Sequence[str],
    batch_size: int = 32,
    *,
    cache: bool = True,
    progress: bool | None = None,
) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings, shape ``(len(texts), 384)``, float32.

    Texts longer than 256 tokens are truncated (as sentence-transformers does). ``cache=False``
    skips both caches, as does :data:`CLIENT_TEXTS`. ``progress=False`` hides the progress of encoding new
    texts (:mod:`sizewise.progress`: a bar on a terminal once it takes 2 s, else one final line).
    """
    texts = [str(t) for t in texts]
    cache = cache and not CLIENT_TEXTS.get()
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    if not texts:
        return out
    keys = [text_key(MODEL_ID, t) for t in texts] if cache else []
    missing: list[int] = []
    if cache:
        disk = get_cache()
        need_disk = []
        for i, key in enumerate(keys):
            hit = _MEMO.get(key)
            if hit is None:
                need_disk.append(i)
            else:
                out[i] = hit
        found = disk.get_many([keys[i] for i in need_disk]) if disk is not None and need_disk else {}
        for i in need_disk:
            vector = found.get(keys[i])
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
                _remember(keys[i], vector)
    else:
        missing = list(range(len(texts)))
    if missing:
        _encode_missing(texts, keys, missing, out, batch_size, cache, progress)
    return out


def _encode_missing(
    texts: list[str],
    keys: list[bytes],
    missing: list[int],
    out: np.ndarray,
    batch_size: int,
    cache: bool,
    progress: bool | None,
) -> None:
    model = get_model()
    unique: dict[str, list[int]] = {}
    for i in missing:
        unique.setdefault(texts[i], []).append(i)
    todo = list(unique)
    bar = Progress(len(todo), "embedding", "texts", enabled=progress is not False)
    # Sort by length once so each write-chunk is itself of similar lengths (little padding).
    todo.sort(key=len)
    disk = get_cache() if cache else None
    with bar:
        _encode_chunks(todo, unique, keys, out, model, batch_size, cache, disk, bar)


def _encode_chunks(
    todo: list[str],
    unique: dict[str, list[int]],
    keys: list[bytes],
    out: np.ndarray,
    model: Any,
    batch_size: int,
    cache: bool,
    disk: Any,
    bar: Progress,
) -> None:
    for start in range(0, len(todo), _WRITE_EVERY):
        chunk = todo[start : start + _WRITE_EVERY]
        vectors = model.encode(chunk, batch_size=batch_size, progress=bar.update)
        items = []
        for text, vector in zip(chunk, vectors, strict=True):
            for i in unique[text]:
                out[i] = vector
            if cache:
                key = keys[unique[text][0]]
                items.append((key, vector))
                _remember(key, vector)
        if disk is not None and items:
            disk.put_many(items)


def _remember(key: bytes, vector: np.ndarray) -> None:
    _MEMO[key] = vector
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
