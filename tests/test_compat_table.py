"""The compatibility table in docs/gateway.md is generated here, and it is the spec.

Every OpenAI chat-completions field (and each Anthropic Messages field, on /v1/messages) goes through a real
sizewise gateway to a recording upstream, through LiteLLM's proxy on the same upstream (when
``/tmp/litellm-venv`` exists; otherwise its column is copied from the last run) and to the embedded tiny
model (``bench/compat.py``). A field that passed or was
honoured in ``docs/results/compat.json`` and does not now fails the test; otherwise, when anything changed,
the table, the spec file and docs/results.md's section are rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fakes  # noqa: F401 - puts bench/ on sys.path

# isort: split
import compat
from _compat_cases import CASES, merge
from _compat_messages import MESSAGES_CASES
from compat import COLUMNS, SPEC, judge, markdown, regressions, run, write

BY_NAME = {case.name: case for case in CASES}


def test_a_field_missing_upstream_is_dropped_and_a_renamed_one_changed() -> None:
    case = BY_NAME["max_completion_tokens"]
    renamed = {"model": "rec-cloud", "max_tokens": 3}
    assert judge(case, 200, merge({"choices": []}), renamed, local=False) == {
        "kind": "changed",
        "note": "sent as max_tokens",
    }
    user = BY_NAME["user"]
    assert judge(user, 200, merge({"choices": []}), {"model": "rec-cloud"}, local=False)["kind"] == "dropped"
    assert judge(user, 200, merge({"choices": []}), {"user": "user-42"}, local=False)["kind"] == "passed"
    assert judge(user, 400, "no such field", None, local=False) == {"kind": "rejected", "note": "400: no such field"}


def test_a_stream_of_tool_call_deltas_is_joined_as_a_client_joins_it() -> None:
    base = {"id": "chatcmpl-rec-1", "system_fingerprint": "fp_x"}
    call = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {
            **base,
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]}}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    answer = merge(chunks)
    assert answer["choices"][0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": 1}'}
    assert answer["id"] == "chatcmpl-rec-1" and answer["system_fingerprint"] == "fp_x"
    assert BY_NAME["tools (stream)"].answer(answer) is None  # type: ignore[misc]


def test_a_field_that_passed_before_and_no_longer_does_is_a_regression() -> None:
    before = {"sizewise": {"user": {"kind": "passed", "note": ""}, "seed": {"kind": "dropped", "note": ""}}}
    now = {"sizewise": {"user": {"kind": "dropped", "note": ""}, "seed": {"kind": "passed", "note": ""}}}
    assert regressions(before, now) == ["sizewise -> upstream / user: was passed, now dropped"]
    assert regressions(now, before) == ["sizewise -> upstream / seed: was passed, now dropped"]


def test_without_litellm_its_column_is_copied_from_the_last_run_and_no_upstream_field_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = json.loads(SPEC.read_text()) if SPEC.exists() else {}
    last = tmp_path / "compat.json"
    last.write_text(json.dumps({"litellm": {"user": {"kind": "dropped", "note": ""}}, "litellm_source": "LiteLLM 9.9"}))
    monkeypatch.setattr(compat, "SPEC", last)
    table = compat.run(local=False, executable=str(tmp_path / "no-litellm"))
    assert table["litellm"] == {"user": {"kind": "dropped", "note": ""}}
    assert table["litellm_source"] == "LiteLLM 9.9; copied from the last run (LiteLLM is not installed here)"
    assert "local" not in table and set(table["sizewise"]) == {case.name for case in CASES}
    assert set(table["messages"]["sizewise"]) == {case.name for case in MESSAGES_CASES}
    lost = regressions({"sizewise": spec.get("sizewise", {}), "messages": spec.get("messages", {})}, table)
    assert not lost, "fields that passed before and no longer do:\n" + "\n".join(lost)


@pytest.mark.model
@pytest.mark.slow
def test_the_compatibility_table_keeps_every_field_that_passed() -> None:
    previous = json.loads(SPEC.read_text()) if SPEC.exists() else {}
    table: dict[str, Any] = run(local=True)
    print(markdown(table))
    assert set(table["sizewise"]) == {case.name for case in CASES}
    assert set(table["local"]) == {case.name for case in CASES if case.local}
    assert "litellm" in table, "no LiteLLM column: neither /tmp/litellm-venv nor a previous docs/results/compat.json"
    # A 5xx from sizewise is a bug whatever the field (bad input is a 4xx); LiteLLM's are its own business.
    errors = [
        f"{COLUMNS[c]} / {n}: {v['note']}"
        for c in ("sizewise", "local")
        for n, v in table[c].items()
        if v["kind"] == "error"
    ]
    assert not errors, errors
    lost = regressions(previous, table)
    assert not lost, "fields that passed before and no longer do:\n" + "\n".join(lost)
    if json.loads(json.dumps(table)) != previous:  # unchanged: leave the docs (and their date line) alone
        write(table)
