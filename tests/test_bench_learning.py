"""A small smoke run of the learning replay (bench/_learning_replay.py) and the goals bench/learning.py
reports, on a planted stream that a wrongly trained starting router ranks backwards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._learning_replay import Setup, replay
from bench._learning_streams import Stream
from bench.learning import goals

from learned_helpers import planted_pair, prompts, table_from
from sizewise.learn.retrain import Target
from sizewise.routers.retrained import RetrainedRouter, features


@pytest.fixture(scope="module")
def start() -> RetrainedRouter:
    """Trained where the weak model fails chat: on this stream it ranks backwards. Calibrated at share 0.5."""
    rng = np.random.default_rng(4)
    texts, topics = prompts(500, 5)
    weak = rng.random(500) < np.where(topics == 2, 0.15, 0.95)
    table = table_from(texts, np.c_[weak, rng.random(500) < 0.9].astype(float), ["small", "large"])
    router = RetrainedRouter().fit(table)
    median = float(np.median(router.score(texts)))
    router.provenance_ = {"calibration": {"default": "share_0.5", "targets": {"share_0.5": {"threshold": median}}}}
    return router


@pytest.fixture(scope="module")
def stream() -> Stream:
    table = planted_pair(1600, seed=41)
    cost = table.cost
    assert cost is not None
    return Stream(
        "planted", "small", "large", table.texts, table.column("small"), table.column("large"), cost[:, 0], cost[:, 1]
    )


@pytest.fixture(scope="module")
def inputs(start, stream):
    return start.score(stream.texts), features(stream.texts)


@pytest.mark.parametrize("selection", ["uniform", "active"])
def test_the_replay_learns_promotes_only_what_helps_and_counts_the_shadow_calls(start, stream, inputs, selection):
    setup = Setup(Target("share", 0.5), judge_share=0.8, cap=500, selection=selection)
    result = replay(stream, start, *inputs, setup)
    at = {c["judged"]: c["apgr_rest"] for c in result.checkpoints}
    assert list(at) == [0, 100, 250, 500]
    assert at[0] < 0.4 and at[500] > 0.6  # learned from 500 judged requests of this stream
    assert result.promotions and all(p["next_apgr_candidate"] > p["next_apgr_incumbent"] for p in result.promotions)
    totals = result.totals
    assert totals["judged"] == 500
    assert totals["cost_vs_strong"] == pytest.approx(totals["served_cost_vs_strong"] + totals["shadow_cost_vs_strong"])
    assert totals["shadow_cost_vs_strong"] > 0 and totals["cost_vs_strong_llm_judge"] > totals["cost_vs_strong"]


def test_a_noisy_judge_still_learns_and_the_goals_are_reported(start, stream, inputs):
    exact = replay(stream, start, *inputs, Setup(Target("share", 0.5), cap=500))
    noisy = replay(stream, start, *inputs, Setup(Target("share", 0.5), cap=1000, noise=0.15))
    assert noisy.checkpoints[-1]["judged"] == 1000 and noisy.checkpoints[-1]["apgr_rest"] > 0.6  # slower, but learns
    runs = {
        name: {"checkpoints": r.checkpoints, "promotions": r.promotions, "totals": r.totals}
        for name, r in (("exact/uniform", exact), ("noisy/uniform", noisy))
    }
    summary = goals({"planted": {"runs": runs}})
    assert summary["no_worse_promotion"]["met"] and summary["no_worse_promotion"]["promotions"] >= 2
    assert summary["apgr_after_1000"]["values"] == {}  # no RouteLLM stream in this run
    assert not summary["apgr_after_1000"]["met"]  # a goal with nothing measured is not met
    assert set(summary["quality_at_cost"]["values"]) == {"planted exact/uniform", "planted noisy/uniform"}
