"""RouteLLM's evaluation sets (lm-sys/RouteLLM ``routellm/evals``): GPT-4-1106 vs Mixtral-8x7B.

* ``routellm-mmlu``: 57 subject CSVs, 14,042 rows; per model True/False. Tag ``category`` = subject.
  Responses are not published (the harness asked for one answer letter, ``max_new_tokens=1``), so
  ``tokens_out`` is 1 for every cell.
* ``routellm-gsm8k``: 1,319 rows with both models' full answers (``response`` and ``tokens_out`` known).
* ``routellm-mtbench``: 80 questions x 2 turns = 160 rows. Quality = GPT-4 judge score s (1-10) as
  ``(s - 1) / 9``. Each model's answer text is recovered from the judge prompt stored with its score.

Decontamination follows RouteLLM's harness exactly: a row is dropped when its prompt is one of the
``eval_prompt`` strings of ``contaminated_prompts.jsonl`` (exact match); for MT-Bench a question (both
turns) is dropped when either turn matches. ``decontaminate=False`` keeps them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sizewise.core.prices import PriceSheet
from sizewise.core.table import OutcomeTable, frame_rows
from sizewise.core.text import conversation_text
from sizewise.core.tokens import count_tokens
from sizewise.errors import DataError, UnknownModelError
from sizewise.evaluation.loaders._common import (
    broadcast,
    contaminated_prompts,
    costs,
    require_file,
    source_root,
)

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
PAIR = (WEAK, STRONG)
MODELS = [WEAK, STRONG]
MMLU_SUBJECTS = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
)
GSM8K_FILES = ("gsm8k/gsm8k_responses.csv", "gsm8k/contaminated_prompts.jsonl")
MTBENCH_FILES = ("mt_bench/question.jsonl", "mt_bench/judgements.jsonl", "mt_bench/contaminated_prompts.jsonl")
MMLU_OUTPUT_TOKENS = 1  # RouteLLM's MMLU harness generated one token (the answer letter)

_TURN1_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]", re.S)
_CONVERSATION = re.compile(
    r"<\|The Start of Assistant A's Conversation with User\|>(.*)<\|The End of Assistant A's Conversation with User\|>",
    re.S,
)


def mmlu_files() -> list[str]:
    """Relative paths (under ``routellm/``) of the MMLU files."""
    return [f"mmlu/responses/mmlu_{subject}.csv" for subject in MMLU_SUBJECTS] + ["mmlu/contaminated_prompts.jsonl"]


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(require_file(path), keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path} is not a readable CSV: {str(exc).splitlines()[0]}") from None


def _bool_columns(frame: pd.DataFrame, path: Path) -> np.ndarray:
    missing = [c for c in ("prompt", *MODELS) if c not in frame.columns]
    if missing:
        raise DataError(f"{path} has no {missing[0]!r} column")
    values = frame[MODELS].astype(str).apply(lambda col: col.str.strip().str.lower())
    if not values.isin(["true", "false"]).all().all():
        raise DataError(f"{path}: model columns must hold True/False")
    return (values == "true").to_numpy(dtype=float)


def _decontaminate(frame: pd.DataFrame, path: Path, decontaminate: bool) -> tuple[pd.DataFrame, int]:
    if not decontaminate:
        return frame, 0
    keep = ~frame["prompt"].isin(contaminated_prompts(path))
    return frame[keep], int((~keep).sum())


def load_mmlu(
    *,
    decontaminate: bool = True,
    source: str = "local",
    data_dir: str | Path | None = None,
    prices: PriceSheet | str | Path | None = None,
    token_method: str = "auto",
) -> OutcomeTable:
    """``routellm-mmlu``: 14,042 MMLU questions (14,037 after decontamination), 57 subjects."""
    root = source_root("routellm-mmlu", source, data_dir) / "routellm"
    frames = []
    for subject in MMLU_SUBJECTS:
        path = root / "mmlu" / "responses" / f"mmlu_{subject}.csv"
        frame = _read_csv(path)
        frame["quality"] = list(_bool_columns(frame, path))
        frame["prompt_id"] = [f"mmlu-{subject}-{i}" for i in range(len(frame))]
        frame["category"] = subject
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    data, dropped = _decontaminate(data, root / "mmlu" / "contaminated_prompts.jsonl", decontaminate)
    quality = np.stack(data["quality"].to_list()) if len(data) else np.zeros((0, 2))
    tokens_in = broadcast(count_tokens(data["prompt"].tolist(), token_method), 2)
    tokens_out = np.full_like(tokens_in, MMLU_OUTPUT_TOKENS)
    prompts = pd.DataFrame(
        {
            "prompt_id": data["prompt_id"],
            "text": data["prompt"],
            "dataset": "routellm-mmlu",
            "category": data["category"],
        }
    )
    return OutcomeTable(
        name="routellm-mmlu",
        prompts=prompts,
        models=list(MODELS),
        quality=quality,
        cost=costs(MODELS, tokens_in, tokens_out, prices),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        pair=PAIR,
        meta={
            "decontaminated": dropped,
            "source": "lm-sys/RouteLLM routellm/evals/mmlu",
            "tokens_out_default": MMLU_OUTPUT_TOKENS,
        },
    )


def load_gsm8k(
    *,
    decontaminate: bool = True,
    source: str = "local",
    data_dir: str | Path | None = None,
    prices: PriceSheet | str | Path | None = None,
    token_method: str = "auto",
) -> OutcomeTable:
    """``routellm-gsm8k``: 1,319 GSM8K test questions (1,307 after decontamination) with both answers."""
    root = source_root("routellm-gsm8k", source, data_dir) / "routellm"
    path = root / "gsm8k" / "gsm8k_responses.csv"
    data = _read_csv(path)
    quality = _bool_columns(data, path)
    response_columns = [f"{model}_response" for model in MODELS]
    for column in response_columns:
        if column not in data.columns:
            raise DataError(f"{path} has no {column!r} column")
    data["prompt_id"] = [f"gsm8k-{i}" for i in range(len(data))]
    keep = np.ones(len(data), dtype=bool)
    if decontaminate:
        keep = ~data["prompt"].isin(contaminated_prompts(root / "gsm8k" / "contaminated_prompts.jsonl")).to_numpy()
    data, quality = data[keep], quality[keep]
    responses = data[response_columns].to_numpy(dtype=object)
    tokens_in = broadcast(count_tokens(data["prompt"].tolist(), token_method), 2)
    tokens_out = count_tokens(list(responses.ravel()), token_method).reshape(responses.shape)
    prompts = pd.DataFrame({"prompt_id": data["prompt_id"], "text": data["prompt"], "dataset": "routellm-gsm8k"})
    return OutcomeTable(
        name="routellm-gsm8k",
        prompts=prompts,
        models=list(MODELS),
        quality=quality,
        cost=costs(MODELS, tokens_in, tokens_out, prices),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        responses=responses,
        pair=PAIR,
        meta={"decontaminated": int((~keep).sum()), "source": "lm-sys/RouteLLM routellm/evals/gsm8k"},
    )


def _answers(user_prompt: str, turn: int) -> tuple[str | None, str | None]:
    """(turn-1 answer, turn-2 answer) recovered from a judge prompt; None where absent."""
    if turn == 1:
        match = _TURN1_ANSWER.search(user_prompt)
        return (match.group(1) if match else None), None
    match = _CONVERSATION.search(user_prompt)
    if not match:
        return None, None
    parts = match.group(1).split("\n\n### Assistant A:\n")
    if len(parts) != 3:
        return None, None
    return parts[1].split("\n\n### User:\n")[0], parts[2].rstrip("\n")


def _read_jsonl(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(require_file(path), lines=True)
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON lines: {str(exc).splitlines()[0]}") from None


def load_mtbench(
    *,
    decontaminate: bool = True,
    source: str = "local",
    data_dir: str | Path | None = None,
    prices: PriceSheet | str | Path | None = None,
    token_method: str = "auto",
    history: str | None = None,
) -> OutcomeTable:
    """``routellm-mtbench``: one row per (question, turn); quality = (judge score - 1) / 9.

    A turn-2 row's ``conversation`` is the user's two turns; with ``history=<model>`` that model's
    turn-1 answer sits between them (default none: another model's answer would leak its outcome
    into the prompt). ``tokens_in`` of a turn-2 cell counts the conversation each model actually saw:
    both questions plus its own turn-1 answer.
    """
    root = source_root("routellm-mtbench", source, data_dir) / "routellm" / "mt_bench"
    questions, judgements = _read_mtbench(root)
    if history is not None and history not in MODELS:
        raise UnknownModelError(f"unknown model {history!r} for history; known: {', '.join(MODELS)}")
    dropped = 0
    if decontaminate:
        bad = contaminated_prompts(root / "contaminated_prompts.jsonl")
        keep = questions["turns"].map(lambda turns: not any(t in bad for t in turns[:2]))
        dropped, questions = int((~keep).sum()), questions[keep]
    by_key = {(int(r.question_id), str(r.model), int(r.turn)): r for r in frame_rows(judgements)}
    rows, quality, responses, first_answers = [], [], [], []
    for q in frame_rows(questions):
        answers = _mtbench_first_answers(q, by_key, root / "judgements.jsonl")
        first_answers.append([answers[m] for m in MODELS])
        said = None if history is None else answers[history] or ""
        for turn in (1, 2):
            rows.append(_mtbench_row(q, turn, said))
            quality.append(_mtbench_quality(q, turn, by_key, root / "judgements.jsonl"))
            responses.append(
                [_answers(by_key[(int(q.question_id), m, turn)].user_prompt, turn)[turn - 1] for m in MODELS]
            )
    prompts = pd.DataFrame(
        rows, columns=["prompt_id", "text", "conversation", "dataset", "category", "question_id", "turn"]
    )
    responses_arr = np.array(responses, dtype=object).reshape(len(rows), 2)
    tokens_in, tokens_out = _mtbench_tokens(questions, responses_arr, first_answers, token_method)
    return OutcomeTable(
        name="routellm-mtbench",
        prompts=prompts,
        models=list(MODELS),
        quality=np.array(quality).reshape(-1, 2),
        cost=costs(MODELS, tokens_in, tokens_out, prices),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        responses=responses_arr,
        pair=PAIR,
        meta={
            "decontaminated": dropped,
            "decontaminated_rows": 2 * dropped,
            "source": "lm-sys/RouteLLM routellm/evals/mt_bench",
            "quality": "(GPT-4 judge score - 1) / 9",
        },
    )


def _read_mtbench(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MT-Bench's questions and GPT-4 judgements, each checked for the columns the loader reads."""
    questions = _read_jsonl(root / "question.jsonl")
    judgements = _read_jsonl(root / "judgements.jsonl")
    for frame, path, needed in (
        (questions, "question.jsonl", ("question_id", "category", "turns")),
        (judgements, "judgements.jsonl", ("question_id", "model", "score", "turn", "user_prompt")),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{root / path} has no {missing[0]!r} column")
    return questions, judgements


def _mtbench_first_answers(q: Any, by_key: dict[tuple[int, str, int], Any], path: Path) -> dict[str, str | None]:
    """Each model's turn-1 answer to question ``q`` (both of its turns must be judged)."""
    qid = int(q.question_id)
    answers = {}
    for model in MODELS:
        if (qid, model, 1) not in by_key or (qid, model, 2) not in by_key:
            raise DataError(f"{path}: no score for question {qid}, model {model!r}")
        answers[model] = _answers(by_key[(qid, model, 1)].user_prompt, 1)[0]
    return answers


def _mtbench_quality(q: Any, turn: int, by_key: dict[tuple[int, str, int], Any], path: Path) -> list[float]:
    """Each model's quality on question ``q``'s ``turn``: (judge score - 1) / 9, the score checked to be 1-10."""
    scores = [float(by_key[(int(q.question_id), m, turn)].score) for m in MODELS]
    if any(not 1 <= s <= 10 for s in scores):
        raise DataError(f"{path}: question {int(q.question_id)} turn {turn} has a score outside 1-10")
    return [(s - 1) / 9 for s in scores]


def _mtbench_row(q: Any, turn: int, history_answer: str | None) -> dict[str, Any]:
    """The prompt row of question ``q``'s ``turn``; turn 2's conversation holds ``history_answer`` if given."""
    conversation = [{"role": "user", "content": q.turns[0]}]
    if turn == 2:
        if history_answer is not None:
            conversation.append({"role": "assistant", "content": history_answer})
        conversation.append({"role": "user", "content": q.turns[1]})
    qid = int(q.question_id)
    return {
        "prompt_id": f"mtbench-{qid}-t{turn}",
        "text": q.turns[0] if turn == 1 else conversation_text(conversation),
        "conversation": conversation,
        "dataset": "routellm-mtbench",
        "category": q.category,
        "question_id": qid,
        "turn": turn,
    }


def _mtbench_tokens(
    questions: pd.DataFrame, responses: np.ndarray, first_answers: list[list[str | None]], token_method: str
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_in, tokens_out): a turn-2 cell reads both questions and that model's own turn-1 answer."""
    tokens_out = count_tokens(list(responses.ravel()), token_method).reshape(responses.shape)
    turn_tokens = count_tokens([t for q in frame_rows(questions) for t in q.turns[:2]], token_method)
    first = count_tokens([a for pair in first_answers for a in pair], token_method).reshape(-1, 2)
    tokens_in = np.zeros(responses.shape)
    if len(responses):
        tokens_in[0::2] = turn_tokens[0::2, None]
        tokens_in[1::2] = turn_tokens[0::2, None] + np.nan_to_num(first) + turn_tokens[1::2, None]
    return tokens_in, tokens_out
