"""One battery for every registered estimator, router and scorer alike: scikit-learn's ``check_estimator``
ideas on tiny data. A router or scorer is tested here the moment it is registered.

Router-specific checks (planted signal, outcome tables, tampered files) live in test_router_conformance.py.
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from distill_helpers import synthetic_task
from learned_helpers import planted_pair
from sizewise.cascade.scorers.base import SCORERS, Answer, Scorer
from sizewise.distill.student import TASKS, TaskStudent
from sizewise.errors import ConfigError, DataError, NotFittedError, RouterFileError
from sizewise.learn import Estimator, Registry, get_registry, kinds
from sizewise.routers.base import ROUTERS, Router

pytestmark = pytest.mark.usefixtures("private_embedding_cache")

# Lighter settings for the slowest trainers, so the battery stays quick; the defaults run in
# test_router_conformance.py.
LIGHT: dict[tuple[str, str], dict[str, Any]] = {("router", "mf"): {"steps": 200}}
# Fits that take seconds even on tiny data go here, to run with the slow tests; none do today (the whole
# battery takes about 6 s, most of it MiniLM embedding the planted prompts once).
SLOW: set[tuple[str, str]] = set()


def planted_answers(n: int, seed: int) -> tuple[list[Answer], np.ndarray]:
    """Sums, right or wrong, with every field a scorer may read (logprobs, samples, a verdict)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    answers = []
    for label in labels:
        a, b = int(rng.integers(2, 50)), int(rng.integers(2, 50))
        stated = a + b if label else a + b + int(rng.integers(1, 9))
        answers.append(
            Answer(
                f"What is {a} plus {b}?",
                f"{a} + {b} = {stated}\n#### {stated}",
                logprobs=list(np.minimum(rng.normal(-0.3 if label else -0.9, 0.5, 12), 0)),
                samples=[f"#### {a + b}", f"#### {stated}"],
                verdict=float(np.clip((0.7 if label else 0.3) + rng.normal(0, 0.1), 0.01, 0.99)),
            )
        )
    return answers, labels.astype(float)


@dataclass
class Kind:
    """How the battery feeds one kind of estimator: tiny training data, predictions, bad input."""

    fit: Callable[[Any], Any]
    predict: Callable[[Any], np.ndarray]
    bad_fits: list[Callable[[Any], Any]]
    bad_predict: Callable[[Any], Any]


_TABLE = planted_pair(80, seed=5)
_ROUTER_TRAIN, _ROUTER_TEST = _TABLE.subset(np.arange(56)), _TABLE.subset(np.arange(56, 80))
_ANSWERS, _LABELS = planted_answers(40, seed=1)
_TEST_ANSWERS, _ = planted_answers(12, seed=2)
_TASK_TEXTS, _TASK_LABELS = synthetic_task(60, seed=3)
_TASK_TEST, _ = synthetic_task(12, seed=4)

KINDS: dict[str, Kind] = {
    "router": Kind(
        fit=lambda e: e.fit(_ROUTER_TRAIN),
        predict=lambda e: e.score_table(_ROUTER_TEST),
        bad_fits=[lambda e: e.fit([("a prompt", 1.0)])],
        bad_predict=lambda e: e.score("a single string, not a list"),
    ),
    "scorer": Kind(
        fit=lambda e: e.fit(_ANSWERS, _LABELS),
        predict=lambda e: e.score(_TEST_ANSWERS),
        bad_fits=[
            lambda e: e.fit(_ANSWERS, _LABELS[:-1]),  # one label short
            lambda e: e.fit(_ANSWERS, np.full(len(_ANSWERS), np.nan)),  # NaN labels once counted as "wrong"
            lambda e: e.fit(_ANSWERS, np.full(len(_ANSWERS), 5.0)),
            lambda e: e.fit(_ANSWERS, ["yes"] * len(_ANSWERS)),
            lambda e: e.fit([], []),
            lambda e: e.fit(["an answer as a string"], [1.0]),
        ],
        bad_predict=lambda e: e.score(["an answer as a string"]),
    ),
    "task": Kind(
        fit=lambda e: e.fit(_TASK_TEXTS, _TASK_LABELS),
        predict=lambda e: e.predict_proba(_TASK_TEST)[:, 1],
        bad_fits=[
            lambda e: e.fit(_TASK_TEXTS, _TASK_LABELS[:-1]),  # one label short
            lambda e: e.fit(_TASK_TEXTS, ["yes"] * len(_TASK_TEXTS)),  # one label: nothing to tell apart
            lambda e: e.fit(_TASK_TEXTS, [None] * len(_TASK_TEXTS)),  # unparseable answers left in
            lambda e: e.fit([], []),
            lambda e: e.fit("a single string", ["yes"]),
        ],
        bad_predict=lambda e: e.predict_proba("a single string, not a list"),
    ),
}
REGISTRIES: dict[str, Registry[Any]] = {"router": ROUTERS, "scorer": SCORERS, "task": TASKS}
CASES = [
    pytest.param(kind, name, id=f"{kind}-{name}", marks=[pytest.mark.slow] if (kind, name) in SLOW else [])
    for kind, reg in REGISTRIES.items()
    for name in reg.names()
]


