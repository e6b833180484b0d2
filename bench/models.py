"""Speed of the embedded models on this machine: load, prompt reading, generation, logprobs; worker vs thread.

Usage: ``python bench/models.py [--gen-tokens 128] [--rounds 3] [--isolation both|process|thread] [--build portable]``.
Each model runs through the real ``llamacpp`` backend with the built-in catalog's settings (``n_threads`` = all
cores), once in its worker process (``isolate: true``, the default) and once in a thread of this process
(``isolate: false``). Prompt reading is timed on a ~400-token prompt with ``max_tokens=1``; generation on a prompt
that asks for a long story (tokens/s counts the tokens actually generated). The logprob column repeats the
generation with per-token logprobs on (the cascade's ``logprob`` scorer). ``call_ms``: median wall time of a
one-token answer to a short prompt (what the process boundary adds per call). ``rss_mb``: the worker's resident
memory, or what loading added to this process. Median of ``--rounds``.

``--build`` labels the llama.cpp build that is imported (the Makefile's portable one by default). To compare
another build, install it elsewhere and put it first on the path (a worker that dies is reported, not fatal)::

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \\
        -w /tmp/native-wheel llama-cpp-python==0.3.36
    pip install --no-deps --target /tmp/llama-native /tmp/native-wheel/*.whl
    PYTHONPATH=/tmp/llama-native python bench/models.py --build native --isolation process

The ``avx512`` row of docs/results.md is built the same way with the Makefile's x86-64 flags but AVX-512 (F, VBMI,
VNNI, BF16) and AVX-VNNI on, AMX off. ``--gateway``
adds the gateway's own latency per local request: a real HTTP server on 127.0.0.1 vs the same call made directly.
Rows are merged into docs/results/models.json by (build, isolation, model); the ``models`` section of
docs/results.md is rewritten from all stored rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import ROOT, markdown_table, update_section, write_json
from sizewise.backends.base import BackendError, ChatRequest
from sizewise.backends.llamacpp import LlamaCppBackend
from sizewise.catalog import load_catalog
from sizewise.catalog.schema import LlamaCppSettings

JSON_PATH = ROOT / "docs" / "results" / "models.json"
LONG_PROMPT = (
    "Read the following notes and answer with one word.\n"
    + " ".join(
        f"Note {i}: the shipment of {i * 7} boxes left warehouse {i % 5} on day {i} and arrived two days later."
        for i in range(1, 24)
    )
    + "\nWhich warehouse sent the most boxes?"
)
QUESTION = "Write a long, detailed story about a lighthouse keeper and a storm."
SHORT = ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=1, temperature=0)


def features() -> str:
    """The CPU features the imported llama.cpp was compiled with."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return " ".join(name for name, on in re.findall(r"([A-Z0-9_]+) = (\d+)", info) if on == "1")


def backend_for(name: str, isolate: bool) -> LlamaCppBackend:
    catalog = load_catalog(None)
    spec = catalog.get(name)
    settings = LlamaCppSettings.model_validate({**spec.settings, "isolate": isolate})
    return LlamaCppBackend(spec, settings, path=catalog.model_file(spec))


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(backend: Any, request: ChatRequest) -> tuple[float, int, int]:
    """Wall seconds, prompt tokens and completion tokens of one call."""
    start = time.perf_counter()
    result = asyncio.run(backend.complete(request))
    return time.perf_counter() - start, result.prompt_tokens, result.completion_tokens


def measure(name: str, gen_tokens: int, rounds: int, isolate: bool) -> dict[str, Any]:
    backend = backend_for(name, isolate)
    before = rss_mb()
    start = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - start
    gen = ChatRequest(messages=[{"role": "user", "content": QUESTION}], max_tokens=gen_tokens, temperature=0)
    timed(backend, gen)  # warm-up: the first call allocates buffers
    read_rates, gen_rates, logprob_rates, call_s = [], [], [], []
    for round_number in range(rounds):
        # A new prompt each round so llama.cpp's prefix cache cannot skip the reading.
        salted = [{"role": "user", "content": f"[{round_number}] {LONG_PROMPT}"}]
        seconds, prompt_tokens, _ = timed(backend, ChatRequest(messages=salted, max_tokens=1, temperature=0))
        read_rates.append(prompt_tokens / seconds)
        seconds, _, completion = timed(backend, gen)
        gen_rates.append(completion / seconds)
        seconds, _, completion = timed(backend, ChatRequest(**{**gen.__dict__, "logprobs": True}))
        logprob_rates.append(completion / seconds)
        call_s.extend(timed(backend, SHORT)[0] for _ in range(5))
    pid = backend.process().pid if isolate else None
    return {
        "model": name,
        "load_s": load_s,
        "prompt_tokens_per_s": statistics.median(read_rates),
        "generated_tokens_per_s": statistics.median(gen_rates),
        "generated_tokens_per_s_with_logprobs": statistics.median(logprob_rates),
        "call_ms": 1000 * statistics.median(call_s),
        "rss_mb": rss_mb(pid) if pid else rss_mb() - before,
    }


