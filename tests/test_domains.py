"""Domain routing with the real local embedding model: matching, threshold, calibration, the filter."""

from __future__ import annotations

import numpy as np
import pytest

from constraint_helpers import ctx, model
from sizewise.catalog.schema import RouteSpec
from sizewise.errors import ConfigError, DataError
from sizewise.policy.domains import DomainFilter, DomainRouter, calibrate_threshold, last_user_text

ROUTES = [
    RouteSpec(
        name="code",
        examples=[
            "Write a Python function that reverses a linked list.",
            "Why does my JavaScript fetch call return a pending promise?",
            "Fix this SQL query: SELECT name FROM users WHERE id = ",
            "How do I sort a dictionary by value in Python?",
        ],
        models=["coder"],
    ),
    RouteSpec(
        name="medical",
        examples=[
            "What are the symptoms of type 2 diabetes?",
            "What is the recommended dose of amoxicillin for a child with otitis media?",
            "A 54-year-old man presents with chest pain radiating to the left arm. What is the diagnosis?",
            "What are the side effects of metformin?",
        ],
        description="clinical and medical questions: diseases, drugs, symptoms, diagnosis",
        models=["med"],
    ),
]


@pytest.fixture(scope="module")
def router() -> DomainRouter:
    return DomainRouter(ROUTES, threshold=0.3, k=1)


def test_prompts_hit_their_route(router: DomainRouter) -> None:
    matches = router.match(
        [
            "Write a Python function that sorts a list of dictionaries by a key.",
            "My patient has a fever and a stiff neck; which antibiotic should I start?",
        ]
    )
    assert [m.route for m in matches] == ["code", "medical"]
    assert matches[0].scores["code"] > matches[0].scores["medical"]
    assert "score" in matches[0].reason() and matches[0].nearest
    assert set(matches[0].parts) == {"meaning", "words", "classifier"}


def test_off_domain_prompt_hits_no_route(router: DomainRouter) -> None:
    match = router.match_one("Write a short poem about autumn leaves falling in the park.")
    assert match.route is None and "no route" in match.reason()


def test_route_threshold_overrides_default() -> None:
    strict = [r.model_copy(update={"threshold": 0.99}) for r in ROUTES]
    match = DomainRouter(strict, k=1).match_one("Write a Python function that reverses a string.")
    assert match.route is None and match.threshold == 0.99


