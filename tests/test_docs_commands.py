"""Every shell command in README.md and docs/ runs as written (#23).

The fenced ``bash`` / ``sh`` / ``shell`` / ``console`` blocks are split into commands; each runs for real, in
order per page, in a temporary folder with the project's ``.venv/bin`` first on PATH, ``$SIZEWISE_DATA`` set, a
temporary HOME, and the public dataset URLs pointed at a copy of the data folder served on 127.0.0.1 (no
network). A command that needs a model's generation, a running gateway, the reader's own files or minutes is
listed in NOT_RUN with its reason; one that should fail in a fresh folder (``sizewise log`` before any
traffic) is listed in EXPECTED with the message a newcomer gets. A new documented command is therefore run
unless someone lists it, and a listed command that left the docs fails the listing test.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sizewise.paths import cache_dir, data_dir

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELLS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*```(\S*)\s*$")

MODEL = "generates with the embedded models (minutes on 2 cores; the model tests cover it)"
SERVER = "talks to a running gateway (`make serve`; tests/test_serve_cli.py runs one)"
MAKE = "builds the environment or runs the whole suite (make)"
MINUTES = "takes minutes on 2 cores (embeds or fits tens of thousands of prompts)"
YOURS = "names the reader's own file, catalog or model"
LOGGED = "reads judged traffic a running gateway logged (tests/test_learning_loop_e2e.py runs the loop)"
RAY = "starts or joins a Ray cluster and serves or fits for minutes (tests/test_ray.py runs serve, collect, eval --ray)"
SLOW = "takes 20-40 s on 2 cores (test_cli_eval.py, test_choose.py and test_reports_html.py cover it on small tables)"

#: Documented commands that are not run here, and why (the exact command, as extracted).
NOT_RUN: dict[str, str] = {
    "make serve": MAKE,
    "make test": MAKE,
    "curl -si http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' -d "
    '\'{"model": "sizewise", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 32}\'': SERVER,
    "curl -s http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' -d "
    '\'{"model": "sizewise", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 16}\' -i': SERVER,
    "curl -s http://127.0.0.1:8000/v1/feedback -H 'content-type: application/json' -d "
    '\'{"request_id": "3f9a1c0e2b7d1a", "thumbs": "up"}\'': SERVER,
    "sizewise serve": SERVER,
    "sizewise serve --config sizewise.yaml --host 0.0.0.0 --port 9000 --router-dir routers/": SERVER,
    "sizewise serve -c sizewise.yaml": SERVER,
    "sizewise serve --ray --replicas 2 -c sizewise.yaml": RAY,
    "sizewise serve --ray --replicas 4 --address auto -c sizewise.yaml": RAY,
    "sizewise collect --out runs/gsm8k.jsonl --dataset gsm8k --limit 200 --ray": MODEL,
    "sizewise eval --dataset routellm-mmlu --router gbdt --router knn --cv 5 --ray --address auto": RAY,
    "sizewise models install": "assembles the models (tests/test_embedded.py); `models list` and `verify` run here",
    "sizewise collect --out runs/gsm8k.jsonl --dataset gsm8k --limit 200 --max-tokens 256": MODEL,
    "sizewise collect --out runs/mine.jsonl --dataset my_questions.jsonl --models qwen2.5-coder-0.5b,"
    "qwen2.5-coder-1.5b --grader choice": YOURS,
    "sizewise collect --out runs/gsm8k.jsonl --dataset gsm8k --limit 200 --scorers verifier,consistency "
    "--samples 3": MODEL,
    "sizewise collect --config one-thread.yaml --dataset gsm8k --limit 200 --out gsm8k.jsonl": MODEL,
    "sizewise collect --config one-thread.yaml --dataset gsm8k --limit 200 --out gsm8k.jsonl --scorers "
    "verifier,consistency": MODEL,
    'python bench/cascade.py --parts "" --collected gsm8k.jsonl': MODEL,
    "sizewise collect --config my-catalog.yaml --models new-model --dataset gsm8k --limit 300 --out new.jsonl": YOURS,
    "sizewise add-model --router-file mf.zip --table new.jsonl --out mf-plus-new.zip": YOURS,
    "sizewise distill --table answers.csv --teacher gpt-4 --labels Yes,No --target 0.98 --out overruling.zip": YOURS,
    "sizewise scorer fit --scorer answer-classifier --table runs/gsm8k.jsonl --model qwen2.5-coder-0.5b "
    "--param c=0.5": MODEL,
    "sizewise scorer fit --scorer logprob --table runs/gsm8k.jsonl --out logprob.zip": MODEL,
    "sizewise choose --data gsm8k.jsonl --target 0.4 --local-only --memory-gb 2 --router heuristic --out "
    "docs/choose/gsm8k-embedded": MODEL,
    "sizewise choose --data mmlu-pro --target 0.68 --route-sample 700 --out docs/choose/mmlu-pro": MINUTES,
    "sizewise choose --data mmlu-pro --target 0.6 --budget-per-1k 0.04 --out docs/choose/mmlu-pro-budget": MINUTES,
    "sizewise choose --data mmlu-pro --target 0.702 --router knn --out docs/choose/mmlu-pro-nmodel": MINUTES,
    "sizewise eval --dataset routellm-gsm8k --router random --router tfidf-logreg --router oracle --report "
    "eval-report": SLOW,
    "sizewise choose --data mmlu-pro --target 0.68 --out choose-report": SLOW,
    "sizewise choose --data my-outcomes.parquet --target 95% --config sizewise.yaml --local-only --memory-gb 4": YOURS,
    "python bench/routers.py --parts routellm --routers 'ensemble,ensemble:combine=\"stack\"' "
    "--routellm-datasets routellm-gsm8k,routellm-mmlu": MINUTES,
    "python bench/routers.py --parts routellm,transfer --routers 'ensemble,ensemble:embedding=\"static\"' "
    "--routellm-datasets routellm-mtbench": MINUTES,
    "python bench/routers.py --parts routellm --routers 'ensemble:embedding=\"static\"' --routellm-datasets "
    "routellm-mmlu,routellm-gsm8k": MINUTES,
    "python bench/routers.py --parts transfer --routers tfidf-logreg": MINUTES,
    "sizewise train --router gbdt --param embedding=static --dataset routellm-gsm8k --out gsm8k-gbdt.zip": MINUTES,
    "sizewise calibrate --router-file gsm8k-gbdt.zip --table held-out.parquet --target-share 0.3 --write "
    "--plot gsm8k-gbdt.png": YOURS,
    "sizewise calibrate --router gbdt --param embedding=static --dataset routellm-mmlu --target-quality 0.95 "
    "--out mmlu-gbdt.zip --write-catalog mmlu-gbdt.yaml": MINUTES,
    "sizewise calibrate --router-file mmlu-gbdt.zip --dataset routellm-mmlu --budget-per-1k 0.5 --json": MINUTES,
    "sizewise train --router mf --table my-logs.parquet --weak small --strong large --param rank=16 "
    "--out mf.zip": YOURS,
    "sizewise eval --table mine.jsonl --router gbdt --router random --cv 5": LOGGED,
    "sizewise calibrate --router gbdt --param embedding=static --table mine.jsonl --target-quality 0.95 "
    "--out routers/mine.zip": LOGGED,
    "sizewise choose --data mine.jsonl --target 95%": LOGGED,
    "sizewise router retrain --outcomes mine.jsonl --router-dir routers": LOGGED,
    "sizewise router rollback --router-dir routers": LOGGED,
}

#: Commands that fail in a fresh folder by design: (exit status, what the one error line must say).
EXPECTED: dict[str, tuple[int, str]] = {
    "sizewise log": (2, "no request log at sizewise-log.sqlite (gateway.log_url of the built-in catalog"),
    "sizewise log --plot traffic.html": (2, "start `sizewise serve` first"),
    "sizewise outcomes export --out mine.jsonl": (2, "start `sizewise serve` first"),
    "sizewise router history --router-dir routers": (2, "no router history in routers: `sizewise router retrain`"),
}


def doc_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number of the fence, language, lines) of every fenced block of a Markdown text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        yield i + 1, match.group(1), lines[i + 1 : end]
        i = end + 1


def block_commands(language: str, lines: list[str]) -> list[str]:
    """The commands of a shell block: ``$`` prompts only in a console block (the rest is output), comment lines
    and trailing comments dropped, backslash continuations joined, whitespace collapsed."""
    commands: list[str] = []
    pending = ""
    for raw in lines:
        line = raw.strip()
        if language == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending and (not line or line.startswith("#")):
            continue
        line = strip_comment(line)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(" ".join((pending + line).split()))
        pending = ""
    return commands


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``  # comment`` (a ``#`` inside quotes is kept)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def doc_commands() -> dict[Path, list[str]]:
    """Every shell command of every page, in order."""
    found: dict[Path, list[str]] = {}
    for page in PAGES:
        for _, language, lines in doc_blocks(page.read_text()):
            if language in SHELLS:
                found.setdefault(page, []).extend(block_commands(language, lines))
    return found


@contextmanager
def serving_data() -> Iterator[str]:
    """The data folder over HTTP on 127.0.0.1, laid out like the public repositories (for `data fetch`)."""
    handler = functools.partial(_Quiet, directory=str(data_dir()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def command_folder(folder: Path, mirror: str) -> dict[str, str]:
    """Prepare ``folder`` to run documented commands in (a HOME, the source trees they read); their environment."""
    (folder / "home").mkdir(parents=True, exist_ok=True)
    for tree in ("src", "bench"):  # read by documented commands (sed on the built-in catalog, bench scripts)
        if not (folder / tree).exists():
            (folder / tree).symlink_to(ROOT / tree)
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(folder / "home"),
        "SIZEWISE_DATA": str(data_dir().resolve()),
        "SIZEWISE_CACHE": str(cache_dir().resolve()),
        "SIZEWISE_ROUTELLM_URL": f"{mirror}/routellm",
        "SIZEWISE_MMLU_PRO_URL": f"{mirror}/mmlu-pro",
    }
    for name in ("SIZEWISE_PRICES", "SIZEWISE_ROUTER_DIR"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def mirror() -> Iterator[str]:
    with serving_data() as url:
        yield url


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_the_extractor_reads_prompts_continuations_and_comments() -> None:
    console = ["$ sizewise models list   # the ladder", "small  0.1", "$ sizewise a \\", "  --b 'x # y'"]
    assert block_commands("console", console) == ["sizewise models list", "sizewise a --b 'x # y'"]
    bash = ["# a comment", "", "curl -s http://h/x \\", "  -d '{\"a\": 1}'", "# output", "sizewise log  # totals"]
    assert block_commands("bash", bash) == ["curl -s http://h/x -d '{\"a\": 1}'", "sizewise log"]
    assert [lang for _, lang, _ in doc_blocks("```bash\nx\n```\ntext\n```\ny\n```\n")] == ["bash", ""]


def test_every_listed_command_is_still_documented() -> None:
    documented = {command for commands in doc_commands().values() for command in commands}
    stale = sorted((set(NOT_RUN) | set(EXPECTED)) - documented)
    assert not stale, f"listed but no longer in the docs (remove them): {stale}"
    assert not set(NOT_RUN) & set(EXPECTED)


RUNS = sorted(((page, commands) for page, commands in doc_commands().items()), key=lambda item: str(item[0]))


@pytest.mark.slow
@pytest.mark.parametrize(("page", "commands"), RUNS, ids=[str(page.relative_to(ROOT)) for page, _ in RUNS])
def test_documented_commands_run_as_written(page: Path, commands: list[str], tmp_path: Path, mirror: str) -> None:
    runnable = [command for command in commands if command not in NOT_RUN]
    if not runnable:
        pytest.skip(f"every command of {page.name} is listed in NOT_RUN")
    env = command_folder(tmp_path, mirror)
    for command in runnable:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=180)  # fmt: skip
        where = f"{page.relative_to(ROOT)}: `{command}`"
        if command in EXPECTED:
            status, message = EXPECTED[command]
            assert run.returncode == status and message in run.stderr, f"{where}: {run.stderr}"
            assert len(run.stderr.strip().splitlines()) == 1, f"{where}: more than one error line: {run.stderr}"
        else:
            assert run.returncode == 0, f"{where} exited {run.returncode}: {run.stderr[-2000:]}"
        assert "Traceback" not in run.stderr, f"{where}: {run.stderr}"


def test_fetch_puts_the_price_sheet_beside_the_data_or_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from sizewise.cli.data_cmd import _price_sheet

    sheet = tmp_path / "mine.csv"
    sheet.write_text("model,usd_per_1m_input,usd_per_1m_output\nm,1,2\n")
    monkeypatch.setenv("SIZEWISE_PRICES", str(sheet))
    root = tmp_path / "fetched"
    root.mkdir()
    assert (
        _price_sheet(root)
        == f"price sheet: copied {sheet} to {root / 'prices.csv'} (list prices; edit it, docs/prices.md)"
    )
    assert (root / "prices.csv").read_text() == sheet.read_text()
    assert _price_sheet(root) == f"price sheet: {root / 'prices.csv'}"  # kept, never overwritten
    monkeypatch.setenv("SIZEWISE_PRICES", str(tmp_path / "none.csv"))
    other = tmp_path / "other"
    other.mkdir()
    assert "no price sheet at hand" in _price_sheet(other) and "set SIZEWISE_PRICES" in _price_sheet(other)
    assert not (other / "prices.csv").exists()
