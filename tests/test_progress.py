"""One progress display for long jobs (#23): a tqdm bar on a terminal, one final line elsewhere. `collect` had its
own hand-drawn `[####....]` bar, redrawn with carriage returns into log files; embedding a second one; eval tqdm."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import yaml

from fakes import FakeUpstream, fake_model
from sizewise.progress import Progress

FINAL = re.compile(r"^collect: 6/6 answers in \d+\.\ds \([\d.,]+ answers/s\)$")


def _collect(tmp_path: Path, base_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"What is {n}+{n}?", "answer": f"#### {2 * n}"}) + "\n"
                                 for n in range(3)))  # fmt: skip
    models = [fake_model(name, f"ok-{name}", size, base_url) for name, size in (("small", 1), ("big", 8))]
    catalog = tmp_path / "sizewise.yaml"
    catalog.write_text(yaml.safe_dump({"models": models, "gateway": {"log_url": "none"}}))
    out = tmp_path / f"rows-{len(env)}.jsonl"
    command = [sys.executable, "-m", "sizewise.cli.main", "collect", "--dataset", str(questions), "-c", str(catalog),
               "--out", str(out)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_collect_in_a_pipe_prints_one_final_line_and_no_bar(tmp_path: Path) -> None:
    with FakeUpstream() as upstream:
        shown = _collect(tmp_path, upstream.base_url, SIZEWISE_PROGRESS_DELAY="0")  # every job counts as long
        quiet = _collect(tmp_path, upstream.base_url, SIZEWISE_PROGRESS_DELAY="600")  # a job shorter than the delay
    assert shown.returncode == 0, shown.stderr
    assert "\r" not in shown.stderr and "[#" not in shown.stderr and "..." not in shown.stderr
    assert [line for line in shown.stderr.splitlines() if FINAL.match(line)] == shown.stderr.splitlines(), shown.stderr
    assert len(shown.stderr.splitlines()) == 1
    assert "6 new rows" in shown.stdout
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_a_terminal_gets_a_tqdm_bar(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    with os.fdopen(follower, "w") as terminal:
        with Progress(5, "embedding", "texts", delay=0, stream=terminal) as bar:
            for _ in range(5):
                bar.update(1, note="small")
        terminal.flush()
        drawn = ""
        # A pty hands over what was written in pieces (a loaded machine splits them more): read until quiet.
        while "5/5" not in drawn and select.select([leader], [], [], 5)[0]:
            drawn += os.read(leader, 65536).decode()
    os.close(leader)
    assert "embedding" in drawn and "5/5" in drawn and "\r" in drawn  # tqdm redraws in place
    assert "texts/s" in drawn and "small" in drawn


def test_final_line_scales_bytes_and_a_short_job_says_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        with Progress(3 * 1024 * 1024, "fetch gsm8k.csv", "B", scale=True, delay=0, stream=stream) as bar:
            bar.update(3 * 1024 * 1024)
        with Progress(10, "short", "texts", stream=stream) as bar:  # default delay: 2 s
            bar.update(10)
        with Progress(10, "off", "texts", enabled=False, delay=0, stream=stream) as bar:
            bar.update(10)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"fetch gsm8k\.csv: 3\.0MB/3\.0MB in \d+\.\ds \([\d.]+[kMG]?B/s\)", lines[0]
    )


def test_delay_from_the_environment(monkeypatch) -> None:
    from sizewise.progress import default_delay

    monkeypatch.setenv("SIZEWISE_PROGRESS_DELAY", "0.5")
    assert default_delay() == 0.5
    for bad in ("-1", "soon"):
        monkeypatch.setenv("SIZEWISE_PROGRESS_DELAY", bad)
        assert default_delay() == 2.0


def test_silenced_reaches_every_job_inside(tmp_path: Path) -> None:
    from sizewise.progress import silenced

    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        # What `eval --no-progress` wraps the evaluation in (embedding included).
        with silenced(), Progress(3, "embedding", "texts", delay=0, stream=stream) as bar:
            bar.update(3)
        with Progress(3, "after", "texts", delay=0, stream=stream) as bar:
            bar.update(3)
    assert [line.split(":")[0] for line in log.read_text().splitlines()] == ["after"]
