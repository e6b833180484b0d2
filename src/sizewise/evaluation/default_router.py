"""The recipe of the pretrained default router (``sizewise/routers/pretrained/default.zip``).

Training data: the built-in routing pair's own outcomes (qwen2.5-coder-0.5b vs 1.5b), recorded by
``bench/collect_embedded.py`` (``sizewise collect``'s code) on public labelled questions from
``$SIZEWISE_DATA`` into ``$SIZEWISE_COLLECTED`` (default ``/tmp/collect``; never committed): one
(weak, strong) table, "how much does this prompt need the bigger model". The instruction each
collection format appends is learned as shared text and dropped (:mod:`sizewise.routers.prefix`): traffic
does not carry it. 80% of the distinct questions train it; thresholds are calibrated on the other 20%
and recorded in the file's provenance, with the id of the embedding it was trained on and a digest of
the outcomes (:mod:`sizewise.learn`). Run it with ``sizewise train --default-router``.
:func:`public_table` is the earlier recipe's data (RouteLLM + MMLU-Pro pairs, strong API models), kept
for comparison and for the learning bench's starting router.
"""

from __future__ import annotations

import hashlib
import os
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
#: The built-in catalog's routing pair, whose own outcomes train the shipped router.
EMBEDDED_PAIR = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
#: Collected files read from :func:`collected_dir`: each one source and answer format.
COLLECTED = "*.jsonl"
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


def collected_dir() -> Path:
    """Where the recipe reads collected outcomes: ``$SIZEWISE_COLLECTED``, default ``/tmp/collect``."""
    return Path(os.environ.get("SIZEWISE_COLLECTED") or "/tmp/collect").expanduser()


def _questions_only(table: OutcomeTable) -> OutcomeTable:
    """The table with each source's shared instruction lines dropped from its prompt texts."""
    from sizewise.routers.prefix import learn_shared, varying_part

    prompts = table.prompts.copy()
    prompts["text"] = varying_part(list(prompts["text"]), *learn_shared(list(prompts["text"]), min_share=0.9))
    return type(table)(table.name, prompts, list(table.models), table.quality, cost=table.cost)


def embedded_table(directory: Path | None = None) -> OutcomeTable:
    """The embedded pair's collected outcomes as one (weak, strong) table; ``meta["outcomes"]`` says what
    it was made of (sources, questions, each model's accuracy, a digest of the files)."""
    from sizewise.cascade.collect import load_collected
    from sizewise.errors import DataError

    directory = directory or collected_dir()
    parts, sources, digest = [], {}, hashlib.sha256()
    for path in sorted(directory.glob(COLLECTED)):
        name = path.name
        try:
            table = load_collected(path, models=list(EMBEDDED_PAIR))
        except DataError:
            continue  # no question answered by both models yet
        digest.update(path.read_bytes())
        parts.append(_as_pair(_questions_only(table), *EMBEDDED_PAIR))
        sources[name] = {"questions": len(table), "quality": [float(q) for q in table.quality.mean(axis=0)]}
    if not parts:
        raise DataError(
            f"no outcomes of {' and '.join(EMBEDDED_PAIR)} in {directory}: "
            "collect them with bench/collect_embedded.py (or set SIZEWISE_COLLECTED)"
        )
    table = _concat(parts, "embedded-outcomes")
    table.meta["outcomes"] = {"pair": list(EMBEDDED_PAIR), "sources": sources, "sha256": digest.hexdigest()}
    return table


def training_table() -> OutcomeTable:
    """The recipe's (weak, strong) table: the embedded pair's own collected outcomes."""
    return embedded_table()


def public_table() -> OutcomeTable:
    """The earlier recipe's data: every public (weak, strong) outcome pair, models ``weak`` and ``strong``."""
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


def training_provenance(n_train: int, n_heldout: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the file records about its training data (``data``: what :func:`embedded_table` read)."""
    return {
        "recipe": "sizewise train --default-router",
        "outcomes": data or {},
        "collector": "bench/collect_embedded.py (sizewise.cascade.collect), temperature 0",
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
    outcomes = table.meta.get("outcomes")
    data = outcomes if isinstance(outcomes, dict) else None
    provenance = {"calibration": calibrated, "training": training_provenance(len(train_rows), len(held_rows), data)}
    estimator.save(out, provenance=provenance)
    for key, value in calibrated["targets"].items():
        say(f"{key}: threshold {value['threshold']:.4f} share {value['share']:.3f} quality {value['quality']:.4f}")
    return type(estimator).load(out)