def _fake_embedder(table: dict[str, list[float]]):
    def embed(texts):
        rows = np.array([table[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return embed


def test_similarity_mixes_centroid_and_nearest_examples() -> None:
    table = {"a1": [1, 0, 0], "a2": [0, 1, 0], "b1": [0, 0, 1], "q": [1, 0, 0]}
    routes = [
        RouteSpec(name="a", examples=["a1", "a2"], models=["m"]),
        RouteSpec(name="b", examples=["b1"], models=["m"]),
    ]
    embed = _fake_embedder(table)
    only = {"word_weight": 0.0, "classifier_weight": 0.0, "embedder": embed}
    nearest = DomainRouter(routes, k=1, centroid_weight=0.0, **only).similarities(["q"])
    centroid = DomainRouter(routes, k=1, centroid_weight=1.0, **only).similarities(["q"])
    mixed = DomainRouter(routes, k=2, centroid_weight=0.5, **only).similarities(["q"])
    assert nearest[0] == pytest.approx([1.0, 0.0])
    assert centroid[0] == pytest.approx([1 / np.sqrt(2), 0.0], abs=1e-6)  # cosine to the normalised mean of a1, a2
    assert mixed[0] == pytest.approx([0.5 / np.sqrt(2) + 0.5 * 0.5, 0.0], abs=1e-6)


def test_word_part_separates_routes_the_embedding_cannot() -> None:
    # Every text embeds to the same vector: only the TF-IDF words part can tell the routes apart.
    texts = ["sort a python list", "python dictionary keys", "insulin dose for diabetes", "diabetes symptoms"]
    embed = _fake_embedder({t: [1.0, 0.0] for t in [*texts, "python list keys", "write a poem"]})
    routes = [
        RouteSpec(name="code", examples=texts[:2], models=["m"]),
        RouteSpec(name="medical", examples=texts[2:], models=["m"]),
    ]
    router = DomainRouter(
        routes, threshold=0.7, k=1, centroid_weight=0.0, word_weight=0.5, classifier_weight=0.0, embedder=embed
    )
    match = router.match_one("python list keys")
    assert match.route == "code" and match.scores["code"] > match.scores["medical"]
    assert set(match.parts) == {"meaning", "words"} and "words" in match.reason()
    assert match.parts["meaning"] == pytest.approx(1.0) and match.parts["words"] > 0.4
    assert match.nearest[0][1] >= match.nearest[-1][1] and match.nearest[0][0] in texts[:2]
    assert router.match_one("write a poem").route is None  # no shared word: the words part is 0


def test_many_examples_keep_the_words_part_sparse() -> None:
    # 2,000 examples x a bigram vocabulary of ~100,000 would be ~0.8 GB as a dense float32 matrix.
    import tracemalloc

    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(20000)]
    examples = [" ".join(rng.choice(vocabulary, 40)) for _ in range(2000)]
    routes = [RouteSpec(name=f"r{j}", examples=examples[j::4], models=["m"]) for j in range(4)]

    def embed(texts):
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)

    tracemalloc.start()
    try:
        router = DomainRouter(routes, k=3, word_weight=0.5, classifier_weight=0.0, embedder=embed)
        scores = router.similarities(examples[:300])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert (scores.argmax(axis=1) == np.arange(300) % 4).all()  # each example finds its own route by its words


def test_examples_without_words_fall_back_to_meaning() -> None:
    embed = _fake_embedder({"?": [1.0, 0.0], "!": [0.0, 1.0], "q": [1.0, 0.1]})
    routes = [RouteSpec(name="a", examples=["?"], models=["m"]), RouteSpec(name="b", examples=["!"], models=["m"])]
    match = DomainRouter(routes, threshold=0.5, classifier_weight=0.0, embedder=embed).match_one("q")
    assert match.route == "a" and set(match.parts) == {"meaning"}


def test_classifier_probability_is_mixed_into_the_score() -> None:
    # Examples of route "a" lie on both sides of route "b" in embedding space: the nearest example and
    # the centroid favour "b" for q, a classifier fitted on the examples sees the words that mark "a".
    table = {
        "alpha one": [1.0, 0.0],
        "alpha two": [0.0, 1.0],
        "beta one": [0.6, 0.8],
        "beta two": [0.8, 0.6],
        "alpha three": [0.7, 0.7],
    }
    embed = _fake_embedder(table)
    routes = [
        RouteSpec(name="a", examples=["alpha one", "alpha two"], models=["m"]),
        RouteSpec(name="b", examples=["beta one", "beta two"], models=["m"]),
    ]
    base = {"k": 1, "centroid_weight": 0.5, "word_weight": 0.0, "embedder": embed}
    similarity = DomainRouter(routes, classifier_weight=0.0, **base)
    both = DomainRouter(routes, classifier_weight=0.5, classifier_c=100.0, **base)
    classifier = DomainRouter(routes, classifier_weight=1.0, classifier_c=100.0, **base)
    assert similarity.match_one("alpha three").route == "b"
    proba = classifier.similarities(["alpha three"])[0]  # probability above chance: 2 p - 1 for two routes
    assert proba[0] > 0.5 and proba[1] == 0.0
    match = both.match_one("alpha three")
    assert match.route == "a" and set(match.parts) == {"meaning", "classifier"}
    expected = 0.5 * similarity.similarities(["alpha three"])[0] + 0.5 * proba
    assert both.similarities(["alpha three"])[0] == pytest.approx(expected, abs=1e-5)
    assert match.score == pytest.approx(expected[0], abs=1e-5) and "classifier" in match.reason()


def test_one_route_has_no_classifier() -> None:
    # A classifier needs two routes; with one, the score is the similarity whatever the classifier weight.
    embed = _fake_embedder({"a1": [1.0, 0.0], "q": [0.6, 0.8]})
    routes = [RouteSpec(name="a", examples=["a1"], models=["m"])]
    match = DomainRouter(routes, threshold=0.7, classifier_weight=1.0, embedder=embed).match_one("q")
    assert match.route is None and "classifier" not in match.parts and match.score < 0.7


def test_calibrate_threshold_separates_in_and_off_domain() -> None:
    sims = np.array([[0.8, 0.1], [0.2, 0.7], [0.3, 0.25], [0.5, 0.45]])
    threshold, acc = calibrate_threshold(sims, [0, 1, None, 0])
    assert acc == 1.0 and 0.3 < threshold <= 0.5
    threshold, acc = calibrate_threshold(sims, [1, 1, None, None])
    assert acc == 0.75


TWO_ROUTES = [RouteSpec(name="a", examples=["a1"], models=["m"]), RouteSpec(name="b", examples=["b1"], models=["m"])]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"k": 0}, r"k must be an integer >= 1, got 0"),
        ({"k": 1.5}, r"k must be an integer"),
        ({"centroid_weight": -0.1}, r"centroid_weight must be a number in \[0, 1\], got -0.1"),
        ({"word_weight": 1.5}, r"word_weight must be a number in \[0, 1\]"),
        ({"classifier_weight": float("nan")}, r"classifier_weight must be a number in \[0, 1\]"),
        ({"classifier_c": 0.0}, r"classifier_c must be a number > 0"),
        ({"threshold": "high"}, r"threshold must be a number in \[-1, 1\], got 'high'"),
        ({"embedder": "minilm"}, r"embedder must be callable"),
    ],
)
def test_invalid_router_parameters_are_named(params: dict[str, object], expected: str) -> None:
    embed = _fake_embedder({"a1": [1.0, 0.0], "b1": [0.0, 1.0]})
    with pytest.raises(ConfigError, match=expected):
        DomainRouter(TWO_ROUTES, **{"embedder": embed, **params})  # type: ignore[arg-type]


