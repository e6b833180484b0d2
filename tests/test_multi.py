"""N-model routing: mf learns which model is good at what, adds a model from few outcomes, and the
decision rules pick cheap models when they suffice."""

from __future__ import annotations

import numpy as np
import pytest

from learned_helpers import prompts, table_from
from sizewise.errors import ConfigError, DataError
from sizewise.routers.mf import MFRouter
from sizewise.routers.multi import (
    MultiModelChooser,
    calibrate_lambda,
    cheapest_meeting,
    max_utility,
    realised,
    tradeoff_curve,
)

# Fits real routers on real embeddings of a few hundred prompts: some seconds per module.
pytestmark = pytest.mark.slow

# P(correct) per topic (math, code, chat) for each model.
SKILL = {
    "chat-small": (0.1, 0.1, 0.95),
    "math-mid": (0.9, 0.2, 0.9),
    "code-mid": (0.2, 0.9, 0.9),
    "big": (0.9, 0.9, 0.95),
}
PRICE = {"chat-small": 0.05, "math-mid": 0.5, "code-mid": 0.5, "big": 5.0}  # USD per 1k requests


pytestmark = pytest.mark.usefixtures("private_embedding_cache")


def outcomes(n: int, seed: int, skill: dict[str, tuple[float, float, float]] = SKILL):
    texts, topics = prompts(n, seed)
    rng = np.random.default_rng(seed + 100)
    quality = np.c_[[rng.random(n) < np.array(p)[topics] for p in skill.values()]].T.astype(float)
    cost = np.tile([PRICE.get(m, 0.5) / 1000 for m in skill], (n, 1))
    return table_from(texts, quality, list(skill), cost), topics


@pytest.fixture(scope="module")
def fitted():
    train, _ = outcomes(600, seed=1)
    return MFRouter(rank=8, steps=300).fit(train)


def test_mf_learns_each_models_strengths(fitted):
    test, topics = outcomes(300, seed=2)
    pred = fitted.predict_quality(test.texts)
    assert pred.shape == (300, 4)
    assert fitted.models_ == list(SKILL)
    col = {m: pred[:, i] for i, m in enumerate(fitted.models_)}
    math, code, chat = topics == 0, topics == 1, topics == 2
    assert col["math-mid"][math].mean() > col["code-mid"][math].mean() + 0.4
    assert col["code-mid"][code].mean() > col["math-mid"][code].mean() + 0.4
    assert col["chat-small"][chat].mean() > 0.8 > 0.3 > col["chat-small"][math].mean()


def test_new_model_from_a_few_hundred_outcomes(fitted):
    router = MFRouter(rank=8, steps=300).fit(outcomes(600, seed=1)[0])
    extra, _ = outcomes(300, seed=5, skill={"new-coder": (0.1, 0.95, 0.5)})
    router.add_model("new-coder", extra.texts, extra.column("new-coder"))
    test, topics = outcomes(300, seed=6)
    pred = router.predict_quality(test.texts)[:, router.models_.index("new-coder")]
    assert router.models_[-1] == "new-coder"
    assert pred[topics == 1].mean() > pred[topics == 0].mean() + 0.5
    # The old models' predictions are untouched.
    assert np.allclose(router.predict_quality(test.texts)[:, :4], fitted.predict_quality(test.texts))


