"""Collect the embedded models' own outcomes on public labelled questions (for the default router).

Runs the embedded ladder (SmolLM2-135M for the cascades, Qwen2.5-Coder 0.5B and 1.5B: the built-in
routing pair) through ``sizewise.cascade.collect``,
the code behind ``sizewise collect``, on GSM8K test questions (step-by-step, numeric grader) or
MMLU-Pro questions (its MMLU, STEM and other sources; answered by a letter, choice grader), a seeded
shuffle so a partial run is a fair sample. Rows go to an append-only JSONL file: kill it and run it
again to resume. One llama.cpp thread per model, so it can run beside other work (under ``nice``)::

    nice -n 19 python bench/collect_embedded.py --source mmlupro --limit 800 --out /tmp/collect/mmlupro.jsonl
    nice -n 19 python bench/collect_embedded.py --source gsm8k-short --limit 300 --out /tmp/collect/gsm8k-short.jsonl

Every ``*.jsonl`` file in the folder is one source for the default router's recipe
(:mod:`sizewise.evaluation.default_router`); a second process takes another shard with ``--offset``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import zipfile
from pathlib import Path

from sizewise.cascade.collect import GSM8K_INSTRUCTION, LETTERS, Item, RowStore, collect
from sizewise.paths import data_dir

#: The built-in ladder: the routing pair (0.5b, 1.5b) and the tiny model the cascades start from.
LADDER = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
#: A short-answer format: the letter alone, so a question costs a prompt read, not a long generation.
LETTER_INSTRUCTION = "Reply with only the letter of the correct option, no explanation."
#: GSM8K's short-answer form: a few output tokens instead of a few hundred (chain of thought is ~15x dearer).
NUMBER_INSTRUCTION = "Reply with only the final number, no explanation."
#: Any of the MMLU-Pro model-output files holds every question with its options and gold letter.
MMLU_PRO_FILE = "mmlu-pro/model_outputs_Phi-3-mini-4k-instruct_5shots.zip"
SEED = 0


def gsm8k_items() -> list[Item]:
    """GSM8K test questions with the step-by-step instruction (gold ends in ``#### n``)."""
    lines = (data_dir() / "routellm/gsm8k/test.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [Item(f"gsm8k-{i}", f"{r['question']}\n\n{GSM8K_INSTRUCTION}", r["answer"]) for i, r in enumerate(records)]


def gsm8k_short_items() -> list[Item]:
    """GSM8K test questions answered by the final number alone."""
    return [
        Item(f"{i.prompt_id}-short", i.prompt.replace(GSM8K_INSTRUCTION, NUMBER_INSTRUCTION), i.gold)
        for i in gsm8k_items()
    ]


def _mmlupro_records() -> list[tuple[str, str, list[str], str]]:
    """(id, question, options, gold letter) of every MMLU-Pro question."""
    with zipfile.ZipFile(data_dir() / MMLU_PRO_FILE) as archive:
        records = json.loads(archive.read(archive.namelist()[0]))
    out = []
    for r in records:
        options = r["options"] if isinstance(r["options"], list) else ast.literal_eval(r["options"])
        out.append((str(r["question_id"]), str(r["question"]), [str(o) for o in options], str(r["answer"])))
    return out


def _choice_item(prompt_id: str, question: str, options: list[str], gold: str) -> Item:
    listed = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return Item(prompt_id, f"{question}\n\n{listed}\n\n{LETTER_INSTRUCTION}", gold)


def mmlupro_items() -> list[Item]:
    """MMLU-Pro questions with lettered options, answered by the letter alone."""
    return [_choice_item(f"mmlupro-{i}", q, options, gold) for i, q, options, gold in _mmlupro_records()]


def mmlupro4_items() -> list[Item]:
    """MMLU-Pro questions with four options: the gold one and three of its distractors (seeded), so the
    small models answer above chance (with ten options both sit near it and the outcomes say nothing)."""
    rng = random.Random(SEED)
    items = []
    for i, question, options, gold in _mmlupro_records():
        right = options[LETTERS.index(gold)]
        kept = [right, *rng.sample([o for o in options if o != right], min(3, len(options) - 1))]
        rng.shuffle(kept)
        items.append(_choice_item(f"mmlupro-{i}-4", question, kept, LETTERS[kept.index(right)]))
    return items


SOURCES = {
    "gsm8k": (gsm8k_items, "numeric", 256),
    "gsm8k-short": (gsm8k_short_items, "numeric", 16),
    "mmlupro": (mmlupro_items, "choice", 10),
    "mmlupro4": (mmlupro4_items, "choice", 10),
}


def one_thread_catalog(path: Path) -> Path:
    """The built-in catalog with one llama.cpp thread per model."""
    from sizewise.catalog.loader import default_catalog_text

    text = default_catalog_text()
    for key in ("tiny", "small", "big"):
        text = text.replace(f"{{embedded: {key}}}", f"{{embedded: {key}, n_threads: 1}}")
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    """Parse arguments and collect (resumable)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=sorted(SOURCES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--offset", type=int, default=0, help="skip the first N (another process's shard)")
    args = parser.parse_args()

    from sizewise.backends.factory import make_backend
    from sizewise.catalog import load_catalog

    make, grader, max_tokens = SOURCES[args.source]
    items = make()
    random.Random(SEED).shuffle(items)
    items = items[args.offset : args.offset + args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(one_thread_catalog(args.out.parent / "one-thread.yaml"))
    backends = {name: make_backend(catalog.get(name), catalog) for name in LADDER}
    store = RowStore(args.out)
    try:
        added = asyncio.run(collect(items, backends, store, grader=grader, max_tokens=max_tokens))
    finally:
        store.close()
    print(f"{added} new rows, {len(store.rows)} in {args.out}")


if __name__ == "__main__":
    main()
