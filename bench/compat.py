"""The compatibility table: every OpenAI chat-completions field through sizewise and through LiteLLM's proxy.

Each row of :mod:`_compat_cases` is sent (raw JSON over httpx, so nothing is cleaned up by a client) to:

* ``sizewise -> upstream``: a sizewise gateway naming a catalog model served by a recording upstream
  (:mod:`_compat_upstream`); judged on the body the upstream received and on the answer the client got;
* ``LiteLLM -> upstream``: LiteLLM's proxy (``/tmp/litellm-venv``, default settings) on the same upstream,
  in the same run; without it, that column is read from the last ``docs/results/compat.json``;
* ``sizewise -> local``: the same gateway naming the embedded tiny GGUF model (rows marked ``local``).

Outcomes: ``passed`` (sent verbatim, its effect came back), ``honoured`` (a local model did what it asks),
``accepted`` (200, no effect to check), ``changed`` / ``dropped`` (not sent as given), ``lost`` (sent, but the
answer lost its effect), ``ignored`` (a local model did not do it; ``cut`` if it hit max_tokens first),
``rejected`` (4xx), ``error`` (5xx).
Writes ``docs/results/compat.json``, the table in docs/gateway.md and a section of docs/results.md.

Usage: ``nice -n 10 .venv/bin/python bench/compat.py [--no-local] [--no-docs]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _compat_cases import CASES, Case, merge  # noqa: E402
from _compat_messages import MESSAGES_CASES, messages_column  # noqa: E402
from _compat_upstream import RecordingUpstream  # noqa: E402
from _loadgen import MASTER_KEY  # noqa: E402
from _results import update_section, write_json  # noqa: E402
from _serve import serve_in_thread  # noqa: E402
from fake_upstream import free_port  # noqa: E402
from gateway import _start, _wait  # noqa: E402

ROOT = BENCH.parent
SPEC = ROOT / "docs" / "results" / "compat.json"
GATEWAY_DOC = ROOT / "docs" / "gateway.md"
LITELLM = "/tmp/litellm-venv/bin/litellm"
COLUMNS = {"sizewise": "sizewise -> upstream", "litellm": "LiteLLM proxy -> upstream", "local": "sizewise -> local"}
GOOD = {"passed", "honoured"}
PROMPT = [{"role": "user", "content": "What is the weather in Paris?"}]


def request(case: Case, model: str, local: bool) -> dict[str, Any]:
    """The case's body: a plain request (greedy, and the case's max_tokens, on a local model) with its patch."""
    base: dict[str, Any] = {"model": model, "messages": PROMPT, "max_tokens": case.local if local else 16}
    if local:
        base["temperature"] = 0
    body = {**base, **case.patch}
    if "max_completion_tokens" in case.patch:
        del body["max_tokens"]
    return body


def send(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """(status, merged answer) or (status, error message); a stream's ``data:`` events are merged."""
    with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        raw = response.read()
    if response.status_code >= 400:
        try:
            error = json.loads(raw)["error"]
            message = error["message"] if isinstance(error, dict) else str(error)
        except (ValueError, KeyError, TypeError):
            message = raw.decode(errors="replace")
        return response.status_code, " ".join(str(message).split())
    if not body.get("stream"):
        return response.status_code, merge(json.loads(raw))
    lines = raw.decode().splitlines()
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip() != "[DONE]"]
    return response.status_code, merge([e for e in events if "error" not in e] or [{}])


def _same(sent: Any, given: Any) -> bool:
    """Equal up to null fields left out (``content: null`` on a tool-call turn may be omitted)."""
    if isinstance(given, dict) and isinstance(sent, dict):
        keys = {k for k, v in given.items() if v is not None} | {k for k, v in sent.items() if v is not None}
        return all(_same(sent.get(k), given.get(k)) for k in keys)
    if isinstance(given, list) and isinstance(sent, list):
        return len(sent) == len(given) and all(_same(s, g) for s, g in zip(sent, given, strict=True))
    return bool(sent == given)


def judge_sent(case: Case, body: dict[str, Any] | None) -> dict[str, str] | None:
    """What went wrong between the client's field and the upstream's body (None: it arrived verbatim)."""
    if body is None:
        return {"kind": "error", "note": "never reached the upstream"}
    for key, value in case.patch.items():
        if key in ("stream", *case.not_sent):
            continue
        if key not in body:
            if key == "max_completion_tokens" and "max_tokens" in body:
                return {"kind": "changed", "note": "sent as max_tokens"}
            return {"kind": "dropped", "note": ""}
        if not _same(body[key], value):
            return {"kind": "changed", "note": f"sent {json.dumps(body[key])[:40]}"}
    return None


