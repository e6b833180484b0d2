"""What is specific to the ``ensemble`` router (the conformance suite covers the rest)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from learned_helpers import apgr, planted_pair
from sizewise.errors import ConfigError, RouterFileError
from sizewise.evaluation.table import OutcomeTable
from sizewise.routers.base import load_router
from sizewise.routers.ensemble import EnsembleRouter

pytestmark = pytest.mark.usefixtures("private_embedding_cache")


@pytest.fixture(scope="module")
def split() -> tuple[OutcomeTable, OutcomeTable]:
    data = planted_pair(600, seed=3)
    return data.subset(np.arange(400)), data.subset(np.arange(400, 600))


_FITTED: dict[str, EnsembleRouter] = {}


def fitted(combine: str, train: OutcomeTable) -> EnsembleRouter:
    if combine not in _FITTED:
        _FITTED[combine] = EnsembleRouter(combine=combine).fit(train)
    return _FITTED[combine]


@pytest.mark.parametrize("combine", ["rank-mean", "stack"])
def test_beats_its_weakest_member(combine, split):
    train, test = split
    router = fitted(combine, train)
    ours = apgr(router.score(test.texts), test)
    members = {m.name: apgr(m.score(test.texts), test) for m in router.members_}
    assert set(members) == {"gbdt", "embed-logreg", "knn", "tfidf-logreg"}
    assert ours > min(members.values()), (ours, members)
    assert ours > 0.6  # random routing is 0.5


def test_stack_weights_are_a_convex_combination(split):
    weights = fitted("stack", split[0]).weights_
    assert weights.shape == (4,)
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0)


def test_a_prompt_scores_the_same_alone_or_in_a_batch(split):
    _, test = split
    router = fitted("rank-mean", split[0])
    batch = router.score(test.texts[:20])
    alone = np.array([router.score([t])[0] for t in test.texts[:20]])
    # Not ranks within the batch (those would move by whole steps); MiniLM's float32 padding moves ~1e-7.
    np.testing.assert_allclose(alone, batch, atol=1e-5)
    assert ((batch >= 0) & (batch <= 1)).all()


@pytest.mark.parametrize("combine", ["rank-mean", "stack"])
def test_save_load_round_trip(combine, split, tmp_path):
    train, test = split
    router = fitted(combine, train)
    path = router.save(tmp_path / "ensemble.zip")
    loaded = load_router(path)
    assert isinstance(loaded, EnsembleRouter)
    assert [m.name for m in loaded.members_] == [m.name for m in router.members_]
    np.testing.assert_array_equal(loaded.weights_, router.weights_)
    np.testing.assert_array_equal(loaded.score(test.texts), router.score(test.texts))


def rewrite(source: Path, target: Path, edit_meta=None, drop: str | None = None) -> Path:
    """A copy of a router file with its JSON edited or one array dropped."""
    with zipfile.ZipFile(source) as archive:
        header = json.loads(archive.read("meta.json"))
        with np.load(io.BytesIO(archive.read("arrays.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files if k != drop}
    if edit_meta is not None:
        edit_meta(header["meta"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("meta.json", json.dumps(header))
        archive.writestr("arrays.npz", buffer.getvalue())
    return target


def _swap_members(meta):
    members = meta["state"]["members"]
    members[0], members[1] = members[1], members[0]


def _member_embedding(meta):
    meta["state"]["members"][1]["params"]["embedding"] = "static"


def _fewer_members(meta):
    meta["params"]["members"] = meta["params"]["members"][:3]


@pytest.mark.parametrize(
    ("edit", "drop"),
    [
        (_swap_members, None),  # members saved in another order than the parameters say
        (_member_embedding, None),  # a member embedding prompts differently from the ensemble
        (_fewer_members, None),  # parameters name fewer members than the file holds
        (None, "m1.coef"),  # embed-logreg's weights missing
        (None, "quantiles"),
    ],
)
def test_mismatched_file_is_refused(edit, drop, split, tmp_path):
    path = fitted("stack", split[0]).save(tmp_path / "good.zip")
    bad = rewrite(path, tmp_path / "bad.zip", edit, drop)
    with pytest.raises(RouterFileError):
        EnsembleRouter.load(bad)
    with pytest.raises(RouterFileError):
        load_router(bad)


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "corrupt.zip"
    path.write_bytes(b"PK\x03\x04 not an ensemble")
    with pytest.raises(RouterFileError):
        EnsembleRouter.load(path)


@pytest.mark.parametrize(
    "params",
    [
        {"combine": "vote"},
        {"members": ()},
        {"members": 5},
        {"members": ("knn", "ensemble")},
        {"combine": "stack", "inner_folds": 1},
    ],
)
def test_bad_parameters_are_refused(params, split):
    with pytest.raises(ConfigError):
        EnsembleRouter(**params).fit(split[0])
