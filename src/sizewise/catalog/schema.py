"""The catalog schema: models, domain routes and gateway settings, as in ``sizewise.yaml``.

Validated with pydantic so a bad file fails at start-up with a message that names
the entry and the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Modality = Literal["text", "image", "audio", "file"]
#: ``task``: a student distilled from a big model's answers for one narrow task (``sizewise.distill``);
#: ``vision``: an image classifier; ``speech``: a speech recogniser.
ModelKind = Literal["llm", "multimodal", "vision", "speech", "task", "classifier", "embedding", "domain"]
#: ``onnx``: an ONNX image classifier; ``whisper``: faster-whisper; ``task``: an in-process task student.
BackendName = Literal["llamacpp", "openai", "replay", "onnx", "whisper", "task"]
#: What a model can do besides reading its modalities (``vision`` / ``audio`` come from ``modalities``).
Capability = Literal["tools", "json_object", "json_schema", "reasoning", "logprobs"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]


def _text_only() -> list[Modality]:
    return ["text"]


SessionKey = Literal["header", "metadata", "user", "prefix"]


def _session_keys() -> list[SessionKey]:
    return ["header", "metadata", "prefix"]


def _effort_factors() -> dict[ReasoningEffort, float]:
    return {"minimal": 1.0, "low": 2.0, "medium": 4.0, "high": 8.0}


class _Strict(BaseModel):
    # No NaN or infinity anywhere: a price, budget or threshold of .inf or .nan is a typo, not a setting.
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


class RayDeployment(_Strict):
    """How ``sizewise serve --ray`` deploys a local model as its own Ray Serve deployment (docs/scaling.md)."""

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    #: Requests a replica works on at once before Serve queues or adds a replica.
    max_ongoing_requests: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> RayDeployment:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class ModelSpec(_Strict):
    """One model the gateway may call."""

    name: str = Field(min_length=1)
    kind: ModelKind = "llm"
    modalities: list[Modality] = Field(default_factory=lambda: _text_only())
    context_window: int = Field(gt=0)
    params_b: float | None = Field(default=None, gt=0, description="size in billions of parameters")
    price_in: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    price_out: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    #: A speech model's price: what a remote transcription reserves and settles in the budget ledger.
    price_per_minute: float = Field(default=0.0, ge=0, description="USD per minute of audio")
    location: Literal["local", "remote"] = "local"
    backend: BackendName
    #: Backend settings: llamacpp {embedded: tiny|small|big} or {path: file.gguf};
    #: openai {base_url, model, api_key_env, timeout_s, verify, ca_bundle, proxy}; replay {table, model}.
    settings: dict[str, Any] = Field(default_factory=dict)
    domains: list[str] = Field(default_factory=list)
    #: Other names clients may send in ``model`` for this model (``gpt-4o-mini`` for ``cloud-mini``).
    aliases: list[str] = Field(default_factory=list)
    #: Measured p95 latency in ms (filled from the request log when known).
    p95_latency_ms: float | None = Field(default=None, gt=0)
    #: What requests this model can serve (tools, json_schema, ...); None: its backend's defaults
    #: (``sizewise.catalog.capabilities``); ``[]``: plain text only.
    capabilities: list[Capability] | None = None
    #: Efforts a reasoning model may be called at: the catalog turns the entry into one rung per effort,
    #: ``<name>@<effort>`` (``sizewise.catalog.effort``).
    reasoning_efforts: list[ReasoningEffort] = Field(default_factory=list)
    #: The effort this entry is called at (sent upstream as ``reasoning_effort``); set on each rung.
    reasoning_effort: ReasoningEffort | None = None
    #: Output tokens expected per answer token (reasoning spends tokens it does not show): what the ladder
    #: order prices this model's answers by; the real cost counts the tokens the upstream billed.
    output_factor: float = Field(default=1.0, gt=0)
    #: Resources and autoscaling bounds of this model's deployment under ``serve --ray`` (local models only).
    ray: RayDeployment = Field(default_factory=RayDeployment)

    def cost_usd(self, tokens_in: float, tokens_out: float) -> float:
        """Price of one call with these token counts."""
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6


class RouteSpec(_Strict):
    """A domain route: prompts like ``examples`` go to ``models`` before the size decision."""

    name: str = Field(min_length=1)
    examples: list[str] = Field(min_length=1)
    description: str | None = None
    models: list[str] = Field(min_length=1)
    threshold: float | None = Field(default=None, ge=-1, le=1)


class ApiKey(_Strict):
    """A client key, stored as its sha256 hex digest, with optional spend limits."""

    #: Logged with each request; what a key's budgets and its dashboard count by. At most the 200 characters
    #: the request log and the budget ledger keep: a longer name would be cut there and could match another's.
    name: str = Field(max_length=200)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    daily_budget_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    #: What ``GET /dashboard`` shows this key: ``own`` the requests made with it (rows logged under its name),
    #: ``all`` every client's (an operator's key), ``none`` nothing (403).
    dashboard: Literal["own", "all", "none"] = "own"


class ShadowSettings(_Strict):
    """Shadow judging (docs/learning.md): after some answers, the decision's other model answers too and a
    judge scores both, off the request path."""

    enabled: bool = False
    #: Chance that any routed request is shadowed (the uniform slice, for unbiased estimates).
    uniform_rate: float = Field(default=0.02, ge=0, le=1)
    #: Mean extra chance, given to requests whose router score lies near the threshold (active learning).
    active_rate: float = Field(default=0.05, ge=0, le=1)
    #: Width of "near the threshold", in units of the spread of recent router scores.
    active_width: float = Field(default=0.5, gt=0)
    #: Catalog model that judges pairwise (both orders); default: the top of the ladder.
    judge: str | None = None
    #: Most USD a UTC day for shadow and judge calls (catalog prices), counted in the request log's database.
    daily_cap_usd: float = Field(default=1.0, ge=0)
    #: Jobs waiting; a request chosen while the queue is full is dropped (and counted in /metrics).
    queue_size: int = Field(default=64, ge=1)
    #: Jobs run at once.
    concurrency: int = Field(default=2, ge=1)
    #: How long shutdown waits for running jobs before dropping them.
    shutdown_wait_s: float = Field(default=2.0, ge=0)
    #: Where outcomes are stored (SQLAlchemy URL); default the request log's URL.
    outcomes_url: str | None = None


class GatewaySettings(_Strict):
    """How the gateway decides and what it records."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Policy used when a request names model "sizewise".
    default_policy: str = "sizewise"
    #: Router file or registry name used by the default policy, and its threshold.
    router: str | None = None
    threshold: float | None = None
    #: Folder of router files that ``router-<name>-<threshold>`` looks in (relative to the catalog file).
    router_dir: str | None = None
    #: Models a cascade climbs, cheapest first (defaults to the catalog's local LLMs by size).
    ladder: list[str] = Field(default_factory=list)
    privacy: Literal["off", "local-only"] = "off"
    #: Under ``local-only``, what the scan cannot read (images, audio, files): ``personal`` keeps it
    #: on local models; ``allow`` lets it go to remote ones (only its readable text is judged).
    privacy_opaque: Literal["personal", "allow"] = "personal"
    daily_budget_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    api_keys: list[ApiKey] = Field(default_factory=list)
    #: SQLAlchemy URL of the request log; default a SQLite file in the working directory.
    log_url: str = "sqlite:///sizewise-log.sqlite"
    log_text: bool = False
    #: Session affinity (``sizewise.serve.session``): where a request's session id comes from, first found
    #: wins: ``header`` (x-sizewise-session-id), ``metadata`` (metadata.session_id), ``user`` (the OpenAI
    #: ``user`` field), ``prefix`` (the conversation's opening); ``[]`` turns affinity off.
    session_keys: list[SessionKey] = Field(default_factory=_session_keys)
    #: A session leaves its model only when the router's score is further than this from the threshold
    #: (a confident switch); ``null``: never on a score, only when the model cannot serve the request.
    session_margin: float | None = Field(default=0.2, ge=0)
    session_ttl_s: float = Field(default=3600.0, gt=0)
    max_sessions: int = Field(default=10_000, ge=1)
    #: Older spelling: ``true`` also takes the OpenAI ``user`` field as a session id.
    sticky_sessions: bool = False
    #: SQLAlchemy URL of the database that gateway replicas share sessions in (``log``: the request log's);
    #: unset: sessions live in this process's memory (``sizewise.serve.session_sql``). With a ``router_dir``,
    #: the router promoted there is polled every ``state_poll_s`` seconds (``sizewise.serve.router_watch``).
    state_url: str | None = None
    state_poll_s: float = Field(default=5.0, gt=0)
    #: Output-token factor of each reasoning effort (prices the ``<name>@<effort>`` rungs): a prior, about
    #: doubling per step; measure your own from the request log's completion tokens.
    effort_output_factor: dict[ReasoningEffort, float] = Field(default_factory=_effort_factors)
    #: A request that names a catalog model gets that model or an error; ``true`` lets a fault fall back to
    #: the other models (largest first), as for a routed request.
    fallback_for_named_models: bool = False
    #: Longest ``Retry-After`` (a 429/503 upstream's) the gateway waits out before its retry of the same
    #: model; a longer one counts as the model failing now.
    max_retry_after_s: float = Field(default=5.0, ge=0)
    request_timeout_s: float = Field(default=120.0, gt=0)
    #: How long a request that fits the budget only once requests in flight settle waits for them
    #: (never longer than ``request_timeout_s``); 0: a 429 at once.
    budget_wait_s: float = Field(default=5.0, ge=0)
    #: Largest request body read (bytes); a larger one gets 413 before any of it is parsed.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Seconds a request body may take to arrive after its headers; a slower one (a trickling upload) gets 408
    #: and its connection is closed (``sizewise.gateway.body_deadline``).
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds a connection may take to send a request's headers (from opening, or from the request's first
    #: byte); slower: 408 and closed (``sizewise serve``'s protocol, ``sizewise.gateway.header_deadline``).
    header_timeout_s: float = Field(default=10.0, gt=0)
    #: Most messages in one chat request; more get 400.
    max_messages: int = Field(default=2048, ge=1)
    #: Browser origins allowed to call the gateway (CORS), e.g. ``["http://localhost:3000"]``; ``["*"]`` any;
    #: default none (a browser page on another origin cannot read the answers).
    cors_origins: list[str] = Field(default_factory=list)
    #: One line per request (method, path, status, model, policy, latency) on the ``sizewise.access`` logger.
    access_log: bool = True
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)


