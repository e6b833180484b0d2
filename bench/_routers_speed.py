"""Decision speed of a router (bench/routers.py, parts ``speed`` and ``embeddings``): one new ~200-token prompt
at a time (p50/p99, embedding included), batches, and repeated prompts (memo and disk-cache hits)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._results import ROOT
from sizewise.evaluation.loaders import load_dataset


def speed_prompts(n: int) -> tuple[list[str], list[int]]:
    """``n`` new ~200-token prompts (cut from MT-Bench text, a random nonce in front) and their token counts."""
    import sizewise.embedding as emb

    model = emb.get_model()
    words = " ".join(load_dataset("routellm-mtbench").texts).split()
    rng = np.random.default_rng(0)
    nonce = os.urandom(4).hex()  # new texts on every run, so "new prompt" never hits an earlier run's cache

    def prompt() -> str:
        i = int(rng.integers(0, len(words) - 400))
        text = f"{nonce}{i} " + " ".join(words[i : i + 150])
        while len(model.token_ids([text])[0]) > 200:
            text = text.rsplit(" ", 1)[0]
        return text

    prompts = [prompt() for _ in range(n)]
    return prompts, [len(ids) for ids in model.token_ids(prompts)]


def timed(fn: Any, items: list[Any]) -> np.ndarray:
    """Milliseconds of ``fn(item)`` for each item."""
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t)
    return np.array(times) * 1000


def percentiles(ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def new_prompt_speed(router: Any, prompts: list[str], n_single: int, n_batch: int) -> dict[str, Any]:
    """One new prompt at a time (p50/p99 ms) and decisions/s for a batch of new prompts."""
    singles, batch = prompts[:n_single], prompts[n_single : n_single + n_batch]
    single = timed(lambda p: router.score([p]), singles)
    t = time.perf_counter()
    router.score(batch)
    per_s = len(batch) / (time.perf_counter() - t)
    return {"uncached_ms": percentiles(single), "batch_decisions_per_s_uncached": per_s}


def part_speed(router_file: Path | None) -> dict[str, Any]:
    import sizewise.embedding as emb
    from sizewise.routers.base import load_router

    path = router_file or ROOT / "src" / "sizewise" / "routers" / "pretrained" / "default.zip"
    start = time.perf_counter()
    router = load_router(path)
    load_s = time.perf_counter() - start
    prompts, tokens = speed_prompts(1200)
    router.score(["warm up"])
    embedding = router.get_params().get("embedding", "minilm")
    # New prompts (embedding runs; for MiniLM the disk-cache write is part of the decision), one at a time,
    # then a batch of 200 new ones (static embeddings are fast enough to time 1,000).
    fresh = new_prompt_speed(router, prompts, 60, 1000 if embedding == "static" else 200)
    cached = timed(lambda p: router.score([p]), prompts[:60])  # the same prompts again: memo hits
    emb.clear_memo()
    disk = timed(lambda p: router.score([p]), prompts[:60])  # disk-cache hits
    cached_batch = prompts[:60] * 17  # 1,020 cached prompts
    t = time.perf_counter()
    router.score(cached_batch)
    batch_cached = len(cached_batch) / (time.perf_counter() - t)
    result = {
        "router": router.name,
        "embedding": embedding,
        "load_average_1min": os.getloadavg()[0],
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "router_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "load_seconds": load_s,
        "prompt_tokens_mean": float(np.mean(tokens)),
        **fresh,
        "memo_hit_ms": percentiles(cached),
        "disk_hit_ms": percentiles(disk),
        "batch_decisions_per_s_cached": batch_cached,
    }
    print("speed", result, flush=True)
    return result
