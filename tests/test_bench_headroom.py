"""The bounds the router benchmark prints (bench/_routers_headroom.py) on small planted tables."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._routers_headroom import _pair_cost_share, headroom

from sizewise.evaluation.table import OutcomeTable


def test_pair_cost_share_perfect_score_pays_only_for_the_fixes():
    # cheap right on 0, 1; best right on 0, 1, 2, 3: sending 2 and 3 to the best model reaches its accuracy.
    quality = np.array([[1, 1], [1, 1], [0, 1], [0, 1], [0, 0]], float)
    cost = np.array([[1, 10]] * 5, float)
    perfect = np.array([0, 0, 1, 1, 0], float)
    assert _pair_cost_share(quality, cost, perfect, target=0.8) == pytest.approx((5 + 2 * 9) / 50)
    # The reverse order has to send every prompt before it gets there.
    assert _pair_cost_share(quality, cost, -perfect, target=0.8) == pytest.approx(1.0)
    assert np.isnan(_pair_cost_share(quality, cost, perfect, target=0.9))


def _planted(n: int = 3000, seed: int = 0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    accuracy, price = np.array([0.4, 0.6, 0.7]), np.array([0.01, 0.02, 0.2])
    quality = (rng.random((n, 3)) < accuracy).astype(float)
    prompts = pd.DataFrame({"prompt_id": np.arange(n).astype(str), "text": ["q"] * n})
    return OutcomeTable("planted", prompts, ["small", "flash", "pro"], quality, cost=np.tile(price, (n, 1)))


def test_headroom_separates_an_informed_predictor_from_a_blind_one():
    table = _planted()
    rng = np.random.default_rng(1)
    informed = headroom(table, table.quality + 0.3 * rng.standard_normal(table.quality.shape))
    blind = headroom(table, rng.random(table.quality.shape))
    assert (informed["best"], informed["cheap"]) == ("pro", "flash")
    assert informed["ours"]["disagreement_auc"] > 0.9 > 0.6 > blind["ours"]["disagreement_auc"]
    assert informed["ours"]["pair_cost_share"] < blind["ours"]["pair_cost_share"]
    needed = informed["pair_disagreement_auc_needed"]
    assert needed is not None and 0.5 < needed < 1
