"""One battery for every registered router, present and future: fit, signal, determinism, files, bad input."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest

from learned_helpers import planted_pair, rewrite_bundle
from sizewise.errors import ConfigError, DataError, NotFittedError, RouterFileError
from sizewise.evaluation.table import OutcomeTable
from sizewise.routers.base import Router, load_router, make_router, router_class, router_names

NAMES = router_names()
# Routers that ignore the prompt on purpose: no signal to find.
NO_SIGNAL = {"random", "always-small", "always-large"}
# Lighter settings for the slowest trainers, so the battery stays a few seconds per router.
LIGHT = {"mf": {"steps": 200}}


pytestmark = pytest.mark.usefixtures("private_embedding_cache")


@pytest.fixture(scope="module")
def split() -> tuple[OutcomeTable, OutcomeTable]:
    """A small planted table: math and code prompts need the strong model, chat does not."""
    table = planted_pair(240, seed=5)
    return table.subset(np.arange(160)), table.subset(np.arange(160, 240))


def make(name: str, seed: int = 0) -> Router:
    """A fresh router with its seed fixed where it takes one."""
    cls = router_class(name)
    router = cls()
    params: dict[str, Any] = {k: seed for k in ("seed", "random_state") if k in router.get_params()}
    params.update({k: v for k, v in LIGHT.get(name, {}).items() if k in router.get_params()})
    return cls(**params) if params else router


_FITTED: dict[str, Router] = {}


def fitted(name: str, train: OutcomeTable) -> Router:
    if name not in _FITTED:
        _FITTED[name] = make(name).fit(train)
    return _FITTED[name]


def need_strong(table: OutcomeTable) -> np.ndarray:
    return table.column("large") > table.column("small")


def test_registry_holds_the_baselines():
    assert {"random", "always-small", "always-large", "oracle", "tfidf-logreg"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_scores_each_prompt(name, split):
    train, test = split
    router = make(name)
    assert router.fit(train) is router
    _FITTED[name] = router
    scores = router.score_table(test)
    assert scores.shape == (len(test),)
    assert not np.isnan(scores).any()


@pytest.mark.parametrize("name", sorted(set(NAMES) - NO_SIGNAL))
def test_finds_the_planted_signal(name, split):
    from sklearn.metrics import roc_auc_score

    train, test = split
    scores = fitted(name, train).score_table(test)
    assert roc_auc_score(need_strong(test), scores) > 0.65


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name, split):
    train, test = split
    again = make(name).fit(train)
    np.testing.assert_allclose(again.score_table(test), fitted(name, train).score_table(test), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, split, tmp_path):
    train, test = split
    router = fitted(name, train)
    path = router.save(tmp_path / f"{name}.zip")
    for loaded in (load_router(path), router_class(name).load(path)):
        assert type(loaded) is type(router)
        np.testing.assert_array_equal(loaded.score_table(test), router.score_table(test))


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_and_foreign_files_are_refused(name, split, tmp_path):
    train, _ = split
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not a router")
    with pytest.raises(RouterFileError):
        router_class(name).load(corrupt)
    with pytest.raises(RouterFileError):
        load_router(corrupt)
    other = "always-small" if name != "always-small" else "random"
    foreign = fitted(other, train).save(tmp_path / "other.zip")
    with pytest.raises(RouterFileError, match=other):
        router_class(name).load(foreign)
    with pytest.raises(RouterFileError):
        router_class(name).load(tmp_path / "missing.zip")


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_use_raises(name, split, tmp_path):
    _, test = split
    with pytest.raises(NotFittedError):
        make(name).score(test.texts[:3])
    with pytest.raises(NotFittedError):
        make(name).save(tmp_path / "x.zip")


@pytest.mark.parametrize("name", NAMES)
def test_empty_table_raises(name):
    empty = OutcomeTable(
        name="empty",
        prompts=pd.DataFrame({"prompt_id": [], "text": []}),
        models=["small", "large"],
        quality=np.zeros((0, 2)),
        pair=("small", "large"),
    )
    with pytest.raises(DataError, match="empty"):
        make(name).fit(empty)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_quality(name, split):
    train, test = split
    quality = train.quality.copy()
    quality[:, 1] = np.nan
    unknown = OutcomeTable(name="unknown", prompts=train.prompts, models=train.models, quality=quality, pair=train.pair)
    with pytest.raises(DataError, match="known quality"):
        make(name).fit(unknown)
    # a few unknown cells are skipped, not learned from
    quality = train.quality.copy()
    quality[::7, 0] = np.nan
    partial = OutcomeTable(name="partial", prompts=train.prompts, models=train.models, quality=quality, pair=train.pair)
    scores = make(name).fit(partial).score_table(test)
    assert not np.isnan(scores).any()


def _numeric_params(name: str) -> list[str]:
    """Parameters that take a number (the random router hashes any seed, so it takes anything)."""
    params = make(name).get_params()
    return [p for p, v in params.items() if isinstance(v, int | float) and not isinstance(v, bool) and name != "random"]


@pytest.mark.parametrize("name", NAMES)
def test_invalid_parameters_raise_a_config_error(name, split):
    train, _ = split
    for param in _numeric_params(name):
        for bad in ("3", float("nan"), -1):
            if param == "seed" and bad == float("nan"):
                bad = 2.5
            if param in ("l2", "alpha", "min_child_samples") and bad == -1:
                bad = -0.5
            with pytest.raises(ConfigError, match=param):
                router_class(name)(**{**make(name).get_params(), param: bad}).fit(train)
    with pytest.raises(ConfigError, match="bogus"):
        make_router(name, bogus=1)


@pytest.mark.parametrize("name", NAMES)
def test_fit_on_something_else_than_a_table_raises(name):
    with pytest.raises(DataError, match="OutcomeTable"):
        make(name).fit([("prompt", 1.0)])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_a_model_with_no_outcome_at_all_gives_finite_scores(name, split):
    train, _ = split
    quality = np.c_[train.quality, np.full(len(train), np.nan)]
    models = [*train.models, "new"]
    table = OutcomeTable(name="t", prompts=train.prompts, models=models, quality=quality, pair=train.pair)
    assert not np.isnan(make(name).fit(table).score(train.texts[:5])).any()


@pytest.mark.parametrize("name", NAMES)
def test_save_to_an_unwritable_path_raises(name, split, tmp_path):
    with pytest.raises(RouterFileError, match="cannot write"):
        fitted(name, split[0]).save(tmp_path)  # a folder, not a file


@pytest.mark.parametrize("name", NAMES)
def test_tampered_files_are_refused(name, split, tmp_path):
    train, _ = split
    path = fitted(name, train).save(tmp_path / "router.zip")
    listed = rewrite_bundle(path, tmp_path / "list.zip", header=lambda h: {**h, "meta": [1, 2]})
    with pytest.raises(RouterFileError):
        router_class(name).load(listed)
    if params := _numeric_params(name):

        def bad_params(header: dict[str, Any]) -> dict[str, Any]:
            header["meta"]["params"][params[0]] = "x"
            return header

        with pytest.raises(RouterFileError, match=params[0]):
            router_class(name).load(rewrite_bundle(path, tmp_path / "params.zip", header=bad_params))
    all_nan = lambda a: {k: np.full(v.shape, np.nan) for k, v in a.items()}  # noqa: E731
    nan = rewrite_bundle(path, tmp_path / "nan.zip", arrays=all_nan)
    if np.load(io.BytesIO(zipfile.ZipFile(path).read("arrays.npz"))).files:
        with pytest.raises(RouterFileError, match="NaN"):
            router_class(name).load(nan)