class CatalogSpec(_Strict):
    """The whole ``sizewise.yaml``."""

    models: list[ModelSpec] = Field(min_length=1)
    routes: list[RouteSpec] = Field(default_factory=list)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    def model_post_init(self, __context: Any) -> None:
        from sizewise.catalog.effort import expand_efforts

        expand_efforts(self)  # one ladder rung per reasoning effort, before anything reads the models


# Backend settings, one model per backend: the loader validates ``ModelSpec.settings`` against these
# so an unknown or mistyped key fails at start-up instead of at the first request.


class LlamaCppSettings(_Strict):
    """``backend: llamacpp``: exactly one of ``embedded`` (tiny|small|big) or ``path`` (a GGUF file)."""

    embedded: Literal["tiny", "small", "big"] | None = None
    path: str | None = None
    #: Context length to allocate (KV cache); default the model's context_window, never less.
    n_ctx: int | None = Field(default=None, gt=0)
    #: CPU threads; default os.cpu_count() (llama.cpp's own default uses half the cores and halves speed).
    n_threads: int | None = Field(default=None, gt=0)
    n_gpu_layers: int = 0
    #: Override the chat template stored in the GGUF file (a llama-cpp-python chat_format name).
    chat_format: str | None = None
    seed: int | None = None
    #: Run the model in its own worker process (default): a crash in native code costs the calls in flight,
    #: which fall back to the next model, never the gateway. ``false``: a thread of the gateway's process.
    isolate: bool = True
    #: How long a worker may take to load the model before the call fails.
    load_timeout_s: float = Field(default=600.0, gt=0)

    def model_post_init(self, __context: Any) -> None:
        if (self.embedded is None) == (self.path is None):
            raise ValueError("give exactly one of 'embedded' (tiny, small, big) or 'path' (a .gguf file)")


