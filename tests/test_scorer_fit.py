"""`sizewise scorer fit` (#23): a cascade scorer is fitted from a `collect` file on the command line (it took
Python), saved through the scorer registry where the gateway's `cascade-<name>` loads it, with `--param` as for
routers and one-line errors that say what to do next."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from fakes import GatewayServer, fake_model
from sizewise.backends.base import Backend, ChatChunk, ChatResult
from sizewise.cascade.collect import RowStore, collect, load_items
from sizewise.cascade.scorers import load_scorer

N = 40


class Doubler(Backend):
    """Doubles the number in "What is N doubled?"; the botching one is wrong when N % 3 == 0, and unsure then
    (low logprobs, a hedge), as a small model often is."""

    def __init__(self, model: str, botch: bool) -> None:
        self.model, self.botch = model, botch

    async def complete(self, request):  # type: ignore[no-untyped-def]
        n = int(request.messages[0]["content"].split()[2])
        wrong = self.botch and n % 3 == 0
        value = 2 * n + 1 if wrong else 2 * n
        text = f"maybe {n} * 2 = {value}\n#### {value}" if wrong else f"{n} * 2 = {value}\n#### {value}"
        logprobs = [-2.5 - (n % 5) * 0.1] * 9 if wrong else [-0.05 - (n % 5) * 0.01] * 9
        return ChatResult(model=self.model, text=text, completion_tokens=9, prompt_tokens=5, logprobs=logprobs)

    async def stream(self, request):  # type: ignore[no-untyped-def]
        yield ChatChunk(text="")


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("collect")
    questions = folder / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"What is {n} doubled?", "answer": f"#### {2 * n}"}) + "\n"
                                 for n in range(N)))  # fmt: skip
    items, kind = load_items(questions)
    store = RowStore(folder / "rows.jsonl")
    backends = {"small": Doubler("small", botch=True), "big": Doubler("big", botch=False)}
    asyncio.run(collect(items, backends, store, grader=kind, progress=False))
    store.close()
    return store.path


def test_fit_saves_where_the_gateway_reads_it(run_cli, collected: Path, tmp_path: Path) -> None:
    routers = tmp_path / "routers"
    args = ("scorer", "fit", "--scorer", "answer-classifier", "--table", str(collected), "--router-dir", str(routers))
    code, out, err = run_cli(*args, "--model", "small", "--param", "c=0.5")
    assert code == 0, err
    saved = routers / "scorer-answer-classifier.zip"
    assert f"fitted answer-classifier on {N} answers of small" in out and str(saved) in out
    assert f"--router-dir {routers}" in out
    auc = float(out.split("out-of-fold AUC ")[1].split()[0])
    assert auc > 0.9  # the hedge and the arithmetic check separate right from wrong here
    scorer = load_scorer(saved)
    assert scorer.get_params()["c"] == 0.5
    assert scorer.provenance_["fitted_on"] == {"table": str(collected), "models": ["small"], "answers": N}
    models = [fake_model(name, name, size, "http://127.0.0.1:9/v1") for name, size in (("small", 1), ("big", 8))]
    body = {"model": "cascade-answer-classifier", "messages": [{"role": "user", "content": "What is 4 doubled?"}]}
    catalog = {"models": models, "gateway": {"log_url": "none"}}
    with GatewayServer(catalog, router_dir=tmp_path / "empty") as gateway:  # no file: the gateway says what to do
        missing = httpx.post(gateway.url + "/route", json=body, timeout=30)
    assert missing.status_code == 400 and "scorer-answer-classifier.zip" in missing.text
    with GatewayServer(catalog, router_dir=routers) as gateway:
        found = httpx.post(gateway.url + "/route", json=body, timeout=30)
    assert found.status_code == 200 and found.json()["order"] == ["small", "big"]


def test_logprob_scorer_on_all_models_with_out(run_cli, collected: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "lp.zip"
    code, out, err = run_cli("scorer", "fit", "--scorer", "logprob", "--table", str(collected), "--out", str(out_file))
    assert code == 0, err
    assert f"on {2 * N} answers of small, big" in out and "cascade-logprob" not in out  # --out: not the gateway's name
    assert load_scorer(out_file).provenance_["fitted_on"]["answers"] == 2 * N


def test_list_names_every_scorer(run_cli) -> None:
    code, out, _ = run_cli("scorer", "list")
    assert code == 0
    names = {line.split()[0] for line in out.splitlines()}
    assert names >= {"logprob", "consistency", "verifier", "answer-classifier"}
    assert "calls models" in next(line for line in out.splitlines() if line.startswith("verifier"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scorer", "consistency"), "reads extra samples: run `sizewise collect ... --scorers consistency`"),
        (("--scorer", "verifier"), "run `sizewise collect ... --scorers verifier`"),
        (("--scorer", "nope"), "unknown scorer 'nope'"),
        (("--scorer", "logprob", "--param", "bogus=1"), "bogus"),
        (("--scorer", "logprob", "--param", "tail"), "--param wants KEY=VALUE"),
        (("--scorer", "logprob", "--model", "huge"), "huge"),
    ],
)
def test_errors_say_what_to_do(run_cli, collected: Path, tmp_path: Path, args, message) -> None:
    code, _, err = run_cli("scorer", "fit", "--table", str(collected), "--out", str(tmp_path / "s.zip"), *args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_table_without_answers_says_to_collect(run_cli, tmp_path: Path) -> None:
    from learned_helpers import planted_pair

    table = planted_pair(20).save(tmp_path / "t.parquet")
    code, _, err = run_cli("scorer", "fit", "--scorer", "logprob", "--table", str(table))
    assert code == 2 and "not a `sizewise collect` file" in err and "sizewise collect --out FILE" in err
    code, _, err = run_cli("scorer", "fit", "--scorer", "logprob", "--table", str(tmp_path / "none.jsonl"))
    assert code == 2 and "no such file (record answers with `sizewise collect --out FILE`)" in err


def test_router_dir_comes_from_the_catalog_as_the_gateway_reads_it(run_cli, collected: Path, tmp_path: Path) -> None:
    models = [fake_model("small", "small", 1, "http://127.0.0.1:9/v1")]
    catalog = tmp_path / "conf" / "sizewise.yaml"
    catalog.parent.mkdir()
    catalog.write_text(json.dumps({"models": models, "gateway": {"router_dir": "routers"}}))
    code, out, err = run_cli("scorer", "fit", "--scorer", "logprob", "--table", str(collected), "-c", str(catalog))
    assert code == 0, err
    saved = tmp_path / "conf" / "routers" / "scorer-logprob.zip"
    assert saved.is_file() and str(saved) in out  # beside the catalog, not in the cwd
    code, _, err = run_cli("router", "history", "--config", str(catalog))
    assert code == 2 and f"no router history in {tmp_path / 'conf' / 'routers'}" in err
    catalog.write_text(json.dumps({"models": models}))
    code, _, err = run_cli("router", "history", "-c", str(catalog))
    assert code == 2 and "sets no gateway.router_dir: add one, or give --router-dir" in err