def test_duplicate_route_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate route name 'a'"):
        DomainRouter([TWO_ROUTES[0], TWO_ROUTES[0]], embedder=_fake_embedder({"a1": [1.0, 0.0]}))


def test_match_refuses_a_bare_string_a_non_string_and_an_empty_prompt() -> None:
    embed = _fake_embedder({"a1": [1.0, 0.0], "b1": [0.0, 1.0], "q": [1.0, 0.1]})
    router = DomainRouter(TWO_ROUTES, classifier_weight=0.0, embedder=embed)
    with pytest.raises(DataError, match="not a single string"):
        router.match("q")  # used to match each character
    with pytest.raises(DataError, match="prompt 1 must be a string, got int"):
        router.match(["q", 3])  # type: ignore[list-item]
    with pytest.raises(DataError, match="prompt 0 is empty"):
        router.match_one("  ")
    with pytest.raises(DataError, match="must be a string, got NoneType"):
        router.similarities([None])  # type: ignore[list-item]


def test_domain_filter_skips_a_request_without_text() -> None:
    embed = _fake_embedder({"a1": [1.0, 0.0], "b1": [0.0, 1.0]})
    specs = [model("m"), model("other")]
    kept, report = DomainFilter(DomainRouter(TWO_ROUTES, embedder=embed), specs).apply(ctx(""), specs)
    assert kept == specs and not report.fired


@pytest.mark.parametrize(
    ("sims", "labels", "grid", "expected"),
    [
        (np.zeros((0, 2)), [], None, r"at least 1 x 1; got \(0, 2\)"),
        (np.zeros(3), [0, 0, 0], None, r"shape \(prompts, routes\)"),
        ([["a", "b"]], [0], None, r"numeric array"),
        (np.array([[np.nan, 0.1]]), [0], None, r"contain NaN"),
        (np.zeros((2, 2)), [0], None, r"one label per prompt: 2 rows of similarities, 1 labels"),
        (np.zeros((1, 2)), [2], None, r"route index in 0..1 or None, got 2"),
        (np.zeros((1, 2)), ["a"], None, r"route index in 0..1 or None, got 'a'"),
        (np.zeros((1, 2)), [0], [], r"threshold grid must hold at least one number"),
        (np.zeros((1, 2)), [0], ["x"], r"threshold grid must be a list of numbers"),
    ],
)
def test_calibrate_threshold_names_bad_input(sims: object, labels: list[object], grid: object, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        calibrate_threshold(sims, labels, grid)  # type: ignore[arg-type]


def test_domain_filter_narrows_to_route_models(router: DomainRouter) -> None:
    specs = [model("general"), model("coder"), model("med")]
    flt = DomainFilter(router, specs)
    c = ctx("How do I sort a list of tuples by the second value in Python?")
    kept, report = flt.apply(c, specs)
    assert [s.name for s in kept] == ["coder"]
    assert report.removed["general"] == "not a model of route 'code'" and c.extras["domain"]["route"] == "code"
    # The route's model was filtered out earlier: the route is ignored, not the request refused.
    kept, report = flt.apply(ctx("How do I sort a list of tuples by the second value in Python?"), [specs[0], specs[2]])
    assert [s.name for s in kept] == ["general", "med"] and "route ignored" in (report.note or "")
    # A model named in the request is never re-routed.
    kept, _ = flt.apply(ctx("How do I sort a list of tuples in Python?", model_field="general"), specs)
    assert len(kept) == 3


def test_last_user_text() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
    ]
    assert last_user_text(messages) == "second" and last_user_text([]) == ""


def test_cli_routes_test_shows_route_and_why(tmp_path) -> None:
    import typer
    import yaml
    from typer.testing import CliRunner

    from sizewise.cli import choose_cmd

    catalog = {
        "models": [
            {
                "name": n,
                "backend": "openai",
                "context_window": 4096,
                "settings": {"base_url": "http://127.0.0.1:9/v1", "model": n},
            }
            for n in ("coder", "med")
        ],
        "routes": [r.model_dump(exclude_none=True) for r in ROUTES],
    }
    path = tmp_path / "sizewise.yaml"
    path.write_text(yaml.safe_dump(catalog))
    app = typer.Typer()
    choose_cmd.register(app)
    result = CliRunner().invoke(app, ["routes", "test", "What are the side effects of ibuprofen?", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "route 'medical'" in result.output and "models: med" in result.output and "nearest examples" in result.output
    catalog["routes"][0]["models"] = ["nope"]
    path.write_text(yaml.safe_dump(catalog))
    bad = CliRunner().invoke(app, ["routes", "test", "hi", "-c", str(path)])
    assert bad.exit_code != 0 and "unknown model" in str(bad.exception)
