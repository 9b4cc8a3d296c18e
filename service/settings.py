"""Every knob of the service: one pydantic-settings class, env prefix ``BIONER_``.

The CLI maps its flags one-to-one onto these fields; validators reject nonsense at startup.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_BUNDLE = Path("models") / "bioner-minilm-jnlpba"


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
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in containers.")
    port: int = Field(8000, ge=1, le=65535)
    provider: Provider = Field(Provider.CPU, description="ONNX Runtime execution provider.")
    intra_op_threads: int = Field(0, ge=0, description="Threads per inference (0: one per core).")
    inter_op_threads: int = Field(1, ge=0, description="Threads across graph nodes (1 is right for BERT graphs).")
    thread_spinning: bool = Field(
        True, description="Let ONNX Runtime idle threads spin between ops (ORT default; off frees CPU for other work on small machines)."
    )
    graph_optimization: GraphOptimization = Field(GraphOptimization.ALL, description="ONNX Runtime graph optimisation level.")
    max_length: int | None = Field(None, ge=8, le=4096, description="Window length in tokens; default: the bundle's training length.")
    stride: int | None = Field(None, ge=0, description="Overlap between windows in tokens; default: the bundle's.")
    aggregation_strategy: Literal["first", "average", "max"] | None = Field(
        None, description="Default subword aggregation; default: the bundle's."
    )
    decoding: Literal["greedy", "constrained", "crf"] | None = Field(
        None, description="Default label decoding; default: the bundle's (crf for CRF models, else constrained)."
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
    max_texts_per_request: int = Field(64, ge=1)
    max_text_chars: int = Field(100_000, ge=1, description="Longer texts get 413.")
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline for a request's windows; expired work is dropped (504).")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 on overload.")
    warmup: bool = Field(True, description="Run one inference before reporting ready.")
    api_keys: SecretStr | None = Field(None, description="Comma-separated API keys; when set, every route but health/ready needs one.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line (added to api_keys).")
    metrics_public: bool = Field(True, description="Serve /metrics without a key (for Prometheus inside the network).")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty: CORS off.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug logs one line per request; errors are always logged."
    )
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line.")

    def key_digests(self) -> list[bytes]:
        """SHA-256 digests of the configured keys; the keys themselves are not kept elsewhere."""
        keys = [k.strip() for k in (self.api_keys.get_secret_value() if self.api_keys else "").split(",")]
        if self.api_keys_file is not None:
            keys += [line.strip() for line in self.api_keys_file.read_text(encoding="utf-8").splitlines()]
        return [hashlib.sha256(k.encode()).digest() for k in keys if k and not k.startswith("#")]

    @model_validator(mode="after")
    def _check_window(self) -> Settings:
        if self.max_length is not None and self.stride is not None and self.stride >= self.max_length - 2:
            raise ValueError("stride (overlap) must be smaller than max_length minus the special tokens")
        return self
