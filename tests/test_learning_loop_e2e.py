"""The learning loop end to end through a live gateway (#22): a router trained on someone else's traffic serves;
clients rate answers (``/v1/feedback``) and send labelled requests; shadow judging answers each one with the
pair's other model after the client has its answer and grades both; ``sizewise outcomes export`` turns that
into an outcome table; ``sizewise router retrain`` promotes a router that routes this traffic better; the
gateway serves it; ``sizewise router rollback`` brings the old one back. Every step leaves its row."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai

from fakes import GatewayServer, ThreadedServer, fake_model, read_body, send_answer
from learned_helpers import prompts, table_from
from sizewise.learn.versions import CURRENT, RouterVersions
from sizewise.routers.retrained import RetrainedRouter

N = 600
#: The deployment's own truth: the small model answers chat right and gets math and code wrong.
CHAT = 2


class Pair(ThreadedServer):
    """``small-up`` answers 7 to chat and 3 to anything else; ``large-up`` answers 7 always (7 is right)."""

    def __init__(self, chat: set[str]) -> None:
        self.chat = chat
        self.calls: dict[str, int] = {}
        super().__init__(self.app)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        model = str(body.get("model"))
        self.calls[model] = self.calls.get(model, 0) + 1
        prompt = body["messages"][-1]["content"]
        right = model == "large-up" or prompt in self.chat
        await send_answer(send, model, "The answer is 7." if right else "The answer is 3.", {"prompt_tokens": 20,
                          "completion_tokens": 5})  # fmt: skip


def _incumbent(folder: Path) -> Path:
    """Trained on another deployment, where the small model failed chat and aced math and code."""
    rng = np.random.default_rng(3)
    texts, topics = prompts(500, 7)
    small = rng.random(500) < np.where(topics == CHAT, 0.1, 0.95)
    large = rng.random(500) < 0.95
    table = table_from(texts, np.c_[small, large].astype(float), ["small", "large"])
    return RetrainedRouter().fit(table).save(folder / "incumbent.zip")


def _catalog(up: Pair, routers: Path, db: Path) -> dict[str, Any]:
    models = [fake_model("small", "small-up", 0.5, up.base_url), fake_model("large", "large-up", 5.0, up.base_url)]
    shadow = {"enabled": True, "uniform_rate": 1.0, "active_rate": 0.0, "judge": "large", "concurrency": 2,
              "queue_size": 4 * N}  # fmt: skip
    gateway = {"log_url": f"sqlite:///{db}", "router_dir": str(routers), "log_text": True, "shadow": shadow}
    return {"models": models, "gateway": gateway}


def _serve(gw: GatewayServer, texts: list[str]) -> list[tuple[str, str]]:
    """Each prompt once, labelled with its right answer; (request id, model that answered)."""
    client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=30)
    served = []
    for text in texts:
        label = {"sizewise": {"reference": "7", "answer_format": "numeric"}}
        raw = client.chat.completions.with_raw_response.create(
            model="sizewise", messages=[{"role": "user", "content": text}], max_tokens=8, extra_body=label
        )
        served.append((raw.headers["x-request-id"], raw.headers["x-sizewise-model"]))
    return served


def _wait_for_outcomes(gw: GatewayServer, count: int, timeout_s: float = 120.0) -> int:
    store = gw.app.state.gateway.outcomes.store
    deadline = time.monotonic() + timeout_s
    while (have := len({(o.request_id, o.model) for o in store.outcomes() if o.source == "grader"})) < count:
        assert time.monotonic() < deadline, f"{have} of {count} graded outcomes after {timeout_s:g}s"
        time.sleep(0.2)
    return have


def _route(up: Pair, routers: Path, db: Path, texts: list[str]) -> list[str]:
    """The model the gateway picks for each text (``/v1/route``: no call)."""
    with GatewayServer(_catalog(up, routers, db)) as gw:
        picks = []
        for text in texts:
            body = {"model": "sizewise", "messages": [{"role": "user", "content": text}]}
            response = httpx.post(gw.url + "/route", json=body, timeout=30)
            assert response.status_code == 200, response.text
            picks.append(response.headers["x-sizewise-model"])
        return picks


def test_feedback_and_shadow_judging_retrain_a_router_that_is_promoted_and_rolled_back(tmp_path: Path, run_cli):
    texts, topics = prompts(N + 60, 11)
    live, held = texts[:N], texts[N:]
    chat = {t for t, topic in zip(texts, topics, strict=True) if topic == CHAT}
    routers, db, table = tmp_path / "routers", tmp_path / "log.sqlite", tmp_path / "mine.jsonl"
    routers.mkdir()
    shutil.copy(_incumbent(tmp_path), routers / CURRENT)

    with Pair(chat) as up:
        with GatewayServer(_catalog(up, routers, db)) as gw:
            served = _serve(gw, live)
            rated = [
                httpx.post(gw.url + "/feedback", json={"request_id": rid, "thumbs": "up"}) for rid, _ in served[:5]
            ]
            assert all(r.status_code == 200 for r in rated), [r.text for r in rated]
            assert _wait_for_outcomes(gw, 2 * N) == 2 * N  # both answers of every request, graded
            rows = gw.rows()
        assert up.calls["small-up"] + up.calls["large-up"] == 2 * N  # one answer and one shadow answer each
        assert len(rows) == N and all(row["status"] == 200 for row in rows)  # every request in the log

        before = _route(up, routers, db, held)
        code, out, err = run_cli("outcomes", "export", "--out", str(table), "--db", str(db))
        assert code == 0, err
        assert f"{N} judged requests" in out
        code, out, err = run_cli("router", "retrain", "--outcomes", str(table), "--router-dir", str(routers),
                                 "--incumbent", str(tmp_path / "incumbent.zip"))  # fmt: skip
        assert code == 0, err
        assert "promoted v0002" in out, out
        after = _route(up, routers, db, held)

        code, out, err = run_cli("router", "rollback", "--router-dir", str(routers))
        assert code == 0 and "rolled back to v0001" in out, err
        again = _route(up, routers, db, held)

    def chat_to_small(picks: list[str]) -> float:
        """How often the routing agrees with this deployment: chat to small, math and code to large."""
        right = [(pick == "small") == (text in chat) for text, pick in zip(held, picks, strict=True)]
        return float(np.mean(right))

    assert chat_to_small(after) > chat_to_small(before) + 0.2, (chat_to_small(before), chat_to_small(after))
    assert again == before  # the rollback serves the incumbent again, decision for decision
    moves = [(e["event"], e.get("to")) for e in RouterVersions(routers).history() if e["event"] != "add"]
    assert moves == [("promote", "v0001"), ("promote", "v0002"), ("rollback", "v0001")], moves
