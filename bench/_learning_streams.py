"""The traffic streams of ``bench/learning.py`` and the starting router none of them trained it.

Starting router: the default router's recipe (:mod:`sizewise.evaluation.default_router`: gbdt on the
static embedding + text features, the strong model's gain) without RouteLLM MMLU and GSM8K, i.e. on
MT-Bench and the recipe's MMLU-Pro pairs, on the recipe's training split of the MMLU-Pro questions;
calibrated on the recipe's held-out split. Streams (each in a seeded random order):

* ``routellm-mmlu``, ``routellm-gsm8k``: Mixtral-8x7B vs GPT-4-1106, never seen by the router;
* ``mmlu-pro-heldout``: a pair outside the recipe's (Mixtral-8x7B vs Llama-3.1-70B) on the questions
  of the recipe's held-out split, so neither the pair nor the questions trained it;
* ``frugalgpt-overruling``: FrugalGPT's OVERRULING answers ($SIZEWISE_DATA/frugalgpt/overruling.csv),
  the full 5-shot prompt as the router sees it, the table's own default pair (cheapest vs best model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sizewise import paths
from sizewise.core.table import OutcomeTable
from sizewise.evaluation import default_router as recipe
from sizewise.routers.base import Router, load_router, make_router

STREAM_NAMES = ("routellm-mmlu", "routellm-gsm8k", "mmlu-pro-heldout", "frugalgpt-overruling")
MMLU_PRO_STREAM_PAIR = ("Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3_1-70B-Instruct")
STARTING_DATASETS = ("routellm-mtbench",)


@dataclass
class Stream:
    """One replayed stream: texts in arrival order, both models' recorded quality and cost."""

    name: str
    weak: str
    strong: str
    texts: list[str]
    q_weak: np.ndarray
    q_strong: np.ndarray
    c_weak: np.ndarray
    c_strong: np.ndarray


def _stream(name: str, table: OutcomeTable, weak: str, strong: str, seed: int) -> Stream:
    q_w, q_s = table.column(weak), table.column(strong)
    c_w, c_s = table.column(weak, "cost"), table.column(strong, "cost")
    keep = ~(np.isnan(q_w) | np.isnan(q_s) | np.isnan(c_w) | np.isnan(c_s))
    rows = np.random.default_rng(seed).permutation(np.flatnonzero(keep))
    texts = table.texts
    return Stream(name, weak, strong, [texts[i] for i in rows], q_w[rows], q_s[rows], c_w[rows], c_s[rows])


def _starting_table() -> OutcomeTable:
    """The recipe's training table without RouteLLM MMLU and GSM8K."""
    from sizewise.evaluation.loaders import load_dataset

    parts = []
    for name in STARTING_DATASETS:
        data = load_dataset(name)
        parts.append(recipe._as_pair(data, *data.weak_strong()))
    pro = load_dataset("mmlu-pro")
    parts += [recipe._as_pair(pro, weak, strong) for weak, strong in recipe.MMLU_PRO_PAIRS]
    return recipe._concat(parts, "starting-router-data")


def heldout_questions() -> set[str]:
    """MMLU-Pro question texts in the recipe's held-out split (they never train the starting router)."""
    table = _starting_table()
    _, held = recipe.split_rows(table)
    return set(np.array(table.texts, dtype=object)[held])


def starting_router(cache: Path) -> Router:
    """The starting router, trained once and kept in ``cache`` (keyed by the recipe and the data's size)."""
    table = _starting_table()
    key = hashlib.sha256(json.dumps([STARTING_DATASETS, recipe.MMLU_PRO_PAIRS, len(table)]).encode()).hexdigest()
    path = cache / f"learning-start-{key[:12]}.zip"
    if path.is_file():
        return load_router(path)
    train, held = recipe.split_rows(table)
    router = make_router("gbdt", **recipe.DEFAULT_PARAMS).fit(table.subset(train))
    calibrated = recipe.calibration(router, table.subset(held), n_boot=200)
    router.save(
        path, provenance={"calibration": calibrated, "training": {"datasets": [*STARTING_DATASETS, "mmlu-pro"]}}
    )
    return load_router(path)


def frugalgpt_overruling(data_dir: Path) -> OutcomeTable:
    """FrugalGPT's OVERRULING answers as an outcome table (12 models, quality 0/1, cost per query)."""
    frame = pd.read_csv(data_dir / "frugalgpt" / "overruling.csv")
    models = [c[: -len("_cost")] for c in frame.columns if c.endswith("_cost")]
    prompts = pd.DataFrame({"prompt_id": [f"o{i}" for i in range(len(frame))], "text": frame["query"].astype(str)})
    return OutcomeTable(
        "frugalgpt-overruling",
        prompts,
        models,
        frame[models].to_numpy(float),
        cost=frame[[f"{m}_cost" for m in models]].to_numpy(float),
    )


def load_streams(names: tuple[str, ...], seed: int) -> list[Stream]:
    """The named streams, each in a seeded random order."""
    from sizewise.evaluation.loaders import load_dataset

    data_dir = paths.data_dir()
    streams = []
    for name in names:
        if name.startswith("routellm-"):
            table = load_dataset(name)
            weak, strong = table.weak_strong()
            streams.append(_stream(name, table, weak, strong, seed))
        elif name == "mmlu-pro-heldout":
            pro = load_dataset("mmlu-pro")
            held = heldout_questions()
            table = pro.subset(np.array([t in held for t in pro.texts]))
            streams.append(_stream(name, table, *MMLU_PRO_STREAM_PAIR, seed))
        elif name == "frugalgpt-overruling":
            table = frugalgpt_overruling(data_dir)
            weak, strong = table.weak_strong()
            streams.append(_stream(name, table, weak, strong, seed))
        else:
            raise SystemExit(f"unknown stream {name!r}; known: {', '.join(STREAM_NAMES)}")
    return streams
