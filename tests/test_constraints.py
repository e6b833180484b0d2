"""Each hard-constraint filter alone, their fixed order, and catalog validation."""

from __future__ import annotations

import pytest

from constraint_helpers import IMAGE, ctx, model
from sizewise.catalog.schema import ApiKey, CatalogSpec, GatewaySettings, RouteSpec
from sizewise.errors import ConfigError
from sizewise.policy.constraints import ORDER, validate_catalog
from sizewise.policy.constraints.context import ContextFilter
from sizewise.policy.constraints.latency import LatencyFilter
from sizewise.policy.constraints.modality import ModalityFilter
from sizewise.policy.constraints.privacy import PrivacyFilter
from sizewise.policy.types import PolicyEnv, RequestRejected, build_filters

TEXT = model("text-llm")
VISION_LLM = model("vl", kind="multimodal", modalities=["text", "image"])
CLASSIFIER = model("clf", kind="vision", modalities=["image"])
AUDIO = model("audio", kind="multimodal", modalities=["text", "audio"])


def names(specs: list) -> list[str]:
    return [s.name for s in specs]


def test_modality_text_request_skips_non_chat_models() -> None:
    kept, report = ModalityFilter().apply(ctx("hi"), [TEXT, VISION_LLM, CLASSIFIER])
    assert names(kept) == ["text-llm", "vl"]
    assert "does not answer chat" in report.removed["clf"]


def test_modality_image_request_only_reaches_image_models() -> None:
    kept, report = ModalityFilter().apply(ctx(IMAGE), [TEXT, VISION_LLM, AUDIO])
    assert names(kept) == ["vl"]
    assert report.removed == {"text-llm": "cannot read image", "audio": "cannot read image"}


def test_modality_no_model_is_a_clear_400() -> None:
    with pytest.raises(RequestRejected) as info:
        ModalityFilter().apply(ctx(IMAGE), [TEXT, AUDIO])
    assert info.value.status == 400 and info.value.code == "unsupported_modality"
    assert "image input" in info.value.message


def test_file_parts_need_a_model_that_takes_files() -> None:
    document = [{"type": "text", "text": "summarise"}, {"type": "file", "file": {"file_id": "f1"}}]
    reader = model("reader", modalities=["text", "file"])
    kept, report = ModalityFilter().apply(ctx(document), [TEXT, reader])
    assert names(kept) == ["reader"] and report.removed == {"text-llm": "cannot read file"}
    with pytest.raises(RequestRejected) as info:
        ModalityFilter().apply(ctx(document), [TEXT])
    assert info.value.status == 400 and "file input" in info.value.message


def test_context_keeps_long_context_model_and_rejects_when_none_fits() -> None:
    short, long = model("short", context_window=512), model("long", context_window=32768)
    prompt = "word " * 1200  # ~1,500 tokens
    kept, report = ContextFilter().apply(ctx(prompt, max_tokens=100), [short, long])
    assert names(kept) == ["long"] and "short" in report.removed
    kept, _ = ContextFilter().apply(ctx("short question", max_tokens=100), [short, long])
    assert names(kept) == ["short", "long"]
    with pytest.raises(RequestRejected) as info:
        ContextFilter().apply(ctx(prompt * 30, max_tokens=100), [short, long])
    assert info.value.code == "context_length_exceeded" and "32768" in info.value.message
    assert "prompt + max_tokens 100" in info.value.message and "lower max_tokens" in info.value.message
    with pytest.raises(RequestRejected) as info:  # no max_tokens from the client: the message does not invent one
        ContextFilter().apply(ctx(prompt * 30), [short, long])
    assert "no max_tokens set" in info.value.message and "max_tokens 0" not in info.value.message


def test_context_counts_with_a_tokenizer_near_the_window() -> None:
    # Single letters: chars/4 says ~150 tokens but each letter is a token (~300): rejected after the count.
    with pytest.raises(RequestRejected, match="needs about 3"):
        ContextFilter().apply(ctx("a " * 300), [model("m", context_window=250)])
    # Long common words: chars/4 says ~210 tokens, the tokenizer far fewer: kept after the count.
    kept, _ = ContextFilter().apply(ctx("information " * 70), [model("m", context_window=150)])
    assert names(kept) == ["m"]


def test_privacy_filter_removes_remote_models_and_logs_rule_not_data() -> None:
    local, remote = model("local"), model("cloud", location="remote", price_in=1.0)
    flt = PrivacyFilter()
    kept, report = flt.apply(ctx("email me at bob@corp.example"), [local, remote])
    assert names(kept) == ["local"]
    assert "email" in report.removed["cloud"] and "bob@" not in repr(report)
    kept, report = flt.apply(ctx("what is the capital of France?"), [local, remote])
    assert names(kept) == ["local", "cloud"] and not report.fired
    with pytest.raises(RequestRejected, match="model 'cloud' is remote"):
        flt.apply(ctx("mail bob@corp.example", model_field="cloud"), [local, remote])
    with pytest.raises(RequestRejected) as info:
        flt.apply(ctx("IBAN GB82WEST12345698765432"), [remote])
    assert info.value.code == "privacy_no_local_model" and "GB82" not in info.value.message


