"""``sizewise serve`` as an operator sees it: start-up lines, the banner only once the port is bound, a taken
port as one error line, the access log (and switching it off), ``--warm`` and ``GET /readyz``.

The CLI runs in a subprocess (what is checked is what it prints and how it exits)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fakes import GatewayServer, free_port

REMOTE = """models:
  - name: far
    context_window: 4096
    backend: openai
    settings: {{base_url: "http://127.0.0.1:9/v1", model: far}}
gateway:
  log_url: none
  access_log: {access_log}
"""

BANNER = "sizewise gateway on http://"


def _catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sizewise.yaml"
    path.write_text(text)
    return path


@contextmanager
def _serve(tmp_path: Path, *args: str, wait_s: float = 60.0) -> Iterator[tuple[str, Path, Path]]:
    """Run ``sizewise serve ARGS`` until its banner is printed; yields (base URL, stdout file, stderr file)."""
    port = free_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    command = [sys.executable, "-m", "sizewise.cli.main", "serve", "--port", str(port), *args]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=tmp_path)
    try:
        deadline = time.monotonic() + wait_s
        while BANNER not in out.read_text():
            assert process.poll() is None, f"serve exited {process.returncode}: {err.read_text()}"
            assert time.monotonic() < deadline, f"no banner after {wait_s} s: {out.read_text()}{err.read_text()}"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", out, err
    finally:
        process.terminate()
        process.wait(15)


def test_a_taken_port_is_one_error_line_and_no_banner(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, REMOTE.format(access_log="true"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode != 0
    assert BANNER not in run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "Traceback" not in run.stderr


@pytest.mark.parametrize("access_log", [True, False])
def test_startup_lines_and_the_access_log_switch(tmp_path: Path, access_log: bool) -> None:
    catalog = _catalog(tmp_path, REMOTE.format(access_log=str(access_log).lower()))
    with _serve(tmp_path, "-c", str(catalog)) as (url, out, err):
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}  # no --warm: ready at once
        failed = httpx.post(f"{url}/v1/chat/completions", json={"model": "nope", "messages": []})
        time.sleep(0.5)
    printed = out.read_text()
    assert f"catalog: {catalog}" in printed
    assert "model: far (openai, local)" in printed  # a loopback upstream is local (catalog/remote.py)
    assert "default policy: sizewise (default)" in printed
    assert "the catalog's only LLM" in printed
    assert printed.index("default policy") < printed.index(BANNER)
    logged = err.read_text()
    if access_log:
        assert " GET /healthz 200 model=- policy=- " in logged
        assert f" POST /v1/chat/completions {failed.status_code} " in logged
    else:
        assert "/healthz" not in logged and "/v1/chat" not in logged
    assert "INFO" not in logged  # uvicorn's own access log stays off


def test_readyz_is_503_until_ready() -> None:
    with GatewayServer(
        {
            "models": [
                {
                    "name": "far",
                    "context_window": 4096,
                    "backend": "openai",
                    "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "far"},
                }
            ],
            "gateway": {"log_url": "none"},
        }
    ) as gateway:
        base = gateway.url.removesuffix("/v1")
        state = gateway.app.state.gateway
        state.ready = False
        answer = httpx.get(f"{base}/readyz")
        assert (answer.status_code, answer.json()) == (503, {"status": "warming"})
        assert httpx.get(f"{base}/healthz").status_code == 200  # liveness is not readiness
        state.ready = True
        assert httpx.get(f"{base}/readyz").status_code == 200


TINY_PAIR = """models:
  - name: tiny-a
    context_window: 2048
    backend: llamacpp
    settings: {embedded: tiny}
  - name: tiny-b
    context_window: 2048
    backend: llamacpp
    settings: {embedded: tiny}
gateway:
  log_url: none
"""


@pytest.mark.model
def test_warm_loads_the_local_models_before_the_banner(tmp_path: Path) -> None:
    import openai

    catalog = _catalog(tmp_path, TINY_PAIR)
    with _serve(tmp_path, "-c", str(catalog), "--warm", "--threshold", "0.4", wait_s=120) as (url, out, err):
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
        workers = httpx.get(f"{url}/healthz").json()["workers"]
        assert {name: workers[name]["pid"] is not None for name in ("tiny-a", "tiny-b")} == {
            "tiny-a": True,
            "tiny-b": True,
        }  # loaded before any request
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x")
        answer = client.chat.completions.create(
            model="sizewise", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        stream = client.chat.completions.create(
            model="tiny-b", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
        )
        assert [chunk for chunk in stream]  # the stream's line is written once its last byte is sent
        time.sleep(0.5)
    printed, logged = out.read_text(), err.read_text()
    assert "threshold: 0.4 (--threshold)" in printed
    assert "(built-in default)" in printed or "heuristic scorer" in printed
    assert "warming: tiny-a loaded" in logged and "warming: tiny-b loaded" in logged
    assert f" POST /v1/chat/completions 200 model={answer.model} policy=sizewise " in logged
    assert " POST /v1/chat/completions 200 model=tiny-b policy=tiny-b " in logged


@pytest.mark.model
def test_warm_loads_the_image_and_speech_models_too(tmp_path: Path) -> None:
    """They have no chat to answer one token with: loading them is the warm-up (Whisper used to wait for a clip)."""
    import yaml

    from sizewise.catalog import load_catalog

    default = load_catalog(None)
    models = [default.get(name).model_dump(mode="json") for name in ("whisper-tiny.en", "efficientnet-lite0")]
    models += yaml.safe_load(TINY_PAIR)["models"]  # routing needs two chat models
    catalog = tmp_path / "modal.yaml"
    catalog.write_text(yaml.safe_dump({"models": models, "gateway": {"log_url": "none"}}))
    with _serve(tmp_path, "-c", str(catalog), "--warm", wait_s=120) as (url, _out, err):
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
        workers = httpx.get(f"{url}/healthz").json()["workers"]
    assert workers["whisper-tiny.en"] == {"kind": "speech", "loaded": True, "loads": 1}  # before any clip
    logged = err.read_text()
    assert "warming: whisper-tiny.en loaded" in logged and "warming: efficientnet-lite0 loaded" in logged


def test_a_model_that_cannot_load_stops_warm_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_text("not a gguf")
    catalog = _catalog(
        tmp_path,
        "models:\n  - name: bad\n    context_window: 2048\n    backend: llamacpp\n"
        "    settings: {path: bad.gguf}\ngateway:\n  log_url: none\n",
    )
    run = subprocess.run(
        [sys.executable, "-m", "sizewise.cli.main", "serve", "-c", str(catalog), "--warm", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and BANNER not in run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "warm-up failed" in errors[0] and "bad.gguf" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