def test_decision_rules_on_known_predictions():
    pred = np.array([[0.95, 0.2, 0.99], [0.3, 0.9, 0.99], [0.1, 0.2, 0.6]])
    costs = np.array([0.1, 1.0, 10.0])
    assert cheapest_meeting(pred, costs, 0.85).tolist() == [0, 1, 2]
    assert max_utility(pred, costs, 0.0).tolist() == [2, 2, 2]
    assert max_utility(pred, costs, 1.0).tolist() == [0, 0, 0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_decision_rules_refuse_nan_and_negative_costs(bad):
    pred = np.array([[0.5, 0.9], [0.8, 0.85]])
    # A NaN cost used to win every argmax/argmin: the model with no price got every prompt.
    with pytest.raises(DataError, match="costs"):
        max_utility(pred, np.array([bad, 1.0]), 0.1)
    with pytest.raises(DataError, match="costs"):
        cheapest_meeting(pred, np.array([bad, 1.0]), 0.7)
    with pytest.raises(DataError, match="predicted quality"):
        max_utility(np.array([[np.nan, 0.5]]), np.array([1.0, 2.0]), 0.1)
    with pytest.raises(ConfigError, match="lam"):
        max_utility(pred, np.array([1.0, 2.0]), float("nan"))
    with pytest.raises(ConfigError, match="target"):
        cheapest_meeting(pred, np.array([1.0, 2.0]), float("nan"))
    with pytest.raises(DataError, match="do not match"):
        calibrate_lambda(pred, np.array([1.0, 2.0]), np.ones((3, 2)), np.ones((2, 2)), target_quality=0.8)


class _Fitted:
    def __init__(self) -> None:
        self.models_ = ["a", "b"]

    def predict_quality(self, prompts):
        return np.tile([0.5, 0.9], (len(prompts), 1))


@pytest.mark.parametrize("choice", [np.array([], dtype=int), np.array([0, 2]), np.array([0.0, 1.0]), np.array([0])])
def test_realised_refuses_a_choice_that_does_not_index_the_table(choice):
    quality, cost = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.1, 1.0], [0.1, 1.0]])
    with pytest.raises(DataError, match="choice"):
        realised(choice, quality, cost)
    assert realised(np.array([0, 1]), quality, cost) == (1.0, 550.0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"costs": {"a": float("nan"), "b": 1.0}, "lam": 0.1}, DataError),
        ({"costs": {"a": "cheap", "b": 1.0}, "lam": 0.1}, DataError),
        ({"costs": [1.0, 2.0], "lam": 0.1}, ConfigError),
        ({"costs": {"a": 1.0, "b": 2.0}, "lam": float("nan")}, ConfigError),
        ({"costs": {"a": 1.0, "b": 2.0}, "target": "high"}, ConfigError),
    ],
)
def test_policy_refuses_bad_costs_and_knobs(kwargs, error):
    with pytest.raises(error):
        MultiModelChooser(_Fitted(), **kwargs)
    with pytest.raises(ConfigError, match="not fitted"):
        MultiModelChooser(MFRouter(), costs={"a": 1.0}, lam=0.1)


def test_policy_saves_cost_at_near_best_quality(fitted):
    test, _ = outcomes(600, seed=3)
    pred = fitted.predict_quality(test.texts)
    costs = np.array([PRICE[m] for m in fitted.models_])
    best_q, best_c = realised(np.full(len(test), 3), test.quality, test.cost)  # always "big"
    point = calibrate_lambda(pred, costs, test.quality, test.cost, target_quality=best_q - 0.03)
    assert point.quality >= best_q - 0.03
    assert point.cost_per_1k < 0.4 * best_c
    curve = tradeoff_curve(pred, costs, test.quality, test.cost)
    assert curve[0].cost_per_1k >= curve[-1].cost_per_1k
    policy = MultiModelChooser(fitted, PRICE, lam=point.lam)
    assert set(policy.choose(test.texts[:50])) <= set(SKILL)
    with pytest.raises(ConfigError):
        MultiModelChooser(fitted, {"big": 1.0}, lam=0.1)


def test_an_ensemble_of_n_model_routers_routes_among_n_models():
    from sizewise.routers.ensemble import EnsembleRouter
    from sizewise.routers.knn import KNNRouter

    train, _ = outcomes(600, seed=1)
    ensemble = EnsembleRouter(members=("knn", "mf")).fit(train)
    test, topics = outcomes(300, seed=2)
    pred = ensemble.predict_quality(test.texts)
    assert ensemble.models_ == list(SKILL)
    members = [m.predict_quality(test.texts) for m in ensemble.members_]
    assert np.allclose(pred, np.mean(members, axis=0))
    math_mid, code_mid = list(SKILL).index("math-mid"), list(SKILL).index("code-mid")
    assert pred[topics == 0, math_mid].mean() > pred[topics == 0, code_mid].mean() + 0.3
    assert set(MultiModelChooser(ensemble, PRICE, lam=0.01).choose(test.texts[:20])) <= set(SKILL)
    # Members that only score a pair cannot predict per-model quality: a clear error, not a wrong answer.
    with pytest.raises(ConfigError, match="per-model quality"):
        EnsembleRouter(members=("tfidf-logreg",)).fit(train).predict_quality(test.texts[:2])
    assert isinstance(ensemble.members_[0], KNNRouter)


def _priced(n: int, seed: int):
    """Two equally good models; "a" writes long answers on math (5x its usual cost), "b" costs the same everywhere."""
    texts, topics = prompts(n, seed)
    rng = np.random.default_rng(seed + 70)
    quality = (rng.random((n, 2)) < 0.8).astype(float)
    noise = np.exp(rng.normal(0, 0.2, (n, 2)))
    cost = np.c_[np.where(topics == 0, 5.0, 0.5), np.full(n, 1.0)] * noise / 1000
    return table_from(texts, quality, ["a", "b"], cost), topics


