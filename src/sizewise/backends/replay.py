"""Answers recorded in an outcome table, matched by prompt text: for tests and offline evaluation.

A request matches a table row when its text equals the row's ``text`` in one of three forms: the whole
conversation as :func:`~sizewise.core.text.conversation_text` writes it, the last user message, or every
message's text joined by newlines. Recorded tokens and latency are reported as they were measured.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sizewise.backends.base import Backend
from sizewise.core.chat import BackendError, ChatChunk, ChatRequest, ChatResult
from sizewise.core.text import content_text, conversation_text

if TYPE_CHECKING:
    from sizewise.core.table import OutcomeTable


def request_keys(messages: list[dict[str, Any]]) -> list[str]:
    """The texts a request may be recorded under, most specific first."""
    keys = [conversation_text(messages)]
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    if users:
        keys.append(users[-1])
    keys.append("\n".join(content_text(m.get("content")) for m in messages))
    return [key.strip() for key in keys]


def _number(array: Any, row: int, col: int) -> float:
    if array is None:
        return 0.0
    value = float(array[row, col])
    return 0.0 if math.isnan(value) else value


class ReplayBackend(Backend):
    """Replays column ``model`` of an :class:`OutcomeTable` (a table object or a file for ``OutcomeTable.load``)."""

    def __init__(self, table: OutcomeTable | str | Path, *, model: str, name: str | None = None) -> None:
        from sizewise.core.table import OutcomeTable  # pandas: only when a replay backend is built
        from sizewise.errors import DataError

        if not isinstance(table, OutcomeTable) and Path(table).expanduser().is_dir():
            raise DataError(f"replay table {table} is a folder, not a table file")
        self.table = table if isinstance(table, OutcomeTable) else OutcomeTable.load(table)
        self.model = name or model
        self._column = self.table.index_of(model)  # UnknownModelError names the table's models
        if self.table.responses is None:
            raise BackendError(f"table {self.table.name!r} has no recorded responses to replay", retryable=False)
        self._rows: dict[str, int] = {}
        for row, text in enumerate(self.table.texts):
            self._rows.setdefault(str(text).strip(), row)

    def _lookup(self, request: ChatRequest) -> ChatResult:
        for key in request_keys(request.messages):
            row = self._rows.get(key)
            if row is None:
                continue
            assert self.table.responses is not None
            text = self.table.responses[row, self._column]
            if text is None or (isinstance(text, float) and math.isnan(text)):
                break
            return ChatResult(
                model=self.model,
                text=str(text),
                prompt_tokens=int(_number(self.table.tokens_in, row, self._column)),
                completion_tokens=int(_number(self.table.tokens_out, row, self._column)),
                latency_s=_number(self.table.latency, row, self._column),
            )
        raise BackendError(
            f"{self.model}: no recorded answer for this prompt in table {self.table.name!r}",
            retryable=False,
            status=404,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The recorded answer; BackendError(retryable=False) when the prompt was not recorded."""
        return self._lookup(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The recorded answer in word-sized pieces, then a final chunk with the usage."""
        result = self._lookup(request)
        words = result.text.split(" ")
        for index, word in enumerate(words):
            yield ChatChunk(text=word if index == 0 else " " + word)
        yield ChatChunk(
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )
