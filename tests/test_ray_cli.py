"""Ray from the command line: ``sizewise serve --ray`` as a user runs it (its own local cluster), the one-line
errors of Ray's options without ``--ray``, and the single-machine path that never imports Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeUpstream, fake_model, free_port

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def test_the_single_machine_path_imports_no_ray() -> None:
    """serve, collect and eval without --ray (and the gateway app) never load Ray."""
    code = (
        "import sys\nimport sizewise.cli.main, sizewise.cli.serve_cmd, sizewise.cli.collect_cmd\n"
        "import sizewise.cli.eval_cmd\n"
        "import sizewise.evaluation.harness\nfrom sizewise.gateway.app import create_app\n"
        "from sizewise.catalog import load_catalog\ncreate_app(load_catalog(None), log_url='none')\n"
        "print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_ray_options_without_ray_are_one_line_errors(run_cli: Any) -> None:
    code, _, err = run_cli("serve", "--replicas", "2")
    assert code == 2 and "add --ray" in err and "Traceback" not in err
    code, _, err = run_cli("serve", "--ray", "--replicas", "0")
    assert code == 2 and "--replicas must be at least 1" in err


# -- last: the command as a user runs it, on its own cluster -------------------------------------------


@pytest.mark.slow
def test_the_serve_ray_command_answers_the_readme_request(upstream: FakeUpstream, tmp_path: Path) -> None:
    """``sizewise serve --ray --replicas 2`` as a user runs it: its own local cluster, the banner, an answer."""
    import yaml
    from openai import OpenAI

    from ray_helpers import serving_on_ray

    models = [fake_model("small", "ok-small", 1, upstream.base_url), fake_model("big", "ok-big", 8, upstream.base_url)]
    config = tmp_path / "sizewise.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    port, out = free_port(), tmp_path / "out.txt"
    with serving_on_ray(port, ["--replicas", "2", "-c", str(config), "--log-url", "none"], out):
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="sizewise", messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=32
        )
        assert raw.headers["x-sizewise-model"] in ("small", "big")
        assert raw.parse().choices[0].message.content == "echo: What is 2+2?"
    output = out.read_text()
    assert "ray: deployments front, gateway (2 gateway replicas)" in output, output[-3000:]
    assert f"sizewise gateway on Ray Serve at http://127.0.0.1:{port}/v1" in output