def gateway_overhead(name: str, requests: int) -> dict[str, Any]:
    """p50 of a one-token local answer through the gateway's HTTP server vs the same call made directly."""
    import httpx

    from _serve import serve_in_thread
    from sizewise.gateway.app import create_app

    body = {"model": name, "messages": SHORT.messages, "max_tokens": 1, "temperature": 0}
    backend = backend_for(name, True)

    async def measure_both(url: str) -> tuple[list[float], list[float]]:
        via_gateway, direct = [], []
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            (await client.post("/v1/chat/completions", json=body)).raise_for_status()  # loads the worker
            for _ in range(requests):  # interleaved in one event loop, so drift hits both alike
                start = time.perf_counter()
                (await client.post("/v1/chat/completions", json=body)).raise_for_status()
                via_gateway.append(time.perf_counter() - start)
                start = time.perf_counter()
                await backend.complete(SHORT)
                direct.append(time.perf_counter() - start)
        return via_gateway, direct

    with serve_in_thread(create_app(load_catalog(None))) as url:
        via_gateway, direct = asyncio.run(measure_both(url))
    p50_gateway, p50_direct = statistics.median(via_gateway), statistics.median(direct)
    return {
        "model": name,
        "requests": requests,
        "direct_ms": 1000 * p50_direct,
        "gateway_ms": 1000 * p50_gateway,
        "added_ms": 1000 * (p50_gateway - p50_direct),
    }


def _stored() -> dict[str, Any]:
    return json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}


def _merge(rows: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored rows with ``new`` replacing those of the same (build, isolation, model); unlabelled rows dropped."""
    keys = {(r["build"], r["isolation"], r["model"]) for r in new}
    kept = [r for r in rows if "build" in r and (r["build"], r["isolation"], r["model"]) not in keys]
    return kept + new


def render(stored: dict[str, Any]) -> str:
    speed = [
        {key: row.get(key) for key in ("build", "isolation", "model", "load_s", "prompt_tokens_per_s")}
        | {
            "gen_tokens_per_s": row.get("generated_tokens_per_s"),
            "gen_with_logprobs": row.get("generated_tokens_per_s_with_logprobs"),
            "call_ms": row.get("call_ms"),
            "rss_mb": row.get("rss_mb"),
            "error": row.get("error", ""),
        }
        for row in stored.get("models", [])
    ]
    body = markdown_table(speed, digits=2) + (
        f"\n\nGeneration: up to {stored.get('gen_tokens', 128)} tokens of a long story, greedy; prompt reading: a "
        "~400-token prompt, new each round. `process`: the model in its worker process (the default); `thread`: in "
        "this process. `call_ms`: a one-token answer to a short prompt. `rss_mb`: the worker's resident memory, or "
        "what loading added to this process. Builds: "
        + "; ".join(f"`{build}`: {flags}" for build, flags in sorted(stored.get("builds", {}).items()))
    )
    if stored.get("gateway"):
        body += "\n\nThe gateway's own latency per local request (HTTP server on 127.0.0.1 vs the same call made "
        body += "directly, interleaved, median):\n\n" + markdown_table(stored["gateway"], digits=2)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isolation", choices=["both", "process", "thread", "none"], default="both")
    parser.add_argument("--build", default="portable", help="label of the imported llama.cpp build")
    parser.add_argument("--gateway", type=int, default=0, metavar="N", help="also time N requests via the gateway")
    parser.add_argument("--models", nargs="*", help="catalog names (default: every embedded model)")
    args = parser.parse_args()
    names = args.models or [spec.name for spec in load_catalog(None).ladder() if spec.backend == "llamacpp"]
    modes = {"both": [True, False], "process": [True], "thread": [False], "none": []}[args.isolation]
    rows = []
    for isolate in modes:
        for name in names:
            try:
                row = measure(name, args.gen_tokens, args.rounds, isolate)
            except BackendError as error:  # e.g. a native build this CPU cannot run: the worker died
                row = {"model": name, "error": str(error).split(";")[0]}
            rows.append({"build": args.build, "isolation": "process" if isolate else "thread", **row})
            print(markdown_table([rows[-1]], digits=2), flush=True)
    stored = _stored()
    stored["gen_tokens"] = args.gen_tokens
    stored["models"] = _merge(stored.get("models", []), rows)
    if rows:
        stored.setdefault("builds", {})[args.build] = features()
    if args.gateway:
        stored["gateway"] = [gateway_overhead(names[0], args.gateway)]
        print(markdown_table(stored["gateway"], digits=2), flush=True)
    write_json(JSON_PATH, stored)
    update_section("models", "Embedded models: speed on this machine", _command(), render(stored))


def _command() -> str:
    return "; ".join(
        [
            "python bench/models.py",
            "PYTHONPATH=/tmp/llama-avx512 python bench/models.py --build avx512 --isolation process",
            "PYTHONPATH=/tmp/llama-native python bench/models.py --build native --isolation process",
            "python bench/models.py --isolation none --gateway 50",
        ]
    )


if __name__ == "__main__":
    main()
