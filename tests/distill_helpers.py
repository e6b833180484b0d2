"""Synthetic narrow tasks for the distillation tests: a teacher's labels with a learnable part and a
part no student can know (the teacher's label there is a coin flip), so calibration has work to do."""

from __future__ import annotations

import numpy as np

FILLER = [f"w{i}" for i in range(300)]
SIGNALS = {
    "yes": ["overruled", "abrogated", "disapproved", "overrule", "repudiate"],
    "no": ["affirmed", "followed", "upheld", "consistent", "applied"],
}


def synthetic_task(n: int, seed: int, clear_share: float = 0.7, flip: bool = False) -> tuple[list[str], list[str]]:
    """``n`` (text, teacher label) pairs: a ``clear_share`` carry a signal word of their label, the rest only
    filler words and a random label. ``flip`` swaps which signal means which label (drift)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(FILLER, 8))
        label = str(rng.choice(["yes", "no"]))
        if rng.random() < clear_share:
            signal_of = ("no" if label == "yes" else "yes") if flip else label
            words.insert(int(rng.integers(0, 8)), str(rng.choice(SIGNALS[signal_of])))
        texts.append("Context: " + " ".join(words) + ".\nQuestion: Is it overruling?\nAnswer:")
        labels.append(label)
    return texts, labels