def judge(case: Case, status: int, answer: Any, body: dict[str, Any] | None, local: bool) -> dict[str, str]:
    """One cell: the outcome kind and a short note."""
    if status >= 400:
        return {"kind": "rejected" if status < 500 else "error", "note": f"{status}: {str(answer)[:90]}"}
    if not local and (wrong := judge_sent(case, body)):
        return wrong
    if case.answer is None:
        return {"kind": "accepted" if local else "passed", "note": ""}
    missing = case.answer(answer)
    if missing is None:
        return {"kind": "honoured" if local else "passed", "note": ""}
    if local and any(c.get("finish_reason") == "length" for c in answer.get("choices", [])):
        # Ran out of max_tokens before the effect could show: not proof that the field was ignored.
        return {"kind": "cut", "note": missing.replace(" (cut at max_tokens)", "")}
    return {"kind": "ignored" if local else "lost", "note": missing}


def column(
    url: str, model: str, up: RecordingUpstream | None, local: bool = False, verbose: bool = False
) -> dict[str, dict[str, Any]]:
    """Send every case (the ``local`` ones only, on a local model) and judge each."""
    cells: dict[str, dict[str, Any]] = {}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(timeout=120, headers=headers) as client:
        for case in CASES:
            if local and not case.local:
                continue
            seen = len(up.bodies) if up else 0
            started = time.perf_counter()
            try:
                status, answer = send(client, url, request(case, model, local))
            except httpx.TimeoutException:
                status, answer = 599, f"no answer in {client.timeout.read:.0f} s"
            if verbose:
                print(f"{model}: {case.name}: {status} in {time.perf_counter() - started:.2f} s", file=sys.stderr)
            body = up.bodies[-1] if up and len(up.bodies) > seen else None
            cells[case.name] = judge(case, status, answer, body, local)
    return cells


def catalog(upstream: str, local: bool, log: Path) -> dict[str, Any]:
    """A gateway on the recording upstream (model ``cloud``) and, with ``local``, the embedded tiny model."""
    cloud = {
        "name": "cloud",
        "backend": "openai",
        "location": "remote",
        "context_window": 32768,
        "params_b": 70,
        "price_in": 1.0,
        "price_out": 2.0,
        "settings": {"base_url": upstream, "model": "rec-cloud", "timeout_s": 30},
        # An OpenAI reasoning model: everything the chat API offers.
        "capabilities": ["tools", "json_object", "json_schema", "logprobs", "reasoning"],
        "modalities": ["text", "image"],
    }
    models = [cloud]
    if local:
        from sizewise.catalog import load_catalog

        models.append(load_catalog(None).get("smollm2-135m").model_dump())
    return {"models": models, "gateway": {"log_url": f"sqlite:///{log}"}}


