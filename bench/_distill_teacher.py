"""A live teacher for HEADLINES (no recorded answers): the largest embedded model, answers cached in JSONL.

The prompt is a fixed few-shot block (two training headlines per label, seeded, the same for every
question) and the test headline; the teacher answers in a few tokens, which the normaliser reads. Rows
are appended one by one to ``--cache`` (default under /tmp), so a killed run resumes and a rerun of the
benchmark costs nothing. Run it under ``nice`` beside other work::

    nice -n 19 .venv/bin/python bench/_distill_teacher.py --limit 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sizewise.paths import data_dir

TEACHER = "qwen2.5-coder-1.5b"
LABELS = ("up", "down", "none", "neutral")
CACHE = Path("/tmp/sizewise-distill/headlines-teacher.jsonl")
INSTRUCTION = (
    "Classify what each news headline says about the price of gold: up (it rose), down (it fell), "
    "neutral (unchanged or range-bound), none (no price move is reported). Reply with one word."
)
SHOTS_PER_LABEL = 2
SEED = 0


def headlines(split: str) -> pd.DataFrame:
    """The HEADLINES split (no header row): query ("Q: ...\\nA:"), label, id."""
    path = data_dir() / "frugalgpt" / "headlines" / f"{split}.csv"
    return pd.read_csv(path, header=None, names=["query", "label", "id"], dtype={"id": str})


def few_shot_prefix() -> str:
    """The instruction and two seeded training examples per label, in a seeded order."""
    train = headlines("train")
    shots = pd.concat([train[train["label"] == label].sample(SHOTS_PER_LABEL, random_state=SEED) for label in LABELS])
    shots = shots.sample(frac=1.0, random_state=SEED)
    return INSTRUCTION + "\n\n" + "\n\n".join(f"{q} {a}" for q, a in zip(shots["query"], shots["label"], strict=True))


def prompt_of(query: str) -> str:
    """The full prompt the teacher (and the student, before it drops the shared prefix) sees."""
    return few_shot_prefix_cached() + "\n\n" + query


_PREFIX: list[str] = []


def few_shot_prefix_cached() -> str:
    if not _PREFIX:
        _PREFIX.append(few_shot_prefix())
    return _PREFIX[0]


def test_items(limit: int) -> pd.DataFrame:
    """The first ``limit`` test headlines of a seeded shuffle (a fair sample at any length)."""
    return headlines("test").sample(frac=1.0, random_state=SEED).head(limit).reset_index(drop=True)


def read_cache(path: Path = CACHE) -> dict[str, dict[str, object]]:
    """Cached teacher rows by headline id (a torn last line is skipped)."""
    rows: dict[str, dict[str, object]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[str(row["id"])] = row
    return rows


async def answer_all(items: pd.DataFrame, path: Path) -> int:
    """Ask the teacher every uncached item; append each answer as it comes. Returns how many were new."""
    from bench.collect_embedded import one_thread_catalog
    from sizewise.backends.factory import make_backend
    from sizewise.catalog import load_catalog
    from sizewise.core.chat import ChatRequest

    done = read_cache(path)
    todo = items[~items["id"].isin(done)]
    if todo.empty:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(one_thread_catalog(path.parent / "one-thread.yaml"))
    backend = make_backend(catalog.get(TEACHER), catalog)
    try:
        with path.open("a", encoding="utf-8") as out:
            for n, row in enumerate(todo.itertuples(index=False), 1):
                request = ChatRequest(
                    messages=[{"role": "user", "content": prompt_of(row.query)}], max_tokens=4, temperature=0.0
                )
                start = time.perf_counter()
                result = await backend.complete(request)
                record = {"id": row.id, "response": result.text, "seconds": time.perf_counter() - start}
                out.write(json.dumps(record) + "\n")
                out.flush()
                if n % 50 == 0:
                    print(f"{n}/{len(todo)} answered", flush=True)
    finally:
        await backend.aclose()
    return len(todo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    added = asyncio.run(answer_all(test_items(args.limit), args.cache))
    print(f"{added} new teacher answers, {len(read_cache(args.cache))} in {args.cache}")


if __name__ == "__main__":
    main()
