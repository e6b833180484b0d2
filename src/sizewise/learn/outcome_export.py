"""The gateway's judged traffic as an outcome table: one row per judged request and model.

Rows follow the generic long format of :mod:`sizewise.core.tablefile` (``prompt_id, text, model, quality,
cost, tokens_in, tokens_out, latency`` plus per-prompt tags), so ``sizewise eval/train/calibrate/choose
--table`` read the file as they read any outcome log. ``quality`` is the mean over sources of each
source's latest score for that model (a pairwise verdict counts as the score it gave that model).

The served model's row carries the logged cost, tokens and latency; the always-big model's row, when it
did not serve, the always-big cost the log computed for the same tokens; another model's row the
``cost``/``tokens_out``/``latency`` its judge recorded in ``detail``, if any (else the loader prices it
from the price sheet). A request logged without its text (``log_text`` off) gets a placeholder ``text``
and its kept prompt vector in ``features`` (with ``embedding``, the embedder's id). A request that shadow
judging sampled carries ``inclusion_p``, its chance of being picked, so estimates can weight by ``1 / p``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sizewise.learn.outcomes import Outcome

#: Prompt text of a request logged without it (the loader needs a non-empty text).
PLACEHOLDER = "[prompt not logged] sha256:{hash}"


def model_scores(outcomes: Iterable[Outcome]) -> dict[str, tuple[float, list[str]]]:
    """``model -> (quality, sources)`` for one request's outcomes (latest per source and rival, then the mean)."""
    latest: dict[tuple[str, str, str | None], Outcome] = {}
    for outcome in sorted(outcomes, key=lambda o: o.time):
        latest[(outcome.model, outcome.source, outcome.other_model)] = outcome
    by_model: dict[str, list[Outcome]] = {}
    for (model, _, _), outcome in latest.items():
        by_model.setdefault(model, []).append(outcome)
    return {
        model: (sum(o.score for o in kept) / len(kept), sorted({o.source for o in kept}))
        for model, kept in by_model.items()
    }


def _measured(model: str, request: dict[str, Any], big: str | None, judged: list[Outcome]) -> dict[str, Any]:
    """Cost, tokens and latency known for ``model``'s answer to ``request``."""
    if model == request["model"]:
        latency = request.get("latency_ms")
        return {
            "cost": request.get("cost"),
            "tokens_in": request.get("prompt_tokens"),
            "tokens_out": request.get("completion_tokens"),
            "latency": latency / 1000 if latency is not None else None,
        }
    found: dict[str, Any] = {"cost": request.get("big_cost")} if model == big else {}
    for outcome in judged:
        if outcome.model == model:
            found.update({k: outcome.detail[k] for k in ("cost", "tokens_out", "latency") if k in outcome.detail})
    return found


def export_rows(
    requests: Sequence[dict[str, Any]],
    outcomes: Iterable[Outcome],
    features: dict[str, tuple[str, list[float]]],
    *,
    big: str | None = None,
    require_text: bool = False,
) -> list[dict[str, Any]]:
    """The table rows of the judged, answered ``requests`` (request-log rows), oldest first."""
    by_request: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_request.setdefault(outcome.request_id, []).append(outcome)
    rows: list[dict[str, Any]] = []
    for request in requests:
        judged = by_request.get(request["request_id"])
        if not judged or request.get("status") is None or request["status"] >= 400 or not request.get("model"):
            continue
        text = request.get("prompt_text")
        if not text and require_text:
            continue
        judged_by = ",".join(sorted({o.source for o in judged}))
        tags: dict[str, Any] = {"served_by": request["model"], "judged_by": judged_by, "time": request["time"]}
        sampled = [o.detail["inclusion_p"] for o in judged if isinstance(o.detail.get("inclusion_p"), int | float)]
        if sampled:  # shadow judging's chance of picking this request: ``router retrain`` weights by 1 / p
            tags["inclusion_p"] = float(sampled[0])
        if not text:
            text = PLACEHOLDER.format(hash=request["prompt_hash"])
            if request["request_id"] in features:
                tags["embedding"], tags["features"] = features[request["request_id"]]
        for model, (quality, _) in model_scores(judged).items():
            measured = {k: v for k, v in _measured(model, request, big, judged).items() if v is not None}
            row = {"prompt_id": request["request_id"], "text": text, "model": model, "quality": quality}
            rows.append({**row, **measured, **tags})
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as JSON lines (the loader's ``.jsonl`` format)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")  # ASCII: a lone surrogate in a prompt stays writable
    return path