def make(kind: str, name: str) -> Estimator:
    """A fresh estimator with its seed fixed where it takes one."""
    cls = REGISTRIES[kind].get(name)
    params = {k: 0 for k in ("seed", "random_state") if k in cls.param_names()}
    params.update(LIGHT.get((kind, name), {}))
    return cls(**params)


_FITTED: dict[tuple[str, str], Estimator] = {}


def fitted(kind: str, name: str) -> Estimator:
    """One fitted estimator per case, shared by the read-only checks."""
    if (kind, name) not in _FITTED:
        _FITTED[kind, name] = KINDS[kind].fit(make(kind, name))
    return _FITTED[kind, name]


def same(a: Any, b: Any, json: bool = False) -> bool:
    """Equal parameters, NaN equal to NaN, tuples not equal to lists (a fit that retypes a parameter changed
    it) unless ``json`` (a file stores both as a JSON list)."""
    sequences = (list, tuple)
    if type(a) is not type(b) and not (json and isinstance(a, sequences) and isinstance(b, sequences)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], json) for k in a)
    if isinstance(a, sequences):
        return len(a) == len(b) and all(same(x, y, json) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and np.isnan(a):
        return bool(np.isnan(b))
    return bool(a == b)


def test_every_kind_has_a_registry_of_estimators() -> None:
    assert kinds() == ["router", "scorer", "task"]
    for kind, reg in REGISTRIES.items():
        assert get_registry(kind) is reg and reg.names()
        base = {"router": Router, "scorer": Scorer, "task": TaskStudent}[kind]
        for name in reg.names():
            cls = reg.get(name)
            assert (
                issubclass(cls, base) and issubclass(cls, Estimator) and cls.estimator_kind == kind and cls.name == name
            )


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_init_sets_only_its_parameters_as_given(kind: str, name: str) -> None:
    cls = REGISTRIES[kind].get(name)
    default = cls()
    assert set(vars(default)) == set(cls.param_names()), "__init__ must store its parameters and nothing else"
    marker = {p: copy.deepcopy(v) for p, v in default.get_params().items()}
    again = cls(**marker)
    for param, value in marker.items():
        assert getattr(again, param) is value, f"{param} is not stored as given"


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_get_and_set_params(kind: str, name: str) -> None:
    estimator = make(kind, name)
    params = estimator.get_params()
    assert estimator.set_params(**params) is estimator and same(estimator.get_params(), params)
    with pytest.raises(ConfigError, match=f"{kind} '{name}': bad parameter 'bogus'"):
        estimator.set_params(bogus=1)
    with pytest.raises(ConfigError, match="bogus"):
        REGISTRIES[kind].make(name, bogus=1)


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_fit_returns_self_and_leaves_the_parameters_unchanged(kind: str, name: str) -> None:
    estimator = make(kind, name)
    before = copy.deepcopy(estimator.get_params())
    assert KINDS[kind].fit(estimator) is estimator
    assert same(estimator.get_params(), before)
    predictions = KINDS[kind].predict(estimator)
    assert predictions.shape == ({"scorer": len(_TEST_ANSWERS), "task": len(_TASK_TEST)}.get(kind, len(_ROUTER_TEST)),)
    assert not np.isnan(predictions).any()  # always-large scores +inf on purpose


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_refit_on_the_same_data_is_idempotent(kind: str, name: str) -> None:
    estimator = KINDS[kind].fit(make(kind, name))
    first = KINDS[kind].predict(estimator)
    second = KINDS[kind].predict(KINDS[kind].fit(estimator))
    np.testing.assert_allclose(second, first, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(KINDS[kind].predict(fitted(kind, name)), first, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_clone_is_unfitted_with_the_same_parameters(kind: str, name: str, tmp_path: Path) -> None:
    original = fitted(kind, name)
    clone = original.clone()
    assert type(clone) is type(original) and same(clone.get_params(), original.get_params())
    assert set(vars(clone)) == set(type(clone).param_names())  # no learned state came along
    if clone.needs_fit:
        assert not clone.is_fitted()
        with pytest.raises(NotFittedError, match=f"{kind} '{name}' is not fitted"):
            KINDS[kind].predict(clone)
        with pytest.raises(NotFittedError):
            clone.save(tmp_path / "unfitted.zip")


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_save_and_load_round_trip_the_predictions(kind: str, name: str, tmp_path: Path) -> None:
    original = fitted(kind, name)
    path = original.save(tmp_path / f"{name}.zip")
    for loaded in (REGISTRIES[kind].load(path), type(original).load(path)):
        assert type(loaded) is type(original) and same(loaded.get_params(), original.get_params(), json=True)
        np.testing.assert_array_equal(KINDS[kind].predict(loaded), KINDS[kind].predict(original))
        assert isinstance(loaded.provenance_, dict)
    other = "scorer" if kind == "router" else "router"
    with pytest.raises(RouterFileError, match=f"holds a {kind}, expected a {other}"):
        REGISTRIES[other].load(path)


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_bad_input_gives_a_clear_error(kind: str, name: str) -> None:
    for bad_fit in KINDS[kind].bad_fits:
        with pytest.raises(DataError) as info:
            bad_fit(make(kind, name))
        assert "\n" not in str(info.value)
    with pytest.raises(DataError):
        KINDS[kind].bad_predict(fitted(kind, name))


# -- plug-ins: an entry point registers an estimator without editing any list ---------------------------


class PluginEstimator(Estimator):
    estimator_kind: ClassVar[str] = "test-plugin"
    name: ClassVar[str] = "plugged"

    def __init__(self, level: int = 1) -> None:
        self.level = level


@pytest.fixture
def plugin_registry(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Registry[Any]]:
    """A fresh registry of kind ``test-plugin`` whose entry-point group holds one entry pointing at ``value``."""
    from sizewise.learn import registry as module

    def build(value: str) -> Registry[Any]:
        point = importlib.metadata.EntryPoint(name="plugged", value=value, group="sizewise.test-plugins")
        monkeypatch.setattr(
            importlib.metadata, "entry_points", lambda group: [point] if group == "sizewise.test-plugins" else []
        )
        monkeypatch.delitem(module._REGISTRIES, "test-plugin", raising=False)
        made: Registry[Any] = Registry("test-plugin", [], "sizewise.test-plugins")
        monkeypatch.setitem(module._REGISTRIES, "test-plugin", made)  # removed again after the test
        return made

    return build


def test_an_entry_point_registers_a_plugin(plugin_registry: Callable[[str], Registry[Any]]) -> None:
    plugins = plugin_registry(f"{__name__}:PluginEstimator")
    assert plugins.names() == ["plugged"]
    assert plugins.make("plugged", level=3).get_params() == {"level": 3}


def test_a_plugin_that_does_not_load_is_named(plugin_registry: Callable[[str], Registry[Any]]) -> None:
    plugins = plugin_registry("no_such_package.routers")
    for _ in range(2):  # named on every lookup, not only the first
        with pytest.raises(ConfigError, match=r"plug-in 'plugged' \(no_such_package.routers\) does not load"):
            plugins.names()


def test_two_classes_cannot_share_a_name() -> None:
    class Impostor(Router):
        name = "gbdt"

        def fit(self, table: Any, weak: str | None = None, strong: str | None = None) -> Impostor:
            return self

        def score(self, prompts: Any) -> np.ndarray:
            return np.zeros(len(prompts))

    assert "gbdt" in ROUTERS.names()
    with pytest.raises(ValueError, match="router name 'gbdt' registered twice"):
        ROUTERS.register(Impostor)
