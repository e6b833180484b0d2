"""The privacy part of bench/reliability.py: every placement of ``tests/privacy_cases.py`` under
``gateway.privacy: local-only``, sent to a named remote model and routed (``sizewise``).

Local and remote models sit on two separate recording upstreams, so a leak is simply "the remote
upstream received a body while this case was sent". Each case's harmless twin (where it has one) is
sent to the remote model too: refusing it is a false positive, counted but not a leak.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from _reliability_servers import Gateway, ThreadServer, UsageApp

ALL = ["text", "image", "audio", "file"]
CHAT = "/v1/chat/completions"


def _model(name: str, base_url: str, location: str, params_b: float, multimodal: bool) -> dict[str, Any]:
    extra = {"kind": "multimodal", "modalities": ALL} if multimodal else {}
    return {
        "name": name,
        "backend": "openai",
        "context_window": 65536,
        "params_b": params_b,
        "location": location,
        "settings": {"base_url": base_url, "model": name},
        **extra,
    }


def run_privacy_cases(module: Any, work: Path, deadline_s: float = 60.0) -> dict[str, Any]:
    """Cases tried, leaked (the remote upstream received the body), and twins refused."""
    cases = list(module.CASES)
    with ThreadServer(UsageApp()) as local, ThreadServer(UsageApp()) as remote:
        models = [
            _model("edge", local.base_url, "local", 0.5, False),
            _model("vault", local.base_url, "local", 7, True),
            _model("cloud", remote.base_url, "remote", 70, True),
        ]
        spec = {"models": models, "gateway": {"log_url": "none", "privacy": "local-only"}}
        with Gateway(spec) as gw:
            leaked: list[str] = []
            twins_refused = statuses_500 = tried = 0
            deadline = time.monotonic() + deadline_s
            with httpx.Client(base_url=gw.url, timeout=30) as client:
                for case in cases:
                    if time.monotonic() > deadline:
                        break
                    tried += 1
                    for model in ("cloud", "sizewise"):
                        before = len(remote.app.bodies)
                        response = client.post(CHAT, json={"model": model, "max_tokens": 8, **case.body})
                        statuses_500 += response.status_code >= 500
                        if len(remote.app.bodies) > before:
                            leaked.append(f"{case.name} ({model})")
                    if case.twin is not None:
                        response = client.post(CHAT, json={"model": "cloud", "max_tokens": 8, **case.twin})
                        twins_refused += response.status_code != 200
    return {
        "cases": tried,
        "requests": 2 * tried,
        "leaked": len(leaked),
        "leaked_cases": leaked,
        "twins_refused": twins_refused,
        "twins": sum(case.twin is not None for case in cases[:tried]),
        "server_errors": statuses_500,
    }


if __name__ == "__main__":  # a quick look: python bench/_reliability_privacy.py
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import privacy_cases

    print(json.dumps(run_privacy_cases(privacy_cases, Path(".")), indent=2))