@contextlib.contextmanager
def litellm_proxy(upstream: str, executable: str = LITELLM) -> Iterator[str | None]:
    """LiteLLM's proxy (default settings, model ``cloud`` on ``upstream``): its base URL, or None if absent."""
    if not Path(executable).exists():
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="sizewise-compat-"))
    config = workdir / "litellm.yaml"
    params = {"model": "openai/rec-cloud", "api_base": upstream, "api_key": "fake"}
    config.write_text(json.dumps({"model_list": [{"model_name": "cloud", "litellm_params": params}]}))
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "DISABLE_SCHEMA_UPDATE": "True",
        # Its /v1/messages would otherwise call an OpenAI upstream's Responses API, which chat-only
        # servers (vLLM, Ollama, llama-server, this recording upstream) do not all serve.
        "LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES": "True",
    }
    port = free_port()
    cmd = [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = _start(cmd, env=env, log=workdir / "litellm.log")
    try:
        _wait(f"http://127.0.0.1:{port}/health/liveliness", proc, 180)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def litellm_version(executable: str = LITELLM) -> str:
    python = Path(executable).with_name("python")
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"


def run(local: bool = True, executable: str = LITELLM, verbose: bool = False) -> dict[str, Any]:
    """Every column in one run; the LiteLLM column from the last spec file when its venv is missing."""
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    table: dict[str, Any] = {"cases": [case.name for case in CASES]}
    with RecordingUpstream() as up:
        log = Path(tempfile.mkdtemp(prefix="sizewise-compat-")) / "log.sqlite"
        app = create_app(CatalogSpec.model_validate(catalog(up.base_url, local, log)))
        with serve_in_thread(app) as base:
            table["sizewise"] = column(f"{base}/v1", "cloud", up, verbose=verbose)
            table["messages"] = {"sizewise": messages_column(base, "cloud", up)}
            if local:
                table["local"] = column(f"{base}/v1", "smollm2-135m", None, local=True, verbose=verbose)
        with litellm_proxy(up.base_url, executable) as url:
            if url:
                table["litellm"] = column(url, "cloud", up, verbose=verbose)
                table["messages"]["litellm"] = messages_column(url.removesuffix("/v1"), "cloud", up)
                table["litellm_source"] = f"LiteLLM {litellm_version(executable)}, in this run"
    if "litellm" not in table and SPEC.exists():
        last = json.loads(SPEC.read_text())
        table["litellm"] = last.get("litellm", {})
        table["messages"]["litellm"] = last.get("messages", {}).get("litellm", {})
        source = last.get("litellm_source", "LiteLLM").split("; copied from")[0].replace(", in this run", "")
        table["litellm_source"] = f"{source}; copied from the last run (LiteLLM is not installed here)"
    return table


def regressions(previous: dict[str, Any], table: dict[str, Any]) -> list[str]:
    """Cells that were passed or honoured in ``previous`` and are not now (the table is the spec)."""
    lost = []
    pairs = [(COLUMNS[c], previous.get(c, {}), table.get(c)) for c in ("sizewise", "local")]
    pairs.append(("/v1/messages: sizewise", previous.get("messages", {}).get("sizewise", {}), _messages(table)))
    for label, before, now_column in pairs:
        for name, cell in before.items():
            now = (now_column or {}).get(name)
            if cell["kind"] in GOOD and now is not None and now["kind"] not in GOOD:
                lost.append(f"{label} / {name}: was {cell['kind']}, now {now['kind']} {now['note']}".strip())
            elif cell["kind"] in GOOD and now is None and now_column is not None:
                lost.append(f"{label} / {name}: was {cell['kind']}, the row is gone")
    return lost


def _messages(table: dict[str, Any]) -> dict[str, Any] | None:
    return table.get("messages", {}).get("sizewise")


def _cell(cell: dict[str, str] | None) -> str:
    if cell is None:
        return ""
    note = cell["note"].replace("|", "/")
    return f"{cell['kind']}: {note}" if note else cell["kind"]


def markdown(table: dict[str, Any]) -> str:
    """The table as GitHub markdown, with its legend."""
    cols = [c for c in COLUMNS if c in table]
    lines = ["| field | " + " | ".join(COLUMNS[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in table["cases"]:
        lines.append(f"| {name} | " + " | ".join(_cell(table[c].get(name)) for c in cols) + " |")
    summary = "; ".join(f"{COLUMNS[c]}: {_counts(table[c])}" for c in cols)
    legend = (
        "passed: sent upstream verbatim and its effect came back; honoured: the local model did what the field asks; "
        "accepted: 200, no effect checked; changed / dropped: not sent as given; lost: sent, but the answer lost its "
        "effect; ignored: the local model did not do it; cut: the local answer hit max_tokens before the effect "
        "showed; rejected: 4xx (message shown); error: 5xx."
    )
    source = table.get("litellm_source", "LiteLLM not run")
    lines += ["", f"Out of the rows each column was sent: {summary}. LiteLLM: {source}.", "", legend, ""]
    return "\n".join([*lines, *_messages_markdown(table.get("messages", {}))]).rstrip()


def _messages_markdown(columns: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    """Anthropic's /v1/messages rows (Claude Code's requests) on the same upstream."""
    if not columns:
        return []
    cols = [c for c in ("sizewise", "litellm") if c in columns]
    lines = [
        "Anthropic `POST /v1/messages`, as Claude Code sends it (cached system blocks, tools, tool results), "
        "translated to the same OpenAI-compatible upstream (`bench/_compat_messages.py`; LiteLLM with "
        "`LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES=True`, as it otherwise calls the upstream's "
        "Responses API, which chat-only servers do not all serve):",
        "",
        "| Messages field | " + " | ".join(COLUMNS[c] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for case in MESSAGES_CASES:
        lines.append(f"| {case.name} | " + " | ".join(_cell(columns[c].get(case.name)) for c in cols) + " |")
    return lines


def _counts(cells: dict[str, dict[str, str]]) -> str:
    """``39 passed, 1 dropped`` for one column, most frequent kind first."""
    kinds = Counter(cell["kind"] for cell in cells.values())
    return ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())


def write(table: dict[str, Any]) -> None:
    """docs/results/compat.json (the spec), the table in docs/gateway.md, and docs/results.md's section."""
    write_json(SPEC, table)
    text = GATEWAY_DOC.read_text()
    block = f"<!-- compat:table -->\n{markdown(table)}\n<!-- /compat:table -->"
    pattern = re.compile(r"<!-- compat:table -->.*?<!-- /compat:table -->", re.S)
    if not pattern.search(text):
        raise RuntimeError("docs/gateway.md has no <!-- compat:table --> markers")
    GATEWAY_DOC.write_text(pattern.sub(lambda _: block, text))
    cols = [c for c in COLUMNS if c in table]
    body = "; ".join(f"{COLUMNS[c]}: {_counts(table[c])}" for c in cols)
    messages = table.get("messages", {})
    if messages:
        body += ". Anthropic /v1/messages: " + "; ".join(f"{COLUMNS[c]}: {_counts(v)}" for c, v in messages.items())
    body += f" ({table.get('litellm_source', 'LiteLLM not run')}). The table, field by field: docs/gateway.md."
    command = "nice -n 10 .venv/bin/python bench/compat.py (or .venv/bin/pytest tests/test_compat_table.py)"
    update_section("compat", "OpenAI chat fields: sizewise vs LiteLLM's proxy", command, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-local", action="store_true", help="skip the local tiny model column")
    parser.add_argument("--litellm", default=LITELLM, help="litellm executable")
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    previous = json.loads(SPEC.read_text()) if SPEC.exists() else {}
    table = run(local=not args.no_local, executable=args.litellm, verbose=True)
    print(markdown(table))
    lost = regressions(previous, table)
    for line in lost:
        print(f"REGRESSION: {line}")
    if not args.no_docs:
        write(table)
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