class OpenAISettings(_Strict):
    """``backend: openai``: an OpenAI-compatible HTTP upstream (vLLM, Ollama, llama-server, a cloud API)."""

    base_url: str = Field(pattern=r"^https?://")
    #: Model name sent upstream; default the catalog name.
    model: str | None = None
    #: Name of the environment variable holding the API key (never the key itself).
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    #: Check the upstream's TLS certificate (false only for a test server you trust).
    verify: bool = True
    #: PEM file of CA certificates to check the upstream with (relative to the catalog file).
    ca_bundle: str | None = Field(default=None, min_length=1)
    #: Proxy for this upstream; default the environment's HTTP_PROXY / HTTPS_PROXY / NO_PROXY.
    proxy: str | None = Field(default=None, pattern=r"^https?://")

    def model_post_init(self, __context: Any) -> None:
        if self.ca_bundle is not None and not self.verify:
            raise ValueError("'ca_bundle' and 'verify: false' contradict each other; give one")


class ReplaySettings(_Strict):
    """``backend: replay``: answers recorded in an outcome table, matched by prompt text."""

    table: str
    #: Column of the table to replay; default the catalog name.
    model: str | None = None


class TaskSettings(_Strict):
    """``backend: task`` (``kind: task``): a student distilled from ``teacher``'s answers serves one narrow task
    in-process (``sizewise.serve.tasks``, docs/gateway.md). On-task requests: those matching domain ``route``
    or carrying ``"sizewise": {"task": "<this model's name>"}``."""

    labels: list[str] = Field(min_length=2)
    #: Catalog chat model whose answers the student learns and agrees with.
    teacher: str = Field(min_length=1)
    #: A saved student (``sizewise distill --out``, relative to the catalog file); none: learn online only.
    student: str | None = Field(default=None, min_length=1)
    #: Agreement with the teacher the student's threshold is calibrated to.
    target_agreement: float = Field(default=0.98, ge=0.5, lt=1)
    #: Share of confident on-task requests sent to the teacher anyway, to watch drift.
    audit_share: float = Field(default=0.05, ge=0, lt=1)
    #: Learn from the teacher's answers to on-task requests while serving.
    online: bool = True
    #: Name of a domain route (``routes:``) whose matches are this task.
    route: str | None = Field(default=None, min_length=1)
    #: Other words for a label in the teacher's answers (``{"yes": ["true"]}``).
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    #: An on-task request the student leaves: ``teacher`` asks the teacher; ``policy``: the normal decision.
    unsure: Literal["teacher", "policy"] = "teacher"
    #: File keeping the online student across restarts (relative to the catalog file); default
    #: ``<gateway.router_dir>/tasks/<name>.zip`` when a router_dir is set, else nothing is kept.
    state: str | None = Field(default=None, min_length=1)
    #: Teacher answers before the online student is first fitted, and between refits (default: the distiller's).
    min_examples: int | None = Field(default=None, ge=4)
    retrain_every: int | None = Field(default=None, ge=1)

    @field_validator("labels", "aliases", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, value: Any) -> Any:
        # YAML reads unquoted yes/no/on/off/true/false as booleans: say so instead of "not a valid string".
        if isinstance(value, dict):  # aliases: the labels it maps and the words they map to
            items = [*value, *(x for v in value.values() for x in (v if isinstance(v, list) else [v]))]
        else:
            items = value if isinstance(value, list) else []
        if any(isinstance(item, bool) for item in items):
            raise ValueError('YAML reads unquoted yes, no, on, off, true, false as booleans: quote labels ("yes")')
        return value

    def model_post_init(self, __context: Any) -> None:
        if len({label.strip().lower() for label in self.labels}) != len(self.labels):
            raise ValueError(f"labels must differ (ignoring case): {self.labels}")
        if self.student is None and not self.online:
            raise ValueError("a task with no 'student' file must learn online ('online: true')")


