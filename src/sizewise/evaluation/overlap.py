"""Did a router see these prompts in training? A bottom-k sketch of the training prompts, small enough for the
router file's provenance, estimates how many of another table's prompts it was trained on.

Why a sketch: a calibration (or evaluation) on prompts the router was fitted on reports in-sample quality,
which looks better than the router will do (docs/routers.md showed "quality 0.913 at 27% strong" on the
training table while the strong model alone scores 0.853). Storing every training prompt's hash would add
~10 bytes per prompt to the file; the K smallest hashes (a bottom-k sketch) estimate the share of a table
that falls inside the training set from a few kilobytes, whatever the sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

#: Hashes kept: the estimate of a share rests on about K * |table| / |training| matches.
K = 256


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def training_sketch(texts: Iterable[str], name: str) -> dict[str, Any]:
    """What ``provenance["training"]`` records of a router's training prompts: the table's name, the number
    of distinct prompts and the K smallest prompt hashes (hex)."""
    hashes = sorted({_hash(text) for text in texts})
    return {"table": name, "prompts": len(hashes), "sketch": [f"{h:016x}" for h in hashes[:K]]}


def seen_share(training: dict[str, Any] | None, texts: Iterable[str]) -> tuple[float, int] | None:
    """(estimated share of ``texts`` that were training prompts, matches the estimate rests on); None when the
    router file records no sketch or no prompt falls in its range."""
    sketch = (training or {}).get("sketch")
    if not isinstance(sketch, list) or not sketch:
        return None
    kept = {int(h, 16) for h in sketch}
    complete = len(kept) >= int((training or {}).get("prompts", 0))  # the sketch holds every training prompt
    top = max(kept)
    in_range = [h for h in {_hash(t) for t in texts} if complete or h <= top]
    if not in_range:
        return None
    hits = sum(h in kept for h in in_range)
    return hits / len(in_range), len(in_range)
