"""Speed of the embedded models on this machine: load time, prompt reading and generation, logprob overhead.

Usage: ``python bench/models.py [--gen-tokens 128] [--rounds 3]``. Each model runs through the real
``llamacpp`` backend with the built-in catalog's settings (``n_threads`` = all cores). Prompt reading is
timed on a ~400-token prompt with ``max_tokens=1``; generation on a short question with a fixed output
cap, on a prompt that asks for a long story (tokens/s counts the tokens actually generated). The logprob column repeats
the generation with the logits processor on (``logprobs=True``), which the cascade's ``logprob`` scorer
uses. Median of ``--rounds``. Writes docs/results/models.json and the ``models`` section of
docs/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import ROOT, markdown_table, update_section, write_json
from sizewise.backends.base import ChatRequest
from sizewise.backends.factory import make_backend
from sizewise.catalog import load_catalog

LONG_PROMPT = (
    "Read the following notes and answer with one word.\n"
    + " ".join(
        f"Note {i}: the shipment of {i * 7} boxes left warehouse {i % 5} on day {i} and arrived two days later."
        for i in range(1, 24)
    )
    + "\nWhich warehouse sent the most boxes?"
)
QUESTION = "Write a long, detailed story about a lighthouse keeper and a storm."


def timed(backend: Any, request: ChatRequest) -> tuple[float, int, int]:
    """Wall seconds, prompt tokens and completion tokens of one call."""
    start = time.perf_counter()
    result = asyncio.run(backend.complete(request))
    return time.perf_counter() - start, result.prompt_tokens, result.completion_tokens


def measure(name: str, gen_tokens: int, rounds: int) -> dict[str, Any]:
    catalog = load_catalog(None)
    backend = make_backend(catalog.get(name), catalog)
    start = time.perf_counter()
    backend.llama()
    load_s = time.perf_counter() - start
    read = ChatRequest(messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=1, temperature=0)
    gen = ChatRequest(
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=gen_tokens,
        temperature=0,
    )
    timed(backend, gen)  # warm-up: first call allocates buffers
    read_rates, gen_rates, logprob_rates = [], [], []
    for _ in range(rounds):
        # A new prompt each round so llama.cpp's prefix cache cannot skip the reading.
        seconds, prompt_tokens, _ = timed(backend, ChatRequest(**{**read.__dict__, "messages": _salted(read, _)}))
        read_rates.append(prompt_tokens / seconds)
        seconds, _, completion = timed(backend, gen)
        gen_rates.append(completion / seconds)
        seconds, _, completion = timed(backend, ChatRequest(**{**gen.__dict__, "logprobs": True}))
        logprob_rates.append(completion / seconds)
    return {
        "model": name,
        "load_s": load_s,
        "prompt_tokens_per_s": statistics.median(read_rates),
        "generated_tokens_per_s": statistics.median(gen_rates),
        "generated_tokens_per_s_with_logprobs": statistics.median(logprob_rates),
    }


def _salted(request: ChatRequest, round_number: int) -> list[dict[str, Any]]:
    content = f"[{round_number}] " + str(request.messages[0]["content"])
    return [{"role": "user", "content": content}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = [spec.name for spec in load_catalog(None).ladder() if spec.backend == "llamacpp"]
    rows = []
    for name in names:
        row = measure(name, args.gen_tokens, args.rounds)
        row["read_vs_generate"] = row["prompt_tokens_per_s"] / row["generated_tokens_per_s"]
        row["logprob_slowdown"] = row["generated_tokens_per_s"] / row["generated_tokens_per_s_with_logprobs"] - 1
        rows.append(row)
        print(markdown_table([row], digits=2), flush=True)
    write_json(ROOT / "docs" / "results" / "models.json", {"gen_tokens": args.gen_tokens, "models": rows})
    body = (
        markdown_table(rows, digits=2)
        + f"\n\nGeneration: up to {args.gen_tokens} tokens of a long story, greedy; prompt reading: a ~400-token "
        "prompt, new each round. `read_vs_generate`: how many times faster a prompt token is read than a token "
        "is generated (why the cascade's verifier, which only reads, is cheap). `logprob_slowdown`: relative cost "
        "of recording per-token logprobs with the logits processor (negative = within noise). "
        f"Median of {args.rounds} rounds, all cores, nothing else running by intent."
    )
    command = "python bench/models.py" + (f" --gen-tokens {args.gen_tokens}" if args.gen_tokens != 128 else "")
    update_section("models", "Embedded models: speed on this machine", command, body)


if __name__ == "__main__":
    main()
