"""Dataset loaders on the real shared files: counts, accuracies (shared/data/SOURCES.md), decontamination."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from sizewise.errors import ConfigError, DataError, UnknownModelError, UnknownNameError
from sizewise.evaluation.loaders import dataset_names, fetch, load_dataset
from sizewise.evaluation.loaders.fetch import fetch_dataset
from sizewise.evaluation.loaders.mmlupro import MODELS as PRO_MODELS
from sizewise.paths import data_dir

MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"


def contaminated(name: str) -> set[str]:
    path = data_dir() / "routellm" / name / "contaminated_prompts.jsonl"
    return {json.loads(line)["eval_prompt"] for line in path.read_text().splitlines() if line.strip()}


@pytest.fixture(scope="module")
def mmlu_raw():
    return load_dataset("routellm-mmlu", decontaminate=False)


@pytest.fixture(scope="module")
def gsm8k():
    return load_dataset("routellm-gsm8k")


@pytest.fixture(scope="module")
def mtbench_raw():
    return load_dataset("routellm-mtbench", decontaminate=False)


@pytest.fixture(scope="module")
def pro():
    return load_dataset("mmlu-pro")


def test_names():
    assert dataset_names() == ["routellm-mmlu", "routellm-gsm8k", "routellm-mtbench", "mmlu-pro"]
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'nope'.*routellm-mmlu"):
        load_dataset("nope")
    with pytest.raises(ConfigError, match=r"no option 'models'"):
        load_dataset("routellm-gsm8k", models=["x"])


def test_mmlu_counts_and_accuracy(mmlu_raw):
    assert len(mmlu_raw) == 14042
    assert mmlu_raw.models == [MIXTRAL, GPT4] and mmlu_raw.pair == (MIXTRAL, GPT4)
    assert mmlu_raw.prompts["category"].nunique() == 57
    assert mmlu_raw.prompts["prompt_id"].is_unique
    acc = mmlu_raw.mean_quality()
    assert round(acc[MIXTRAL], 3) == 0.681 and round(acc[GPT4], 3) == 0.806
    assert (mmlu_raw.prompts.loc[mmlu_raw.prompts.category == "anatomy"].shape[0]) == 135  # MMLU anatomy test split
    assert mmlu_raw.responses is None
    assert np.all(mmlu_raw.tokens_out == 1) and np.all(mmlu_raw.tokens_in > 5)
    # GPT-4 Turbo costs 10/30 USD per 1M tokens, Mixtral 0.6/0.6: same tokens, so a fixed ratio per cell.
    np.testing.assert_allclose(mmlu_raw.cost[:, 1], (mmlu_raw.tokens_in[:, 1] * 10 + 30) / 1e6)
    np.testing.assert_allclose(mmlu_raw.cost[:, 0], (mmlu_raw.tokens_in[:, 0] + 1) * 0.6 / 1e6)


def test_mmlu_decontamination(mmlu_raw):
    table = load_dataset("routellm-mmlu")
    bad = contaminated("mmlu")
    assert len(table) == 14037 and table.meta["decontaminated"] == 5
    assert not set(table.texts) & bad
    dropped = set(mmlu_raw.prompts["prompt_id"]) - set(table.prompts["prompt_id"])
    assert {mmlu_raw.texts[i] for i in np.flatnonzero(mmlu_raw.prompts["prompt_id"].isin(dropped))} <= bad


def test_gsm8k(gsm8k):
    raw = load_dataset("routellm-gsm8k", decontaminate=False)
    assert len(raw) == 1319
    acc = raw.mean_quality()
    assert round(acc[MIXTRAL], 3) == 0.638 and round(acc[GPT4], 3) == 0.857
    assert round(float(raw.quality.max(axis=1).mean()), 3) == 0.929  # oracle
    assert len(gsm8k) == 1307 and gsm8k.meta["decontaminated"] == 12
    assert not set(gsm8k.texts) & contaminated("gsm8k")
    assert all(isinstance(r, str) and r for r in gsm8k.responses.ravel())
    assert "#### 18" in raw.responses[0, 0]  # Mixtral's answer to the first question (Janet's ducks)
    assert gsm8k.texts[0].startswith("James decides to run 3 sprints")  # the first 3 rows are contaminated
    assert np.all(gsm8k.tokens_out > 0) and np.all(np.isfinite(gsm8k.cost))


def test_mtbench_quality_mapping(mtbench_raw):
    assert len(mtbench_raw) == 160
    judgements = [json.loads(x) for x in (data_dir() / "routellm/mt_bench/judgements.jsonl").read_text().splitlines()]
    expected = {(j["question_id"], j["turn"], j["model"]): (j["score"] - 1) / 9 for j in judgements}
    for row, (qid, turn) in enumerate(
        zip(mtbench_raw.prompts["question_id"], mtbench_raw.prompts["turn"], strict=True)
    ):
        for col, model in enumerate(mtbench_raw.models):
            assert mtbench_raw.quality[row, col] == pytest.approx(expected[(qid, turn, model)])
    mean_score = mtbench_raw.quality.mean(axis=0) * 9 + 1
    assert mean_score.round(2).tolist() == [8.34, 9.23]


def test_mtbench_turns_and_responses(mtbench_raw):
    prompts = mtbench_raw.prompts
    questions = {q["question_id"]: q for q in map(json.loads, (data_dir() / "routellm/mt_bench/question.jsonl").open())}
    row = prompts.index[(prompts.question_id == 81) & (prompts.turn == 2)][0]
    turns = questions[81]["turns"]
    conversation = prompts.loc[row, "conversation"]
    assert [m["content"] for m in conversation] == turns
    assert turns[0] in prompts.loc[row, "text"] and turns[1] in prompts.loc[row, "text"]
    assert prompts.loc[row - 1, "text"] == turns[0]
    assert all(isinstance(r, str) and r.strip() for r in mtbench_raw.responses.ravel())
    assert mtbench_raw.responses[100, 0].strip() == "[5, 1, 3]"  # Mixtral, question 131 turn 1: a terse answer
    # The turn-2 answer is the model's reply to "start every sentence with A", not its turn-1 post.
    assert mtbench_raw.responses[row, 1] != mtbench_raw.responses[row - 1, 1]
    # Turn-2 input counts both questions plus the model's own first answer.
    assert np.all(mtbench_raw.tokens_in[row] > mtbench_raw.tokens_in[row - 1] + mtbench_raw.tokens_out[row - 1] - 1)
    with_history = load_dataset("routellm-mtbench", history=GPT4, decontaminate=False)
    conversation = with_history.prompts.loc[with_history.prompts.prompt_id == "mtbench-81-t2", "conversation"].iloc[0]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
    assert conversation[1]["content"] == mtbench_raw.responses[row - 1, 1]
    with pytest.raises(UnknownModelError, match=r"known"):
        load_dataset("routellm-mtbench", history="gpt-5")


def test_mtbench_decontamination():
    table = load_dataset("routellm-mtbench")
    bad = contaminated("mt_bench")
    assert len(table) == 144 and table.meta["decontaminated"] == 8
    assert table.prompts.groupby("question_id").size().eq(2).all()
    assert not any(c["content"] in bad for conv in table.prompts["conversation"] for c in conv)


@pytest.mark.slow  # the first run tokenizes 100k answers (~15 s); later runs read the token cache
def test_mmlu_pro_all_models(pro):
    assert len(pro) == 12002 and pro.models == list(PRO_MODELS)
    acc = {m: round(v, 3) for m, v in pro.mean_quality().items()}
    assert acc == {
        "Qwen1.5-7B-Chat": 0.265, "Mistral-7B-Instruct-v0.2": 0.287, "Phi-3-mini-4k-instruct": 0.415,
        "Mixtral-8x7B-Instruct-v0.1": 0.419, "Meta-Llama-3_1-8B-Instruct": 0.442, "Qwen1.5-72B-Chat": 0.472,
        "Meta-Llama-3_1-70B-Instruct": 0.628, "gemini-1.5-flash-002": 0.641, "gemini-1.5-pro-002": 0.702,
    }  # fmt: skip
    assert round(float(pro.quality.max(axis=1).mean()), 3) == 0.890
    assert pro.prompts["category"].nunique() == 14 and pro.prompts["src"].notna().all()
    assert pro.prompts["prompt_id"].is_unique
    assert np.isfinite(pro.cost).all() and np.isfinite(pro.tokens_out).all() and (pro.tokens_in > 0).all()
    gemini = pro.index_of("gemini-1.5-pro-002")
    assert sum(isinstance(r, str) and bool(r) for r in pro.responses[:, gemini]) > 11900  # from `model_outputs`
    assert "\nA. " in pro.texts[0]


@pytest.mark.slow
def test_mmlu_pro_missing_pred_is_wrong(pro):
    import zipfile

    path = data_dir() / "mmlu-pro" / "model_outputs_Mistral-7B-Instruct-v0.2_5shots.zip"
    with zipfile.ZipFile(path) as archive:
        rows = json.loads(archive.read(archive.namelist()[0]))
    no_pred = {f"mmlupro-{r['question_id']}" for r in rows if r["pred"] is None}
    mask = pro.prompts["prompt_id"].isin(no_pred).to_numpy()
    assert mask.sum() > 1000
    assert np.all(pro.quality[mask, pro.index_of("Mistral-7B-Instruct-v0.2")] == 0)


def test_mmlu_pro_subset_and_names():
    table = load_dataset(
        "mmlu-pro",
        models=["meta-llama-3.1-8b-instruct", "gemini-1.5-pro-002"],
        pair=("Meta-Llama-3.1-8B-Instruct", "gemini-1.5-pro-002"),
    )
    assert table.models == ["Meta-Llama-3_1-8B-Instruct", "gemini-1.5-pro-002"]
    assert table.pair == ("Meta-Llama-3_1-8B-Instruct", "gemini-1.5-pro-002")
    assert len(table) == 12020  # the Gemini Pro file has 12,020 questions, all in the Llama file
    with pytest.raises(UnknownModelError, match=r"unknown MMLU-Pro model 'gpt-5'; known: Qwen1.5-7B-Chat"):
        load_dataset("mmlu-pro", models=["gpt-5"])


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match=r"missing data file: .*gsm8k_responses.csv"):
        load_dataset("routellm-gsm8k", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"data folder not found"):
        load_dataset("routellm-gsm8k", data_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"unknown data source 'ftp'"):
        load_dataset("routellm-gsm8k", source="ftp")


@pytest.fixture()
def mirror() -> Iterator[str]:
    """The shared data folder served over HTTP on 127.0.0.1, laid out like the upstream repositories."""
    handler = functools.partial(_QuietHandler, directory=str(data_dir()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_fetch_from_url_matches_local(tmp_path, mirror, monkeypatch, gsm8k):
    monkeypatch.setenv("SIZEWISE_ROUTELLM_URL", f"{mirror}/routellm")
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    fetched = load_dataset("routellm-gsm8k", source="url")
    assert (tmp_path / "cache/data/routellm/gsm8k/gsm8k_responses.csv").is_file()
    assert fetched.texts == gsm8k.texts
    np.testing.assert_array_equal(fetched.quality, gsm8k.quality)
    root = fetch("routellm-mtbench", root=tmp_path / "mt")
    table = load_dataset("routellm-mtbench", data_dir=root)
    assert len(table) == 144


def test_fetch_mmlu_pro_with_base_urls(tmp_path, mirror):
    root = fetch_dataset("mmlu-pro", tmp_path, base_urls={"mmlu-pro": f"{mirror}/mmlu-pro"})
    assert sorted(p.name for p in (root / "mmlu-pro").iterdir()) == sorted(
        f"model_outputs_{m}_5shots.zip" for m in PRO_MODELS
    )
    table = load_dataset("mmlu-pro", data_dir=root, models=["Qwen1.5-7B-Chat", "gemini-1.5-pro-002"])
    assert len(table) == 12020


def test_fetch_errors(tmp_path, mirror):
    with pytest.raises(DataError, match=r"could not fetch http://127\.0\.0\.1:\d+/nowhere/gsm8k/.*HTTP 404"):
        fetch_dataset("routellm-gsm8k", tmp_path, base_urls={"routellm": f"{mirror}/nowhere"})
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.csv"))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(DataError, match=r"could not fetch .*ConnectError"):
        fetch_dataset("routellm-mtbench", tmp_path, client=client)
    with pytest.raises(UnknownNameError):
        fetch("nope")


def test_cli_data_list_fetch_and_show(tmp_path, mirror, monkeypatch, run_cli):
    code, out, _ = run_cli("data", "list")
    assert code == 0 and all(name in out for name in dataset_names())
    monkeypatch.setenv("SIZEWISE_ROUTELLM_URL", f"{mirror}/routellm")
    code, out, _ = run_cli("data", "fetch", "routellm-gsm8k", "--to", str(tmp_path / "d"))
    assert code == 0 and (tmp_path / "d/routellm/gsm8k/gsm8k_responses.csv").is_file()
    # The price sheet is ours, not the upstream repositories': it stays where it was.
    monkeypatch.setenv("SIZEWISE_PRICES", str(data_dir() / "prices.csv"))
    monkeypatch.setenv("SIZEWISE_DATA", str(tmp_path / "d"))
    code, out, _ = run_cli("data", "show", "routellm-gsm8k")
    assert code == 0 and "1307 prompts" in out and "quality 0.858" in out
    monkeypatch.setenv("SIZEWISE_ROUTELLM_URL", f"{mirror}/nowhere")
    code, _, err = run_cli("data", "fetch", "routellm-gsm8k", "--to", str(tmp_path / "e"))
    assert code == 2 and err.startswith("error: could not fetch") and err.count("\n") == 1