def test_latency_filter_uses_measured_then_catalog_p95_and_key_limit() -> None:
    edge = model("edge", p95_latency_ms=80)
    cloud = model("cloud", p95_latency_ms=900)
    unknown = model("new")
    settings = GatewaySettings(api_keys=[ApiKey(name="fast", sha256="0" * 64, max_latency_ms=100)])
    flt = LatencyFilter(settings, measure=lambda: {"new": 2000.0})
    kept, report = flt.apply(ctx("hi", max_latency_ms=500), [edge, cloud, unknown])
    assert names(kept) == ["edge"]
    assert "catalog p95 900" in report.removed["cloud"] and "measured p95 2000" in report.removed["new"]
    kept, _ = flt.apply(ctx("hi"), [edge, cloud])  # no target: nothing removed
    assert names(kept) == ["edge", "cloud"]
    kept, _ = flt.apply(ctx("hi", api_key="fast"), [edge, cloud])  # the key's own limit
    assert names(kept) == ["edge"]
    with pytest.raises(RequestRejected) as info:
        flt.apply(ctx("hi", max_latency_ms=10), [edge, cloud])
    assert info.value.code == "latency_target_unmet"


def test_validate_catalog_lists_contradictions() -> None:
    models = [model("a", location="remote")]
    routes = [RouteSpec(name="code", examples=["write a function"], models=["coder"])]
    with pytest.raises(ConfigError) as info:
        validate_catalog(models, routes, GatewaySettings(privacy="local-only", ladder=["a", "zz"]))
    message = str(info.value)
    assert "route 'code' names unknown model(s) 'coder'" in message
    assert "no local chat model" in message and "unknown model 'zz'" in message
    validate_catalog([model("a"), model("coder")], routes, GatewaySettings(privacy="local-only"))


def test_the_engines_filters_follow_the_documented_order(tmp_path, monkeypatch) -> None:
    """build_filters is what the engine runs, so a change to production's order fails here."""
    import numpy as np

    import sizewise.policy.domains as domains

    monkeypatch.setattr(domains, "_default_embed", lambda texts: np.ones((len(texts), 3)) / 3**0.5)

    def env(spec: CatalogSpec) -> PolicyEnv:
        return PolicyEnv(list(spec.models), spec.gateway, backend=lambda s: None, catalog=spec)  # type: ignore[arg-type,return-value]

    spec = CatalogSpec(
        models=[model("a"), model("b", location="remote", price_in=1.0)],
        routes=[RouteSpec(name="r", examples=["x"], models=["a"])],
        gateway=GatewaySettings(privacy="local-only", daily_budget_usd=1.0, log_url=f"sqlite:///{tmp_path}/l.db"),
    )
    assert [f.name for f in build_filters(env(spec))] == list(ORDER)
    plain = CatalogSpec(models=[model("a")], gateway=GatewaySettings(log_url="none"))
    assert [f.name for f in build_filters(env(plain))] == ["modality", "capability", "context", "latency"]


def test_measured_p95_from_the_request_log(tmp_path) -> None:
    from sizewise.gateway.log import LogEntry, RequestLog
    from sizewise.policy.constraints.latency import measured_p95
    from sizewise.policy.types import Decision

    url = f"sqlite:///{tmp_path}/log.sqlite"
    log = RequestLog(url)
    for i in range(100):
        log.write(LogEntry(f"r{i}", "t", 200, (i + 1) / 1000, decision=Decision(policy="p", model="edge")))
    for i in range(5):  # too few samples to count
        log.write(LogEntry(f"s{i}", "t", 200, 9.0, decision=Decision(policy="p", model="rare")))
    log.write(LogEntry("f", "t", 502, 50.0, decision=Decision(policy="p", model="edge")))  # failures ignored
    assert log.flush(10)
    log.close()
    p95 = measured_p95(url)
    assert set(p95) == {"edge"} and p95["edge"] == pytest.approx(95.05, abs=0.1)


@pytest.mark.model
def test_context_counts_local_models_with_their_gguf_tokenizer() -> None:
    from sizewise.catalog import load_catalog
    from sizewise.policy.constraints import gguf_resolver
    from sizewise.policy.constraints.context import PER_MESSAGE, count_prompt_tokens

    catalog = load_catalog(None)
    tiny = next(spec for spec in catalog if spec.settings.get("embedded") == "tiny")
    resolve = gguf_resolver(catalog)
    assert resolve is not None
    c = ctx("def add(a, b):\n    return a + b  # sums two numbers\n" * 20)
    exact = count_prompt_tokens(c.text, tiny, resolve(tiny))
    assert exact != count_prompt_tokens(c.text, tiny)  # the generic WordPiece count differs
    flt = ContextFilter(resolve)
    fits = tiny.model_copy(update={"context_window": exact + PER_MESSAGE})
    too_small = tiny.model_copy(update={"context_window": exact + PER_MESSAGE - 1})
    assert flt.apply(c, [fits])[0] == [fits]
    with pytest.raises(RequestRejected):
        flt.apply(c, [too_small])
