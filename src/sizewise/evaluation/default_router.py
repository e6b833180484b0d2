"""The recipe of the pretrained default router (``sizewise/routers/pretrained/default.zip``).

Training data: RouteLLM MMLU + GSM8K + MT-Bench (Mixtral-8x7B vs GPT-4-1106) and MMLU-Pro outcome pairs
(:data:`MMLU_PRO_PAIRS`), as one (weak, strong) table: "how much does this prompt need a bigger model".
80% of the distinct prompts train it; thresholds are calibrated on the other 20% and recorded in the
file's provenance, with the id of the embedding it was trained on (:mod:`sizewise.learn`). Run it with
``sizewise train --default-router`` (about 3 minutes on one core with the static embedding).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sizewise.routers.base import Router, make_router

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable

DATASETS = ("routellm-mmlu", "routellm-gsm8k", "routellm-mtbench")
MMLU_PRO_PAIRS = [
    ("Mixtral-8x7B-Instruct-v0.1", "gemini-1.5-pro-002"),
    ("Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct"),
    ("Qwen1.5-7B-Chat", "Qwen1.5-72B-Chat"),
    ("Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"),
    ("Phi-3-mini-4k-instruct", "gemini-1.5-flash-002"),
]
PAIR = ("weak", "strong")
TRAIN_SHARE = 0.8
SPLIT_SEED = 0
#: Calibration targets recorded in the file; the gateway routes with ``DEFAULT_TARGET``.
SHARES = (0.2, 0.3, 0.5, 0.8)
QUALITY = 0.95
DEFAULT_TARGET = "share_0.5"
DEFAULT_PARAMS: dict[str, Any] = {"embedding": "static"}


def shipped_path() -> Path:
    """Where the package keeps the default router file."""
    from importlib.resources import files

    return Path(str(files("sizewise.routers").joinpath("pretrained", "default.zip")))


def _as_pair(table: OutcomeTable, weak: str, strong: str) -> OutcomeTable:
    sub = table.select_models([weak, strong])
    return type(sub)(table.name, sub.prompts, list(PAIR), sub.quality, cost=sub.cost, pair=PAIR)


def _concat(tables: list[OutcomeTable], name: str) -> OutcomeTable:
    import pandas as pd

    frames = []
    for i, part in enumerate(tables):
        frame = part.prompts[["prompt_id", "text"]].copy()
        frame["prompt_id"] = f"{i}:" + frame["prompt_id"].astype(str)  # prompt ids of two tables may collide
        frames.append(frame)
    cost = None if any(t.cost is None for t in tables) else np.vstack([t.cost for t in tables])  # type: ignore[misc]
    quality = np.vstack([t.quality for t in tables])
    prompts = pd.concat(frames, ignore_index=True)
    return type(tables[0])(name, prompts, list(PAIR), quality, cost=cost, pair=PAIR)


def training_table() -> OutcomeTable:
    """Every (weak, strong) outcome pair of the recipe, as one table with models ``weak`` and ``strong``."""
    from sizewise.evaluation.loaders import load_dataset

    parts = []
    for name in DATASETS:
        data = load_dataset(name)
        parts.append(_as_pair(data, *data.weak_strong()))
    pro = load_dataset("mmlu-pro")
    parts += [_as_pair(pro, weak, strong) for weak, strong in MMLU_PRO_PAIRS]
    return _concat(parts, "default-router-data")


def split_rows(table: OutcomeTable) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), split by prompt text: the MMLU-Pro pairs repeat each question,
    which must not straddle the split."""
    texts = np.array(table.texts, dtype=object)
    unique = np.random.default_rng(SPLIT_SEED).permutation(np.unique(texts))
    train_texts = set(unique[: int(TRAIN_SHARE * len(unique))])
    in_train = np.array([t in train_texts for t in texts])
    return np.flatnonzero(in_train), np.flatnonzero(~in_train)


def calibration(router: Router, held: OutcomeTable, n_boot: int = 300) -> dict[str, Any]:
    """The recorded calibration: every target's threshold with held-out estimates, and the default one."""
    from sizewise.routers.calibration import calibrate

    targets = {f"share_{s:g}": calibrate(router, held, target_share=s, n_boot=n_boot).to_dict() for s in SHARES}
    targets[f"quality_{QUALITY:g}"] = calibrate(router, held, target_quality=QUALITY, n_boot=n_boot).to_dict()
    return {"default": DEFAULT_TARGET, "targets": targets}


def training_provenance(n_train: int, n_heldout: int) -> dict[str, Any]:
    """What the file records about its training data."""
    return {
        "recipe": "sizewise train --default-router",
        "datasets": [*DATASETS, "mmlu-pro"],
        "mmlu_pro_pairs": [list(p) for p in MMLU_PRO_PAIRS],
        "split": f"{TRAIN_SHARE:g} of the distinct prompt texts train it (seed {SPLIT_SEED}), the rest calibrate",
        "n_train": n_train,
        "n_heldout": n_heldout,
    }


def build_default_router(
    out: Path,
    router: str = "gbdt",
    params: dict[str, Any] | None = None,
    n_boot: int = 300,
    say: Callable[[str], None] = print,
) -> Router:
    """Train, calibrate and save the default router to ``out``; returns it."""
    table = training_table()
    train_rows, held_rows = split_rows(table)
    estimator = make_router(router, **(DEFAULT_PARAMS if params is None else params))
    say(f"training {router} on {len(train_rows)} rows ({len(held_rows)} held out for calibration)")
    estimator.fit(table.subset(train_rows))
    calibrated = calibration(estimator, table.subset(held_rows), n_boot)
    provenance = {"calibration": calibrated, "training": training_provenance(len(train_rows), len(held_rows))}
    estimator.save(out, provenance=provenance)
    for key, value in calibrated["targets"].items():
        say(f"{key}: threshold {value['threshold']:.4f} share {value['share']:.3f} quality {value['quality']:.4f}")
    return type(estimator).load(out)
