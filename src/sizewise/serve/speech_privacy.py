"""What leaves with audio sent to a remote speech model, judged like any outbound text under ``local-only``.

``privacy_opaque: allow`` lets audio (which no scan reads) go to remote models, but the readable parts that go
with it are still judged (docs/constraints.md): the form's fields (``prompt`` above all), the file name, and the
local transcript of the audio itself, which the gateway has read before it escalates. Any privacy rule firing
on them keeps the audio local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def _rules(texts: list[str]) -> str:
    from sizewise.policy.constraints.outbound import Outbound
    from sizewise.policy.constraints.privacy import detect

    out = Outbound()
    for text in texts:
        out.add(text)  # normalised and decoded (percent-encoding, base64 text) as the chat filter reads it
    found = detect("\n".join(out.texts), first_only=True)
    return ", ".join(sorted({finding.rule for finding in found}))


async def personal(settings: Any, texts: Iterable[str | None]) -> str:
    """The privacy rules that fire on ``texts`` (comma-separated), "" when none fire or privacy is off."""
    if settings.privacy != "local-only":
        return ""
    wanted = [text for text in texts if text]
    return await asyncio.to_thread(_rules, wanted) if wanted else ""


async def personal_request(settings: Any, request: Any) -> str:
    """The privacy rules that fire on a chat request's readable fields (every one that would leave, as the
    privacy filter reads them), "" when none fire or privacy is off: its audio then stays local too."""
    if settings.privacy != "local-only":
        return ""
    from sizewise.policy.constraints.privacy import scan_request

    return ", ".join((await asyncio.to_thread(scan_request, request)).rules)
