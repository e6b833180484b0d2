"""Local models run in worker processes: a portable build, a crash that costs one call, a restart, a self-check."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.backends.base import BackendError, ChatRequest
from sizewise.backends.factory import make_backend
from sizewise.catalog import load_catalog

pytestmark = [pytest.mark.model, pytest.mark.slow]

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a lighthouse."}]


def _features() -> dict[str, str]:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return dict(re.findall(r"([A-Z0-9_]+) = (\d+)", info))


def test_installed_llama_cpp_is_built_portable() -> None:
    # A native build on a CPU with AVX-512 or AMX compiles them in; such a wheel dies with SIGILL elsewhere.
    features = _features()
    assert features, "llama_print_system_info() listed no CPU features"
    unportable = sorted(name for name, on in features.items() if on == "1" and re.match(r"AVX512|AMX|AVX_VNNI", name))
    assert not unportable, f"llama.cpp was built with {unportable}: not the portable build of the Makefile"
    if platform.machine() == "x86_64":  # the x86-64-v3 level the Makefile asks for
        assert {name for name in ("AVX", "AVX2", "FMA", "F16C") if features.get(name) == "1"} == {
            "AVX",
            "AVX2",
            "FMA",
            "F16C",
        }


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def tiny() -> Any:
    catalog = load_catalog(None)
    return make_backend(catalog.get("smollm2-135m"), catalog)


def test_worker_killed_mid_call_fails_that_call_and_the_next_call_restarts_it(tiny: Any) -> None:
    process = tiny.process()
    tiny.load()
    starts, crashes = process.starts, process.crashes
    assert process.pid in _children(os.getpid())  # the model runs in a child process, not in this one

    async def run() -> Any:
        call = asyncio.create_task(tiny.complete(ChatRequest(messages=STORY, max_tokens=400, temperature=0)))
        await asyncio.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(BackendError, match="worker killed by SIGKILL") as info:
            await call
        assert not info.value.retryable  # the engine moves on to the next model rather than retrying this one
        return await tiny.complete(ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4))

    after = asyncio.run(run())
    assert after.text and after.completion_tokens > 0
    assert (process.starts, process.crashes) == (starts + 1, crashes + 1)
    assert process.state()["last_exit"] == "killed by SIGKILL (Killed)"


def test_verify_generate_reports_a_crashing_build_in_one_line(tmp_path: Path) -> None:
    # SIGILL is what a build with instructions this CPU lacks dies of; here it is sent to the worker as it loads.
    command = [sys.executable, "-m", "sizewise.cli.main", "models", "verify", "tiny", "--generate"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    killed = False
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        for child in _children(proc.pid):
            os.kill(child, signal.SIGILL)
            killed = True
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    assert killed, f"no worker process was seen: {out} {err}"
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "smollm2-135m" in lines[0] and "SIGILL" in lines[0] and "make setup" in lines[0]


# -- through the gateway -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with FakeUpstream() as upstream:
        local = {
            "name": "tiny",
            "backend": "llamacpp",
            "context_window": 2048,
            "params_b": 0.135,
            "location": "local",
            "settings": {"embedded": "tiny"},
        }
        models = [local, fake_model("cloud", "ok-cloud", 8.0, upstream.base_url)]
        log = Path(tmp_path_factory.mktemp("log")) / "log.sqlite"
        gateway = {"log_url": f"sqlite:///{log}", "fallback_for_named_models": True}  # requests name "tiny"
        with GatewayServer({"models": models, "gateway": gateway}) as gw:
            yield gw


def _worker(gateway: GatewayServer) -> dict[str, Any]:
    health = httpx.get(gateway.url.removesuffix("/v1") + "/healthz").json()
    assert health["status"] == "ok"
    return health["workers"]["tiny"]


def test_gateway_answers_from_another_model_when_a_worker_dies(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=60)
    warm = client.chat.completions.with_raw_response.create(model="tiny", messages=STORY, max_tokens=2)
    assert warm.headers["x-sizewise-model"] == "tiny"
    pid = _worker(gateway)["pid"]
    assert pid in _children(os.getpid())

    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.update(
            raw=client.chat.completions.with_raw_response.create(model="tiny", messages=STORY, max_tokens=400)
        )
    )
    thread.start()
    time.sleep(0.7)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    raw = box["raw"]
    answer = raw.parse()
    assert raw.headers["x-sizewise-model"] == "cloud" and raw.headers["x-sizewise-fallback"] == "tiny"
    assert answer.choices[0].message.content.startswith("echo: Write")
    row = next(r for r in gateway.rows() if r["request_id"] == raw.headers["x-request-id"])
    assert row["status"] == 200 and row["model"] == "cloud" and row["fallback_from"] == "tiny"
    assert any("SIGKILL" in error for error in json.loads(row["errors"]))

    # Healthy, and the local model answers again from a new worker.
    again = client.chat.completions.with_raw_response.create(model="tiny", messages=STORY, max_tokens=4)
    assert again.headers["x-sizewise-model"] == "tiny"
    worker = _worker(gateway)
    assert worker["pid"] not in (None, pid) and worker["crashes"] >= 1


PARENT = """
import asyncio
from sizewise.backends.base import ChatRequest
from sizewise.backends.factory import make_backend
from sizewise.catalog import load_catalog

catalog = load_catalog(None)
backend = make_backend(catalog.get("smollm2-135m"), catalog)
backend.load()
print(backend.process().pid, flush=True)
story = [{"role": "user", "content": "Write a very long story about a dragon and a lighthouse."}]
asyncio.run(backend.complete(ChatRequest(messages=story, max_tokens=4000)))
"""


def test_a_worker_stops_generating_when_its_parent_is_killed() -> None:
    """A gateway or collect run killed with -9 leaves no worker generating on: it used to finish the call first
    (thousands of tokens on a busy machine) before it noticed the parent was gone."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        time.sleep(2.0)  # the call is being generated
        assert Path(f"/proc/{worker}").exists()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5.0
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = Path(f"/proc/{worker}").exists() and "Z" not in Path(f"/proc/{worker}/stat").read_text().split()[2]
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker went on generating after its parent was killed"
