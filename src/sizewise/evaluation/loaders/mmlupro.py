"""MMLU-Pro model outputs (TIGER-AI-Lab/MMLU-Pro ``eval_results/model_outputs_<model>_5shots.zip``).

Each zip holds one JSON list, one object per question: ``question_id``, ``question``, ``options``,
``answer`` (gold letter), ``category``, ``src``, ``pred`` (the extracted letter, may be null) and the
chain-of-thought output in ``generated_text`` (``model_outputs`` in the Gemini files).

The table keeps the questions that every chosen model answered (an inner join on ``question_id``:
12,002 for all nine). Quality = 1 when ``pred == answer`` (each file's own gold letter; the files
disagree on 33 of them), 0 otherwise, a missing ``pred`` counting as wrong. ``text`` is the question
with its lettered options (zero-shot); ``tokens_in`` counts that text, not the 5-shot prompt of the
evaluation run, so costs are those of a zero-shot deployment.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizewise.core.prices import PriceSheet, normalize_model_name
from sizewise.core.table import OutcomeTable
from sizewise.core.tokens import count_tokens_cached
from sizewise.errors import DataError, UnknownModelError
from sizewise.evaluation.loaders._common import costs, require_file, source_root

# Ordered by accuracy on the shared questions, weakest first.
MODELS = (
    "Qwen1.5-7B-Chat",
    "Mistral-7B-Instruct-v0.2",
    "Phi-3-mini-4k-instruct",
    "Mixtral-8x7B-Instruct-v0.1",
    "Meta-Llama-3_1-8B-Instruct",
    "Qwen1.5-72B-Chat",
    "Meta-Llama-3_1-70B-Instruct",
    "gemini-1.5-flash-002",
    "gemini-1.5-pro-002",
)
LETTERS = "ABCDEFGHIJ"
NEEDED = ("question_id", "question", "options", "answer", "category", "src", "pred")


def zip_name(model: str) -> str:
    """File name of a model's outputs."""
    return f"model_outputs_{model}_5shots.zip"


def resolve_models(models: Sequence[str] | None) -> list[str]:
    """Canonical names for ``models`` (exact, or loosely: case, ``org/`` prefix, ``3.1`` for ``3_1``)."""
    if models is None:
        return list(MODELS)
    if isinstance(models, str):
        models = [m for m in models.split(",") if m.strip()]
    loose = {normalize_model_name(m): m for m in MODELS}
    chosen = []
    for model in models:
        name = model if model in MODELS else loose.get(normalize_model_name(model))
        if name is None:
            raise UnknownModelError(f"unknown MMLU-Pro model {model!r}; known: {', '.join(MODELS)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise DataError("mmlu-pro: no models chosen")
    return chosen


def _read_zip(path: Path) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(require_file(path)) as archive:
            members = [n for n in archive.namelist() if n.endswith(".json")]
            if len(members) != 1:
                raise DataError(f"{path}: expected one .json file inside, found {len(members)}")
            rows = json.loads(archive.read(members[0]))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{path} is not a zip of one JSON list: {exc}") from None
    frame = pd.DataFrame(rows)
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: rows have no {missing[0]!r} field")
    output = "generated_text" if "generated_text" in frame.columns else "model_outputs"
    if output not in frame.columns:
        raise DataError(f"{path}: rows have neither 'generated_text' nor 'model_outputs'")
    frame["response"] = frame[output]
    frame["question_id"] = pd.to_numeric(frame["question_id"], errors="coerce")
    if frame["question_id"].isna().any():
        raise DataError(f"{path}: question_id must be an integer")
    frame["question_id"] = frame["question_id"].astype(int)
    return frame.drop_duplicates("question_id").set_index("question_id")


def _prompt_text(question: str, options: Any) -> str:
    choices = [options] if isinstance(options, str) else list(options if options is not None else [])
    lines = [str(question)]
    lines += [f"{LETTERS[i]}. {option}" for i, option in enumerate(choices[: len(LETTERS)])]
    return "\n".join(lines)


def load_mmlu_pro(
    models: Sequence[str] | str | None = None,
    *,
    pair: tuple[str, str] | None = None,
    source: str = "local",
    data_dir: str | Path | None = None,
    prices: PriceSheet | str | Path | None = None,
    token_method: str = "auto",
) -> OutcomeTable:
    """``mmlu-pro``: the questions all of ``models`` (default all nine) answered, one column per model."""
    chosen = resolve_models(models)
    root = source_root("mmlu-pro", source, data_dir) / "mmlu-pro"
    frames = {model: _read_zip(root / zip_name(model)) for model in chosen}
    shared = frames[chosen[0]].index
    for frame in frames.values():
        shared = shared.intersection(frame.index)
    shared = shared.sort_values()
    base = frames[chosen[0]].loc[shared]
    quality = np.zeros((len(shared), len(chosen)))
    responses = np.empty((len(shared), len(chosen)), dtype=object)
    for j, model in enumerate(chosen):
        frame = frames[model].loc[shared]
        pred, answer = frame["pred"], frame["answer"]
        quality[:, j] = (pred.notna() & (pred.astype(str) == answer.astype(str))).to_numpy(dtype=float)
        responses[:, j] = [None if r is None or r != r else str(r) for r in frame["response"]]
    texts = [_prompt_text(q, o) for q, o in zip(base["question"], base["options"], strict=True)]
    prompts = pd.DataFrame(
        {
            "prompt_id": [f"mmlupro-{qid}" for qid in shared],
            "text": texts,
            "dataset": "mmlu-pro",
            "category": base["category"].astype(str).to_numpy(),
            "src": base["src"].astype(str).to_numpy(),
            "question_id": np.asarray(shared),
        }
    )
    tokens_in, tokens_out = _tokens(frames, chosen, shared, token_method)
    resolved_pair = None if pair is None else (resolve_models([pair[0]])[0], resolve_models([pair[1]])[0])
    return OutcomeTable(
        name="mmlu-pro",
        prompts=prompts,
        models=chosen,
        quality=quality,
        cost=costs(chosen, tokens_in, tokens_out, prices),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        responses=responses,
        pair=resolved_pair,
        meta={
            "source": "TIGER-AI-Lab/MMLU-Pro eval_results",
            "shared_questions": len(shared),
            "questions_per_model": {m: len(f) for m, f in frames.items()},
        },
    )


def _tokens(
    frames: dict[str, pd.DataFrame], chosen: list[str], shared: pd.Index, token_method: str
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_in, tokens_out) of the ``shared`` questions, one column per model."""
    # Token counts are taken over whole files (memoised in the cache), then the shared rows picked.
    full = frames[chosen[0]]
    full_texts = [_prompt_text(q, o) for q, o in zip(full["question"], full["options"], strict=True)]
    prompt_tokens = pd.Series(count_tokens_cached(full_texts, f"mmlupro-prompts-{chosen[0]}", token_method), full.index)
    tokens_in = np.repeat(prompt_tokens.loc[shared].to_numpy()[:, None], len(chosen), axis=1)
    tokens_out = np.zeros((len(shared), len(chosen)))
    for j, model in enumerate(chosen):
        frame = frames[model]
        counts = count_tokens_cached(frame["response"].tolist(), f"mmlupro-{model}", token_method)
        tokens_out[:, j] = pd.Series(counts, frame.index).loc[shared].to_numpy()
    return tokens_in, tokens_out
