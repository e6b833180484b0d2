"""Synthetic outcome tables with a planted signal, for the learned-router tests."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizewise.evaluation.table import OutcomeTable

TOPICS = {
    "math": [
        "Compute the integral of x^{a} times sin({b}x) from 0 to {c}.",
        "Prove that the sum of the first {a} odd numbers equals {a} squared, then generalise to {b}.",
        "Solve the system {a}x + {b}y = {c} and {b}x - {a}y = 7 for x and y, showing every step.",
        "Find all real roots of the polynomial x^3 - {a}x^2 + {b}x - {c}.",
    ],
    "code": [
        "Write a Python function that parses a CSV with {a} columns and returns the {b} largest rows.",
        "Fix the bug in this JavaScript loop that runs {a} times but should run {b} times.",
        "Implement a thread-safe LRU cache in Rust holding {a} entries with a TTL of {b} seconds.",
        "Explain why this SQL query with {a} joins is slow and rewrite it to use {b} indexes.",
    ],
    "chat": [
        "Say hello to my friend number {a} in a cheerful way.",
        "What is a nice name for a cat? Give me {a} ideas.",
        "Tell me a short joke about the number {a}.",
        "Thank you so much for your help with item {a}!",
    ],
}


def prompts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` distinct prompts and their topic index (0 math, 1 code, 2 chat)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    texts, topics = [], []
    for i in range(n):
        topic = int(rng.integers(0, len(names)))
        template = TOPICS[names[topic]][int(rng.integers(0, 4))]
        texts.append(template.format(a=int(rng.integers(2, 999)), b=int(rng.integers(2, 99)), c=i))
        topics.append(topic)
    return texts, np.array(topics)


def table_from(
    texts: list[str], quality: np.ndarray, models: list[str], cost: np.ndarray | None = None
) -> OutcomeTable:
    """An OutcomeTable over ``texts``; the first two models are the (weak, strong) pair."""
    frame = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(texts))], "text": texts})
    return OutcomeTable(
        name="synthetic",
        prompts=frame,
        models=models,
        quality=quality,
        cost=cost,
        pair=(models[0], models[1]) if len(models) > 1 else None,
    )


def planted_pair(n: int = 600, seed: int = 0, shuffle: bool = False) -> OutcomeTable:
    """Weak model fails math and code (p=0.15) but aces chat (0.95); strong gets 0.9 everywhere.

    ``shuffle`` permutes the outcome rows, destroying any link between prompt and outcome.
    """
    rng = np.random.default_rng(seed + 1)
    texts, topics = prompts(n, seed)
    weak = rng.random(n) < np.where(topics == 2, 0.95, 0.15)
    strong = rng.random(n) < 0.9
    quality = np.c_[weak, strong].astype(float)
    if shuffle:
        quality = quality[rng.permutation(n)]
    cost = np.c_[np.full(n, 0.0001), np.full(n, 0.002)]
    return table_from(texts, quality, ["small", "large"], cost)


def apgr(scores: np.ndarray, table: OutcomeTable) -> float:
    """Average performance gap recovered of a score ordering (RouteLLM's definition, discretised)."""
    weak, strong = table.weak_strong()
    q_weak, q_strong = table.column(weak), table.column(strong)
    order = np.argsort(-np.asarray(scores), kind="stable")
    curve = (q_weak.sum() + np.r_[0.0, np.cumsum((q_strong - q_weak)[order])]) / len(order)
    pgr = (curve - q_weak.mean()) / (q_strong.mean() - q_weak.mean())
    return float(np.trapezoid(pgr, dx=1 / len(order)))


def rewrite_bundle(path: Path, out: Path, header: Any = None, arrays: Any = None) -> Path:
    """Copy a saved router/scorer file to ``out``, passing its header and arrays through the given edits."""
    with zipfile.ZipFile(path) as archive:
        old_header = json.loads(archive.read("meta.json"))
        old_arrays = dict(np.load(io.BytesIO(archive.read("arrays.npz"))))
    buffer = io.BytesIO()
    np.savez(buffer, **(old_arrays if arrays is None else arrays(old_arrays)))
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("meta.json", json.dumps(old_header if header is None else header(old_header)))
        archive.writestr("arrays.npz", buffer.getvalue())
    return out
