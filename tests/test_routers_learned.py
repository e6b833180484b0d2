"""What is specific to the learned routers (the shared conformance suite covers fit/save/load/bad input)."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import apgr, planted_pair, prompts, table_from
from sizewise.embedding import embed
from sizewise.errors import ConfigError, DataError, RouterFileError
from sizewise.evaluation.table import OutcomeTable
from sizewise.routers.embed_models import EmbedLogRegRouter, EmbedMLPRouter
from sizewise.routers.features import FEATURE_NAMES, text_features
from sizewise.routers.gbdt import GBDTRouter
from sizewise.routers.knn import KNNRouter, SWRankingRouter
from sizewise.routers.mf import MFRouter

# Fits real routers on real embeddings of a few hundred prompts: some seconds per module.
pytestmark = pytest.mark.slow

FACTORIES = {
    "sw-ranking": SWRankingRouter,
    "knn": lambda: KNNRouter(k=20),
    "embed-logreg": EmbedLogRegRouter,
    "embed-mlp": EmbedMLPRouter,
    "mf": lambda: MFRouter(steps=200),
    "gbdt": lambda: GBDTRouter(n_estimators=100),
}


pytestmark = pytest.mark.usefixtures("private_embedding_cache")


@pytest.fixture(scope="module")
def planted():
    table = planted_pair(600, seed=0)
    return table.subset(np.arange(400)), table.subset(np.arange(400, 600))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_planted_signal_beats_random(name, planted):
    train, test = planted
    router = FACTORIES[name]().fit(train)
    # On this split random is 0.5, the per-prompt oracle 0.85 and a router that knows each prompt's
    # topic (the most any prompt-only router can know) 0.73.
    assert apgr(router.score(test.texts), test) > 0.64


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_shuffled_labels_are_near_random(name):
    table = planted_pair(600, seed=3, shuffle=True)
    train, test = table.subset(np.arange(400)), table.subset(np.arange(400, 600))
    router = FACTORIES[name]().fit(train)
    assert abs(apgr(router.score(test.texts), test) - 0.5) < 0.12


def test_multi_turn_conversation_is_seen_whole(planted):
    train, _ = planted
    router = EmbedLogRegRouter().fit(train)
    chat = "user: Say hello to my friend number 7 in a cheerful way."
    follow_up = chat + "\nassistant: Hello!\nuser: Now prove that the sum of the first 9 odd numbers equals 81."
    low, high = router.score([chat, follow_up])
    assert high > low + 0.2


def test_text_features_see_length_digits_code_and_turns():
    rows = text_features(
        ["hi", "```python\ndef f(x):\n    return 42\n```", "user: a\nassistant: b\nuser: c", "日本語のテキスト"]
    )
    f = dict(zip(FEATURE_NAMES, rows.T, strict=True))
    assert f["log_chars"][1] > f["log_chars"][0]
    assert f["code_markers"][1] >= 2 and f["code_markers"][0] == 0
    assert f["digit_share"][1] > 0 and f["digit_share"][0] == 0
    assert f["turns"][2] == 3 and f["turns"][0] == 1
    assert f["non_ascii_share"][3] == 1.0


def test_text_features_count_the_reasoning_load_of_a_word_problem():
    rows = text_features(
        [
            "What is the capital of France?",
            "Ann has 12 apples and twice as many pears. She sells half of them at $1.50 each. "
            "Then she buys three dozen more. How many fruits does she have?",
        ]
    )
    f = dict(zip(FEATURE_NAMES, rows.T, strict=True))
    assert f["number_count_log"][0] == 0 and f["number_count_log"][1] == np.float32(np.log1p(2))
    assert f["sentences_log"][1] > f["sentences_log"][0]
    assert f["ratio_words"][1] == 3 and f["ratio_words"][0] == 0  # twice, half, each
    assert f["number_words"][1] == 2  # three, dozen
    assert f["decimals"][1] == 1


def test_gbdt_file_with_damaged_model_string_is_refused(planted, tmp_path):
    import io
    import json
    import zipfile

    path = GBDTRouter(n_estimators=20).fit(planted[0]).save(tmp_path / "gbdt.zip")
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("meta.json"))
        arrays = archive.read("arrays.npz")
    header["meta"]["state"]["booster"] = "tree\nmax_feature_idx=395\nTree=0\nnum_leaves=3\n"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("meta.json", json.dumps(header))
        archive.writestr("arrays.npz", io.BytesIO(arrays).getvalue())
    with pytest.raises(RouterFileError):
        GBDTRouter.load(bad)


def test_knn_file_with_wrong_shapes_is_refused(planted, tmp_path):
    from sizewise.routers.persist import load_bundle, save_bundle

    path = KNNRouter(k=5).fit(planted[0]).save(tmp_path / "knn.zip")
    name, meta, arrays = load_bundle(path, "router")
    arrays["quality"] = arrays["quality"][:, :1]
    save_bundle(tmp_path / "bad.zip", "router", name, meta, arrays)
    with pytest.raises(RouterFileError):
        KNNRouter.load(tmp_path / "bad.zip")


def test_numpy_forest_matches_lightgbm(planted):
    import lightgbm as lgb

    from sizewise.routers._forest import Forest

    router = GBDTRouter(n_estimators=60).fit(planted[0])
    x = np.hstack([embed(planted[1].texts), text_features(planted[1].texts)])
    x[:5, -1] = 0.0  # exact zeros take LightGBM's missing-value path when a split has one
    want = lgb.Booster(model_str=router.model_string_).predict(x)
    assert np.allclose(Forest(router.model_string_).predict(x), want, atol=1e-9)
    assert np.allclose(Forest(router.model_string_).predict(x[:3]), want[:3], atol=1e-9)


def test_tfidf_on_prompts_without_words_raises_a_data_error():
    from sizewise.routers.tfidf import TfidfLogRegRouter

    table = planted_pair(20, seed=1)
    table.prompts["text"] = ["? !"] * len(table)
    with pytest.raises(DataError, match="no usable words"):
        TfidfLogRegRouter().fit(table)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_embed_mlp_fits_a_model_with_no_known_outcome_without_a_warning():
    # The model with no outcome used to raise numpy's "Mean of empty slice"; its cells still count as 0.5.
    train = planted_pair(60, seed=1)
    quality = np.c_[train.quality, np.full(len(train), np.nan)]
    table = OutcomeTable("t", train.prompts, [*train.models, "new"], quality, pair=train.pair)
    router = EmbedMLPRouter().fit(table)
    assert router.predict_quality(train.texts[:3]).shape == (3, 3)


def test_gbdt_difficulty_target_ranks_a_pair_it_never_saw(tmp_path):
    """Fitted on one pool of models, ``target="difficulty"`` ranks another pair's prompts by need."""
    rng = np.random.default_rng(3)
    texts, topics = prompts(800, 3)
    hard = np.where(topics == 2, 0.1, 0.8)  # chat is easy for everyone, math and code are hard
    pool = (rng.random((800, 3)) > hard[:, None] * np.array([1.0, 0.8, 0.6])).astype(float)
    train = table_from(texts[:500], pool[:500], ["a", "b", "c"])
    weak, strong = rng.random(300) > hard[500:], rng.random(300) < 0.9  # a new pair
    test = table_from(texts[500:], np.c_[weak, strong].astype(float), ["new-weak", "new-strong"])
    router = GBDTRouter(target="difficulty", n_estimators=100).fit(train)
    assert apgr(router.score(test.texts), test) > 0.6
    loaded = GBDTRouter.load(router.save(tmp_path / "r.zip"))
    assert loaded.target == "difficulty"
    np.testing.assert_allclose(loaded.score(test.texts[:20]), router.score(test.texts[:20]))
    with pytest.raises(ConfigError, match="target must be one of gain, difficulty"):
        GBDTRouter(target="hardness").fit(train)
