"""Every knob of the service: one pydantic-settings class, env prefix ``BIONER_``.

The CLI maps its flags one-to-one onto these fields; validators reject nonsense at startup.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.decoding.aggregate import Decoding, Strategy
from service.decoding.consistency import Consistency
from service.decoding.windows import Align

_BUNDLE = Path("models") / "bioner-minilm-joint"
# A model name travels in JSON bodies, query strings and metric labels: keep it plain.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_model_path() -> Path:
    """The committed bundle: beside the source tree (checkout, editable install), else under the
    working folder (``pip install .`` run from the repository root)."""
    beside_source = Path(__file__).resolve().parent.parent / _BUNDLE
    return beside_source if beside_source.is_dir() else Path.cwd() / _BUNDLE


class Provider(str, Enum):
    CPU = "cpu"
    CUDA = "cuda"  # falls back to CPU with a warning when onnxruntime-gpu/CUDA is not usable


class GraphOptimization(str, Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIONER_", env_file=None, protected_namespaces=())

    model_path: Path = Field(
        default_factory=default_model_path, description="Model bundle folder (model.onnx, config.json, tokenizer.json)."
    )
    models: str | None = Field(
        None,
        description="Several bundles as 'name=path,name=path' (instead of model_path): requests choose one with 'model'; "
        "each has its own queue and limits.",
    )
    models_dir: Path | None = Field(
        None, description="Serve every sub-folder of this folder that holds a model.onnx, named after the sub-folder."
    )
    default_model: str | None = Field(
        None, description="The model of requests that name none, and of /model; default: the first of models (models_dir: by name)."
    )
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in containers.")
    port: int = Field(8000, ge=1, le=65535)
    provider: Provider = Field(Provider.CPU, description="ONNX Runtime execution provider.")
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Server processes on the one port, each with its own copy of every model (memory x workers); "
        "more than 1 lets the Python work (HTTP, tokenising, decoding) use more than one core.",
    )
    inference_lanes: int = Field(
        2,
        ge=1,
        le=64,
        description="Inference batches each worker runs at once, in one model copy: 2 lanes of 1 thread use 2 cores "
        "with no synchronisation inside an op (README, 'Inference lanes').",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime pool threads per worker, which its lanes' runs share, each run's own thread counted "
        "(0: the worker's share of the cores - lanes + 1, one thread per lane on two cores; one worker of one lane: ORT's own).",
    )
    inter_op_threads: int = Field(1, ge=0, description="Threads across graph nodes (1 is right for BERT graphs).")
    thread_spinning: bool = Field(
        False,
        description="Let ONNX Runtime's idle threads spin between ops (ORT's own default). Off: the cores go to "
        "tokenising, decoding and the event loop instead (less CPU per text, equal or better texts/s, measured).",
    )
    graph_optimization: GraphOptimization = Field(GraphOptimization.ALL, description="ONNX Runtime graph optimisation level.")
    max_length: int | None = Field(None, ge=8, le=4096, description="Window length in tokens; default: the bundle's training length.")
    stride: int | None = Field(None, ge=0, description="Overlap between windows in tokens; default: the bundle's.")
    window_align: Align | None = Field(
        None,
        description="Where windows end: 'tokens' (fixed length, overlapping by stride) or 'sentences' (at a sentence start "
        "in the window's second half, no overlap there); default: the bundle's.",
    )
    aggregation_strategy: Strategy | None = Field(None, description="Default subword aggregation; default: the bundle's.")
    decoding: Decoding | None = Field(
        None, description="Default label decoding; default: the bundle's (crf for CRF models, else constrained)."
    )
    consistency: Consistency | None = Field(
        None,
        description="Default for whether every mention of a name in a text takes the type of its first mention "
        "('first_mention') or is typed by its own context ('none'); default: the bundle's.",
    )
    max_batch_size: int = Field(8, ge=1, description="Most windows in one inference batch.")
    max_batch_tokens: int = Field(4096, ge=16, description="Most padded tokens (rows x padded length) in one batch.")
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Longest the oldest queued window waits for batch-mates "
        "(0: batches form from what queued while the previous batch ran).",
    )
    max_queue_windows: int = Field(
        2048, ge=1, description="Queued windows beyond which requests are refused with 503 (one maximal CJK text needs about 1,070)."
    )
    max_request_windows: int | None = Field(
        None,
        ge=1,
        description="Most windows one request may need, bounded from its characters before tokenising (413 beyond); "
        "default: what one text of max_text_chars may need. Must fit in max_queue_windows, so every request the schema "
        "admits can be queued on an idle service.",
    )
    max_texts_per_request: int = Field(64, ge=1)
    max_text_chars: int = Field(100_000, ge=1, description="Longer texts get 413.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="Deadline for a request from admission to its last window's logits; past it: 504 and its work is dropped."
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 on overload.")
    cpu_workers: int = Field(2, ge=1, description="Threads that tokenise and decode large requests off the event loop.")
    decode_batch_requests: int = Field(
        64,
        ge=1,
        description="Most requests decoded together in one call once their inference is done (their Viterbi and CRF "
        "recursions side by side); 1 decodes each alone.",
    )
    max_connections: int = Field(
        512, ge=1, description="Concurrent connections (uvicorn limit_concurrency); beyond it uvicorn answers 503 at once."
    )
    drain_grace_s: float = Field(
        3.0,
        ge=0,
        description="On SIGTERM, /ready answers 503 for this long before the listener closes, so load balancers stop sending.",
    )
    drain_timeout_s: float = Field(
        20.0, gt=0, description="On SIGTERM, the longest queued work may take to finish before it is failed (fits a 30 s grace period)."
    )
    stall_s: float = Field(30.0, gt=0, description="An inference batch running longer than this makes /ready answer 503.")
    admission_headroom: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Admit a request only if the queue, with it, drains within this share of the time left to the earliest "
        "deadline: room for the machine to slow down after admitting (load on shared cores), so 504s stay rare.",
    )
    initial_tokens_per_s: float = Field(
        2_000.0,
        gt=0,
        description="Drain rate admission assumes before any batch is measured (the warm-up batch replaces it); "
        "conservative: a request is refused rather than admitted to miss its deadline.",
    )
    warmup: bool = Field(True, description="Run one inference before reporting ready.")
    self_check: bool = Field(
        True, description="At startup, answer the bundle's golden texts and compare (a warning and /model's self_check on mismatch)."
    )
    api_keys: SecretStr | None = Field(None, description="Comma-separated API keys; when set, every route but health/ready needs one.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line (added to api_keys).")
    metrics_public: bool = Field(
        False, description="Serve /metrics on the main port without a key even when keys are set (prefer metrics_port)."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Also serve /metrics, without a key, on this port (bound to metrics_host) for Prometheus."
    )
    metrics_host: str = Field("127.0.0.1", description="Interface for metrics_port; 0.0.0.0 in containers.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty: CORS off.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug logs one line per request; errors are always logged."
    )
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line.")

    def key_digests(self) -> list[bytes]:
        """SHA-256 digests of the configured keys; the keys themselves are not kept elsewhere.

        Fails closed: keys configured (setting or file) that yield no key raise, so a typo or an
        empty mounted secret cannot start an open service.
        """
        keys = [k.strip() for k in (self.api_keys.get_secret_value() if self.api_keys else "").split(",")]
        if self.api_keys_file is not None:
            try:
                keys += [line.strip() for line in self.api_keys_file.read_text(encoding="utf-8").splitlines()]
            except OSError as exc:
                raise ValueError(f"api_keys_file {self.api_keys_file} unreadable: {exc.strerror}") from None
        digests = [hashlib.sha256(k.encode()).digest() for k in keys if k and not k.startswith("#")]
        if not digests and (self.api_keys is not None or self.api_keys_file is not None):
            raise ValueError("API keys are configured (api_keys or api_keys_file) but none was found: refusing to start without keys")
        return digests

    def named_models(self) -> dict[str, Path]:
        """The bundles of ``models`` or ``models_dir`` by name, in serving order (the first is the
        default unless ``default_model`` says otherwise); empty when neither is set, and
        ``model_path`` serves one model named after its bundle."""
        if self.models is not None and self.models_dir is not None:
            raise ValueError("set models or models_dir, not both")
        if self.models is not None:
            pairs = [_name_and_path(item) for item in self.models.split(",") if item.strip()]
            if not pairs:
                raise ValueError("models is set but names no model: give name=path,name=path")
        elif self.models_dir is not None:
            if not self.models_dir.is_dir():
                raise ValueError(f"models_dir {self.models_dir} is not a folder")
            pairs = [(p.name, p) for p in sorted(self.models_dir.iterdir()) if (p / "model.onnx").is_file()]
            if not pairs:
                raise ValueError(f"models_dir {self.models_dir} holds no bundle (no sub-folder with a model.onnx)")
        else:
            return {}
        named: dict[str, Path] = {}
        for name, path in pairs:
            if not _MODEL_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
            if name in named:
                raise ValueError(f"model name {name!r} is given twice")
            named[name] = path
        if self.default_model is not None and self.default_model not in named:
            raise ValueError(f"default_model {self.default_model!r} is not among the models: {', '.join(named)}")
        return named

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        self.named_models()
        return self

    @model_validator(mode="after")
    def _check_window(self) -> Settings:
        if self.drain_grace_s >= self.drain_timeout_s:
            raise ValueError(f"drain_grace_s {self.drain_grace_s} must be shorter than drain_timeout_s {self.drain_timeout_s}")
        if self.max_request_windows is not None and self.max_request_windows > self.max_queue_windows:
            raise ValueError(
                f"max_request_windows {self.max_request_windows} exceeds max_queue_windows {self.max_queue_windows}: "
                "such a request could never be queued"
            )
        return self


def _name_and_path(item: str) -> tuple[str, Path]:
    name, equals, path = (part.strip() for part in item.partition("="))
    if not equals or not name or not path:
        raise ValueError(f"models: {item.strip()!r} is not name=path")
    return name, Path(path)