class WhisperSettings(_Strict):
    """``backend: whisper`` (``kind: speech``): a Whisper model run with faster-whisper (``sizewise.backends.speech``),
    exactly one of ``embedded`` (whisper: tiny.en from its PyPI package) or ``path`` (a CTranslate2 model folder)."""

    embedded: Literal["whisper"] | None = None
    path: str | None = None
    compute_type: str = "int8"
    #: CPU threads per transcription; default min(2, cores).
    cpu_threads: int | None = Field(default=None, gt=0)
    beam_size: int = Field(default=1, ge=1, le=10)
    #: Largest audio file read (bytes; OpenAI's limit), and longest audio decoded (seconds).
    max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_seconds: float = Field(default=600.0, gt=0)
    #: A transcript whose mean token log-probability is below this goes to ``escalate_to`` (docs/modalities.md
    #: says how it was calibrated); null: never escalate.
    escalate_below: float | None = Field(default=None, le=0)
    #: Catalog speech model (``backend: openai``) that escalations go to; default the first remote speech model.
    escalate_to: str | None = Field(default=None, min_length=1)

    def model_post_init(self, __context: Any) -> None:
        if (self.embedded is None) == (self.path is None):
            raise ValueError("give exactly one of 'embedded' (whisper) or 'path' (a CTranslate2 Whisper folder)")


class OnnxSettings(_Strict):
    """``backend: onnx`` (``kind: vision``): the embedded image classifier (``sizewise.backends.vision``) and how
    images in chat requests are checked and answered (docs/modalities.md)."""

    embedded: Literal["vision"] = "vision"
    #: onnxruntime threads per image (one keeps a classification from taking the cores the LLMs use).
    threads: int = Field(default=1, ge=1)
    #: Top-1 probability from which the classifier answers a classifiable question itself
    #: (calibrated on the labelled photos by ``bench/modalities.py``; docs/modalities.md).
    threshold: float = Field(default=0.6, ge=0, le=1)
    #: Fetch ``http(s)://`` image URLs (with the limits below); false: only data URLs are classified.
    fetch_urls: bool = False
    fetch_timeout_s: float = Field(default=5.0, gt=0)
    #: Hosts image URLs may be fetched from (``images.example.com``, or ``*.example.com`` for its subdomains),
    #: redirects included; empty: any host the gateway can reach.
    fetch_hosts: list[str] = Field(default_factory=list)
    max_images: int = Field(default=8, ge=1)
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: Most pixels an image may declare in its header (a decompression bomb declares billions).
    max_pixels: int = Field(default=40_000_000, ge=50_176)


BACKEND_SETTINGS: dict[str, type[_Strict]] = {
    "llamacpp": LlamaCppSettings,
    "openai": OpenAISettings,
    "replay": ReplaySettings,
    "onnx": OnnxSettings,
    "task": TaskSettings,
    "whisper": WhisperSettings,
}