def test_cost_model_lets_the_policy_spend_where_a_model_is_cheap(tmp_path):
    from sizewise.errors import NotFittedError, RouterFileError
    from sizewise.routers.cost import CostPredictor
    from sizewise.routers.knn import KNNRouter

    train, _ = _priced(600, seed=1)  # the prompts the other tests embed already
    test, topics = _priced(300, seed=2)
    model = CostPredictor().fit(train)
    predicted = model.predict(test.texts) * 1000
    assert predicted.shape == (300, 2) and model.models_ == ["a", "b"]
    assert np.median(predicted[topics == 0, 0]) > 3.0 > 0.8 > np.median(predicted[topics != 0, 0])
    assert np.median(np.abs(np.log(predicted[:, 1]))) < 0.2  # "b": about 1.0 everywhere
    router = KNNRouter().fit(train)
    fixed = MultiModelChooser(router, model_mean_costs := {"a": 2.0, "b": 1.0}, lam=0.05)
    aware = MultiModelChooser(router, model_mean_costs, lam=0.05, cost_model=model)
    quality_fixed, cost_fixed = realised(fixed.choose_index(test.texts), test.quality, test.cost)
    quality_aware, cost_aware = realised(aware.choose_index(test.texts), test.quality, test.cost)
    assert cost_aware < 0.8 * cost_fixed and quality_aware > quality_fixed - 0.05
    chosen = np.array(aware.choose(test.texts))
    assert (chosen[topics != 0] == "a").mean() > 0.8 and (chosen[topics == 0] == "b").mean() > 0.8

    path = model.save(tmp_path / "cost.zip")
    assert np.allclose(CostPredictor.load(path).predict(test.texts[:20]), model.predict(test.texts[:20]))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(RouterFileError, match="not a valid sizewise cost-model file"):
        CostPredictor.load(tmp_path / "bad.zip")
    with pytest.raises(RouterFileError, match="holds a router"):
        CostPredictor.load(router.save(tmp_path / "router.zip"))
    with pytest.raises(NotFittedError):
        CostPredictor().predict(["x"])
    with pytest.raises(DataError, match="single string"):
        model.predict("one prompt")  # not five one-letter prompts
    with pytest.raises(DataError, match="strings"):
        model.predict([1])
    with pytest.raises(ConfigError, match="alpha"):
        CostPredictor(alpha="1").fit(train)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not fitted"):
        MultiModelChooser(router, cost_model=CostPredictor(), lam=0.1)
    with pytest.raises(ConfigError, match="cost model"):
        MultiModelChooser(router, lam=0.1)


def _collect_file(path, n: int, seed: int, skill: dict[str, tuple[float, float, float]]):
    """A `sizewise collect` JSONL of one model's graded answers, as a user would record a new model."""
    import json

    table, _ = outcomes(n, seed, skill)
    (model,) = skill
    rows = [
        {"prompt_id": f"q{i}", "model": model, "text": text, "response": "answer", "correct": bool(q), "latency": 0.1}
        for i, (text, q) in enumerate(zip(table.texts, table.column(model), strict=True))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cli_adds_a_collected_model_to_a_saved_router(fitted, tmp_path, run_cli):
    from sizewise.routers.base import load_router

    saved = fitted.save(tmp_path / "mf.zip")
    collected = _collect_file(tmp_path / "new.jsonl", 300, seed=5, skill={"new-coder": (0.1, 0.95, 0.5)})
    code, out, err = run_cli(
        "add-model", "--router-file", str(saved), "--table", str(collected), "--out", str(tmp_path / "mf2.zip")
    )
    assert code == 0, err
    assert "added new-coder (300 outcomes" in out
    extended = load_router(tmp_path / "mf2.zip")
    assert extended.models_ == [*SKILL, "new-coder"]
    test, topics = outcomes(300, seed=6)
    pred = extended.predict_quality(test.texts)
    assert pred[topics == 1, -1].mean() > pred[topics == 0, -1].mean() + 0.5
    assert np.allclose(pred[:, :4], fitted.predict_quality(test.texts))


def test_cli_add_model_refuses_what_it_cannot_do(fitted, tmp_path, run_cli):
    from sizewise.routers.knn import KNNRouter

    few = _collect_file(tmp_path / "few.jsonl", 10, seed=7, skill={"new-coder": (0.1, 0.95, 0.5)})
    saved = fitted.save(tmp_path / "mf.zip")
    args = ["add-model", "--table", str(few), "--out", str(tmp_path / "out.zip"), "--router-file"]
    code, _, too_few = run_cli(*args, str(saved))
    assert code == 2 and "new-coder: 10 outcomes" in too_few
    knn = KNNRouter(k=5).fit(outcomes(60, seed=8)[0]).save(tmp_path / "knn.zip")
    code, _, wrong_kind = run_cli(*args, str(knn))
    assert code == 2 and "'knn' router, which cannot add models" in wrong_kind
    assert "Traceback" not in too_few + wrong_kind
    assert not (tmp_path / "out.zip").exists()
