"""The static token embedding distilled from MiniLM, and learned routers that use it."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import apgr, planted_pair
from sizewise.embedding import static
from sizewise.embedding.model import get_model
from sizewise.errors import ConfigError, RouterFileError
from sizewise.routers.base import load_router, make_router
from sizewise.routers.persist import load_bundle, save_bundle

LEARNED = ["sw-ranking", "knn", "embed-logreg", "embed-mlp", "mf", "gbdt"]
LIGHT = {"mf": {"steps": 200}}


@pytest.fixture(scope="session")
def table() -> static.StaticTable:
    """Built once per machine (about 20 s, then cached under the cache dir); loaded once per session."""
    return static.get_table()


def test_table_shape_and_rows(table):
    vocab = get_model().word.shape[0]
    assert table.vectors.shape == (vocab, static.DIM)
    assert table.components.shape == (static.DIM, 384)
    assert np.isfinite(table.vectors).all()
    # Frequent tokens weigh less than rare ones (SIF on the Zipf rank).
    assert table.weights[2000] < table.weights[20000] <= 1.0


def test_token_rows_are_minilm_sentence_embeddings_of_the_token():
    """A vocabulary token's raw vector is exactly what MiniLM gives the one-word sentence."""
    model = get_model()
    words = ["paris", "banana", "integral", "music"]
    ids = [model.tokenizer.token_to_id(w) for w in words]
    assert all(len(i) == 3 for i in model.token_ids(words))  # [CLS] word [SEP]: each is one token
    raw = static.token_vectors(ids)
    np.testing.assert_allclose(raw, model.encode(words), atol=1e-5)


def test_table_is_deterministic_and_matches_a_rebuild_of_its_rows(table):
    ids = np.random.default_rng(0).choice(len(table.vectors), 300, replace=False)
    first, second = static.token_vectors(ids), static.token_vectors(ids)
    np.testing.assert_array_equal(first, second)
    rebuilt = table.project(first, ids).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(rebuilt, table.vectors[ids], atol=2e-3)
    # PCA signs are fixed, so the directions do not depend on row order.
    sample = np.random.default_rng(1).normal(size=(500, 384)).astype(np.float32)
    mean_a, comp_a = static._pca(sample, 16)
    mean_b, comp_b = static._pca(sample[::-1].copy(), 16)
    np.testing.assert_allclose(comp_a, comp_b, atol=1e-5)
    np.testing.assert_allclose(mean_a, mean_b, atol=1e-6)


def test_cached_file_reloads_identically(table):
    loaded = static._load(static.table_path())
    assert loaded is not None
    np.testing.assert_array_equal(loaded.vectors, table.vectors)


def test_embeddings_are_unit_length_and_empty_text_is_zero(table):
    vectors = static.embed_static(["What is 2+2?", "Écris un poème sur les routeurs. 🚀", ""])
    assert vectors.shape == (3, static.DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert not vectors[2].any()
    assert static.embed_static([]).shape == (0, static.DIM)


def test_paraphrases_are_closer_than_unrelated_texts(table):
    pairs = [
        ("How do I reverse a list in Python?", "What is the way to reverse a Python list?"),
        ("What is the capital city of France?", "Which city is the capital of France?"),
        ("Tell me a funny joke about cats.", "Say something funny about a cat, a joke."),
        ("Solve the equation 3x + 5 = 20 for x.", "Find x such that 3x + 5 equals 20."),
        ("Recommend a good book about World War II history.", "Which Second World War history book do you suggest?"),
    ]
    a = static.embed_static([p[0] for p in pairs])
    b = static.embed_static([p[1] for p in pairs])
    sims = a @ b.T
    for i in range(len(pairs)):
        others = np.delete(sims[i], i)
        assert sims[i, i] > others.max(), (pairs[i], sims[i])


@pytest.fixture(scope="module")
def split():
    data = planted_pair(600, seed=3)
    return data.subset(np.arange(400)), data.subset(np.arange(400, 600))


@pytest.mark.parametrize("name", LEARNED)
def test_static_router_beats_random_and_round_trips(name, split, table, tmp_path):
    train, test = split
    router = make_router(name, embedding="static", **LIGHT.get(name, {}))
    assert router.get_params()["embedding"] == "static"
    scores = router.fit(train).score_table(test)
    assert apgr(scores, test) > 0.6  # random is 0.5; the planted signal allows ~0.8
    path = router.save(tmp_path / f"{name}.zip")
    loaded = load_router(path)
    assert loaded.get_params() == router.get_params()
    np.testing.assert_array_equal(loaded.score_table(test), scores)


def test_unknown_embedding_is_refused_in_fit_not_init(split):
    router = make_router("knn", embedding="word2vec")  # the constructor only stores it
    with pytest.raises(ConfigError, match="embedding"):
        router.fit(split[0])


def test_file_whose_embedding_does_not_match_its_arrays_is_refused(split, table, tmp_path):
    path = make_router("knn", embedding="static").fit(split[0]).save(tmp_path / "knn.zip")
    name, meta, arrays = load_bundle(path, "router")
    for params in ({"k": 100}, {"k": 100, "embedding": "bogus"}):  # no key means MiniLM: 384-d, not static's
        save_bundle(tmp_path / "bad.zip", "router", name, {**meta, "params": params}, arrays)
        with pytest.raises(RouterFileError):
            load_router(tmp_path / "bad.zip")
