"""The numpy all-MiniLM-L6-v2 encoder and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sizewise.embedding import DIM, embed
from sizewise.embedding.cache import EmbeddingCache, text_key

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private cache so tests neither read nor fill the user's."""
    import sizewise.embedding as module

    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path))
    monkeypatch.setattr(module, "_CACHE", None)
    module.clear_memo()
    yield tmp_path
    module.clear_memo()
    monkeypatch.setattr(module, "_CACHE", None)


def test_matches_sentence_transformers_reference(cache_dir):
    # Reference vectors were computed once with sentence-transformers + torch (see the JSON's "source").
    got = embed(REFERENCE["texts"], cache=False)
    want = np.array(REFERENCE["vectors"], dtype=np.float32)
    assert got.shape == want.shape == (len(REFERENCE["texts"]), DIM)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_texts(cache_dir):
    a, b, c = embed(
        ["How do I reset my password?", "I forgot my password, how can I change it?", "The Nile is in Africa."]
    )
    assert a @ b > 0.6
    assert a @ b > a @ c + 0.3


def test_batching_and_order_do_not_change_vectors(cache_dir):
    texts = ["short", "a much longer sentence " * 20, "medium length text here", "short", ""]
    together = embed(texts, batch_size=2, cache=False)
    alone = np.vstack([embed([t], cache=False) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert np.array_equal(together[0], together[3])
    assert embed([]).shape == (0, DIM)


def test_disk_cache_is_filled_and_reused(cache_dir):
    import sizewise.embedding as module

    texts = ["cache me once", "and me too"]
    first = embed(texts)
    db = cache_dir / "embeddings" / "all-MiniLM-L6-v2.sqlite"
    assert db.is_file()
    assert len(EmbeddingCache(db)) == 2
    module.clear_memo()
    # Poison the stored vector: a cache hit must return what is stored, proving the model did not rerun.
    poisoned = np.full(DIM, 0.5, dtype=np.float32)
    EmbeddingCache(db).put_many([(text_key(module.MODEL_ID, texts[0]), poisoned)])
    again = embed(texts)
    assert np.array_equal(again[0], poisoned)
    assert np.array_equal(again[1], first[1])


def test_truncated_cache_row_is_recomputed(cache_dir):
    import sizewise.embedding as module

    db = cache_dir / "embeddings" / "all-MiniLM-L6-v2.sqlite"
    EmbeddingCache(db).put_many([(text_key(module.MODEL_ID, "broken row"), np.zeros(10, dtype=np.float32))])
    vector = embed(["broken row"])[0]
    assert vector.shape == (DIM,)
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
