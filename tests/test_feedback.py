"""Outcomes at the gateway (issue #22, item 1): ``POST /v1/feedback``, ``sizewise.feedback`` on the next chat
request, trust between keys, and the prompt vector kept instead of the text.

Through a real gateway on 127.0.0.1 with the official ``openai`` client, a billing upstream that records
what it was sent, and the real SQLite request log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from billing_upstream import BillingUpstream
from fakes import GatewayServer, fake_model
from sizewise.gateway.auth import hash_key
from sizewise.learn.outcomes import Outcome, OutcomeStore

KEYS = {"team-a": "key-a", "team-b": "key-b"}
SENT: list[dict[str, Any]] = []


def _usage(body: dict[str, Any]) -> tuple[int, int]:
    SENT.append(body)
    return 7, 3


@pytest.fixture(scope="module")
def upstream() -> Iterator[BillingUpstream]:
    with BillingUpstream(_usage) as up:
        yield up


def _spec(upstream: BillingUpstream, url: str, **gateway: Any) -> dict[str, Any]:
    models = [fake_model("small", "up-s", 1.0, upstream.base_url), fake_model("big", "up-b", 4.0, upstream.base_url)]
    return {"models": models, "gateway": {"log_url": url, **gateway}}


@pytest.fixture(scope="module")
def keyed(upstream: BillingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fb') / 'log.sqlite'}"
    keys = [{"name": name, "sha256": hash_key(key)} for name, key in KEYS.items()]
    with GatewayServer(_spec(upstream, url, api_keys=keys)) as gw:
        yield gw


def _ask(gw: GatewayServer, key: str = "key-a", model: str = "small", **extra: Any) -> tuple[str, dict[str, Any]]:
    """One chat answer: (request id, the ``sizewise`` object)."""
    client = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "What is 6 * 7?"}], max_tokens=8, **extra
    )
    return raw.headers["x-request-id"], raw.parse().model_extra["sizewise"]


def _feedback(gw: GatewayServer, body: Any, key: str | None = "key-a") -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gw.url + "/feedback", content=content, headers=headers, timeout=10)


def _stored(gw: GatewayServer, request_id: str) -> list[Outcome]:
    store = OutcomeStore(gw.app.state.gateway.log.url)
    try:
        return [o for o in store.outcomes() if o.request_id == request_id]
    finally:
        store.close()


def test_feedback_right_after_the_answer_is_stored_by_request_id(keyed: GatewayServer) -> None:
    """Posted at once (the log writes its rows in batches, so the row may not be there yet): found,
    stored with the model that answered. Without the endpoint this was a 404."""
    request_id, _ = _ask(keyed, model="big")
    response = _feedback(keyed, {"request_id": request_id, "thumbs": "up"})
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "feedback", "request_id": request_id, "model": "big", "score": 1.0}
    other, _ = _ask(keyed)
    assert _feedback(keyed, {"request_id": other, "score": 0.25, "reference": "42"}).status_code == 200
    assert [(o.model, o.score, o.source) for o in _stored(keyed, request_id)] == [("big", 1.0, "feedback")]
    [rated] = _stored(keyed, other)
    assert (rated.model, rated.score, rated.detail["reference"]) == ("small", 0.25, "42")


def test_a_key_rates_only_its_own_requests(keyed: GatewayServer) -> None:
    """team-b cannot write an outcome for team-a's request, nor learn that it exists: the same 404 as an
    unknown id. Without a key: 401."""
    request_id, _ = _ask(keyed, key="key-a")
    theirs = _feedback(keyed, {"request_id": request_id, "thumbs": "down"}, key="key-b")
    unknown = _feedback(keyed, {"request_id": "no-such-id", "thumbs": "down"}, key="key-b")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["message"] == f"unknown request id {request_id!r}"
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "request_not_found"
    assert _feedback(keyed, {"request_id": request_id, "thumbs": "down"}, key=None).status_code == 401
    assert _stored(keyed, request_id) == []
    assert _feedback(keyed, {"request_id": request_id, "thumbs": "down"}, key="key-a").status_code == 200


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"request_id": "x", "score": 1.5}, "score", "less than or equal to 1"),
        ({"request_id": "x", "score": "0.5"}, "score", "valid number"),
        ({"request_id": "x"}, None, "exactly one of 'score'"),
        ({"request_id": "x", "score": 1, "thumbs": "up"}, None, "exactly one of 'score'"),
        ({"request_id": "x", "thumbs": "meh"}, "thumbs", "'up' or 'down'"),
        ({"score": 1}, "request_id", "missing required field"),
        ({"request_id": "x", "score": 1, "rating": 5}, "rating", "not permitted"),
        (b"{not json", None, "malformed JSON"),
        (b"[1, 2]", None, "JSON object"),
    ],
)
def test_bad_feedback_is_a_one_line_400(keyed: GatewayServer, body: Any, param: str | None, words: str) -> None:
    response = _feedback(keyed, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error["message"] and "\n" not in error["message"]
    assert error["param"] == param


def test_feedback_naming_another_model_or_a_failed_request(
    upstream: BillingUpstream, keyed: GatewayServer, tmp_path: Path
) -> None:
    request_id, _ = _ask(keyed)
    wrong = _feedback(keyed, {"request_id": request_id, "score": 1, "model": "big"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_model"
    assert "answered by 'small'" in wrong.json()["error"]["message"]
    assert _feedback(keyed, {"request_id": request_id, "score": 1, "model": "small"}).status_code == 200
    spec = _spec(upstream, f"sqlite:///{tmp_path / 'log.sqlite'}")
    spec["models"].append(fake_model("broken", "fail500", 2.0, "http://127.0.0.1:9/v1"))
    with GatewayServer(spec) as gw:
        with pytest.raises(openai.APIError):
            _ask(gw, model="broken")
        failed = gw.rows()[-1]["request_id"]
        response = _feedback(gw, {"request_id": failed, "thumbs": "up"}, key=None)
        assert response.status_code == 409 and response.json()["error"]["code"] == "no_answer"


def test_feedback_rides_on_the_next_chat_request_and_never_goes_upstream(keyed: GatewayServer) -> None:
    first, _ = _ask(keyed)
    SENT.clear()
    second, sizewise = _ask(keyed, extra_body={"sizewise": {"feedback": {"request_id": first, "score": 0.5}}})
    assert sizewise["feedback"] == {"request_id": first, "stored": True}
    assert SENT and all("sizewise" not in body for body in SENT)
    assert [(o.score, o.detail["via"]) for o in _stored(keyed, first)] == [(0.5, "chat")]
    # An unknown id does not cost the answer; the answer says why nothing was stored.
    _, sizewise = _ask(keyed, extra_body={"sizewise": {"feedback": {"request_id": "nope", "thumbs": "up"}}})
    assert sizewise["feedback"] == {"request_id": "nope", "stored": False, "error": "unknown request id 'nope'"}
    # Streamed: the final chunk's sizewise object says so too.
    client = openai.OpenAI(base_url=keyed.url, api_key="key-a", max_retries=0)
    stream = client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"sizewise": {"feedback": {"request_id": second, "thumbs": "down"}}},
    )
    finals = [chunk.model_extra["sizewise"] for chunk in stream if (chunk.model_extra or {}).get("sizewise")]
    assert finals[-1]["feedback"] == {"request_id": second, "stored": True}
    assert set(finals[-1]["savings"]) == {"cost_ratio", "quality", "interval", "judged"}
    # Riding on a chat request changes nothing about trust: team-b cannot rate team-a's answer this way either.
    _, sizewise = _ask(keyed, key="key-b", extra_body={"sizewise": {"feedback": {"request_id": first, "score": 0}}})
    assert sizewise["feedback"] == {"request_id": first, "stored": False, "error": f"unknown request id {first!r}"}
    assert [o.score for o in _stored(keyed, first)] == [0.5]


def test_malformed_inline_feedback_is_a_400_naming_the_field(keyed: GatewayServer) -> None:
    client = openai.OpenAI(base_url=keyed.url, api_key="key-a", max_retries=0)
    for extra, param in [
        ({"feedback": {"request_id": "x", "score": 2}}, "sizewise.feedback.score"),
        ({"feeback": {"request_id": "x", "score": 1}}, "sizewise.feeback"),
        ("yes", "sizewise"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}], extra_body={"sizewise": extra}
            )
        assert caught.value.body["param"] == param, caught.value.body


@pytest.mark.parametrize("log_text", [False, True])
def test_without_text_the_prompt_vector_is_kept(upstream: BillingUpstream, tmp_path: Path, log_text: bool) -> None:
    """log_text off: the static embedding of the prompt is stored instead (and the text is not);
    log_text on: the text is there, no vector is needed."""
    from sizewise.core.text import conversation_text
    from sizewise.embedding import embed_id, embed_static

    with GatewayServer(_spec(upstream, f"sqlite:///{tmp_path / 'log.sqlite'}", log_text=log_text)) as gw:
        request_id, _ = _ask(gw)
        [row] = gw.rows()
        kept = gw.app.state.gateway.outcomes.store.features([request_id])
    assert row["prompt_text"] == ("user: What is 6 * 7?" if log_text else None)
    if log_text:
        assert kept == {}
        return
    embedding, vector = kept[request_id]
    assert embedding == embed_id("static")
    routed = conversation_text([{"role": "user", "content": "What is 6 * 7?"}])  # the text the router reads
    assert np.allclose(vector, embed_static([routed])[0], atol=1e-6)


def test_without_a_log_feedback_says_why(upstream: BillingUpstream) -> None:
    with GatewayServer(_spec(upstream, "none")) as gw:
        response = _feedback(gw, {"request_id": "x", "score": 1}, key=None)
        assert response.status_code == 503 and "log_url" in response.json()["error"]["message"]


def test_the_store_round_trips_and_refuses_bad_outcomes(db_url: str) -> None:
    """What shadow judging and retraining code against: every field back as written, hostile text kept
    (NUL, surrogates in detail), a bad field a one-line DataError before anything reaches the database."""
    from sizewise.errors import DataError

    store = OutcomeStore(db_url)
    detail = {"reference": "a\x00b \ud800", "verdicts": [1, 0.5], "inclusion_p": 0.25}
    store.add(Outcome("r1", "small", 0.5, "llm-judge", time=100.0, other_model="big", detail=detail))
    store.add_many([Outcome("r1", "big", 1.0, "grader", time=101.0), Outcome("r2", "small", 0.0, "feedback")])
    store.keep_features("r1", [0.5, -1.25, 3.0])
    store.keep_features("r1", [9.0])  # the first vector kept wins
    assert [(o.request_id, o.model, o.score, o.source) for o in store.outcomes(since=100.5)] == [
        ("r1", "big", 1.0, "grader"),
        ("r2", "small", 0.0, "feedback"),
    ]
    first = store.outcomes()[0]
    assert (first.other_model, first.detail, first.time) == ("big", detail, 100.0)
    assert store.features(["r1", "r2"]) == {"r1": ("static", [0.5, -1.25, 3.0])}
    bad = [
        Outcome("r", "m", 1.5, "feedback"),
        Outcome("r", "m", float("nan"), "feedback"),
        Outcome("r", "m", 1.0, "vibes"),
        Outcome("r" * 65, "m", 1.0, "feedback"),
        Outcome("r", "m" * 201, 1.0, "feedback"),
        Outcome("r", "m", 1.0, "llm-judge", other_model="m"),
        Outcome("r", "m", 1.0, "feedback", detail={"x": object()}),
    ]
    for outcome in bad:
        with pytest.raises(DataError) as caught:
            store.add(outcome)
        assert "\n" not in str(caught.value)
    with pytest.raises(DataError):
        store.keep_features("r3", [float("inf")])
    assert len(store.outcomes()) == 3
    store.close()
