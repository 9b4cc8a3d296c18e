"""Wire models. Pydantic lives here only; the engine works on frozen dataclasses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from service.decoding.aggregate import Decoding, Strategy
from service.decoding.consistency import Consistency
from service.decoding.pipeline import Overlap

_EXAMPLE_TEXT = "IL-2 gene expression requires NF-kappa B activation in human T lymphocytes."
_MODEL_CHOICE = "Which loaded model answers (GET /models lists them; 404 unknown_model for another name). Default: the default model."


class NerRequest(BaseModel):
    """Send ``text`` (one string) or ``texts`` (a list); the answer has the same shape."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no coercion: "min_score": false is an error, not 0.0
        json_schema_extra={
            "examples": [
                {"text": _EXAMPLE_TEXT},
                {"texts": [_EXAMPLE_TEXT, "No entities here."], "min_score": 0.5},
                {"text": _EXAMPLE_TEXT, "model": "bioner-minilm-jnlpba"},
            ],
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
        },
    )

    # Optional but never null on the wire: the schema says exactly what is accepted.
    text: str = Field(None, description="One text; offsets index this exact string (Python str indices).")  # type: ignore[assignment]
    texts: list[str] = Field(None, min_length=1, description="Several texts, answered in order.")  # type: ignore[arg-type]
    model: str = Field(  # type: ignore[assignment]
        None, max_length=64, description=_MODEL_CHOICE, examples=["bioner-minilm-jnlpba"]
    )
    # strict=False: a JSON string is how an enum arrives; strict mode would want the Python member.
    aggregation_strategy: Strategy = Field(None, strict=False, description="Subword-to-word aggregation; default: the model's.")  # type: ignore[assignment]
    decoding: Decoding = Field(  # type: ignore[assignment]
        None,
        strict=False,
        description="greedy: arg-max per word, stray I- tags repaired into new spans; "
        "constrained: the most probable valid BIO sequence (Viterbi); "
        "crf: as constrained, with the learned transition scores of a model trained with a CRF head. Default: the model's.",
    )
    consistency: Consistency = Field(  # type: ignore[assignment]
        None,
        strict=False,
        description="first_mention: every later mention of a name in a text takes the type of its first mention "
        "(an abstract names a thing in full context once, then uses the bare name); none: each mention is typed by "
        "its own context. Default: the model's (GET /model).",
    )
    min_score: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop entities scoring below this (a calibrated probability on bundles with a temperature)."
    )
    alternatives: int = Field(  # not strict: JSON Schema counts 7.0 as an integer, so must we
        0,
        ge=0,
        le=8,
        strict=False,
        description="Give each entity up to this many other types with their (calibrated) probabilities, best first.",
    )
    labels: list[str] = Field(None, description="Keep only these entity types.")  # type: ignore[arg-type]
    heads: list[str] = Field(
        None,  # type: ignore[arg-type]
        description="Multi-head models: decode only these heads (see GET /model's heads). Default: all, from one encoder pass.",
    )
    overlap: Overlap = Field(
        Overlap.KEEP_ALL,
        strict=False,
        description="Spans from different heads may overlap (a cell line containing a species name): keep_all returns them all; "
        "longest keeps the longest of overlapping spans; highest_score the best-scoring one.",
    )
    timeout: float = Field(  # type: ignore[assignment]
        None,
        ge=1.0,  # a floor: one request's tiny deadline would otherwise shrink admission for everyone
        description="Seconds this request may take from admission to answer (at most the server's request_timeout_s). "
        "Refused at once (503 deadline_unmeetable, with Retry-After) when the queue cannot finish it in time.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> NerRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of 'text' or 'texts'")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' must not be empty")
        return self


MAX_LABELS = 64  # more label filters than any model has types
MAX_LABEL_CHARS = 64


def request_model(max_texts: int, max_chars: int, max_timeout_s: float = 30.0) -> type[NerRequest]:
    """``NerRequest`` with the configured limits in its schema, so validation stops at the first
    excess (pydantic checks a list's length before its items) instead of validating 200,000 items
    to refuse them afterwards, and the OpenAPI document states exactly what is accepted."""
    text = Annotated[str, StringConstraints(max_length=max_chars)]
    label = Annotated[str, StringConstraints(max_length=MAX_LABEL_CHARS)]
    fields: Any = {
        "text": (text, NerRequest.model_fields["text"]),
        "texts": (
            list[text],
            Field(None, min_length=1, max_length=max_texts, description=NerRequest.model_fields["texts"].description),
        ),
        "labels": (
            list[label],
            Field(None, max_length=MAX_LABELS, description=NerRequest.model_fields["labels"].description),
        ),
        "timeout": (float, Field(None, ge=1.0, le=max_timeout_s, description=NerRequest.model_fields["timeout"].description)),
    }
    return create_model("NerRequest", __base__=NerRequest, **fields)


class BratDocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(max_length=256)
    text: str = Field(description="The document's text (the .txt file).")
    ann: str = Field("", description="Its brat standoff annotations (the .ann file); T lines are scored.")


class EvaluateRequest(BaseModel):
    """Gold annotations in a lab's own format; the answer is the running model's strict span scores."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"format": "brat", "documents": [{"id": "d1", "text": "IL-2 binds", "ann": "T1\tprotein 0 4\tIL-2"}]},
                {"format": "columns", "content": "IL-2\tB-protein\nbinds\tO\n"},
                {"format": "jsonl", "content": '{"text": "IL-2 binds", "entities": [{"start": 0, "end": 4, "label": "protein"}]}'},
            ],
            # brat sends documents, the others content, never both: said in the schema too.
            "if": {"properties": {"format": {"const": "brat"}}},
            "then": {"required": ["documents"], "not": {"required": ["content"]}},
            "else": {"required": ["content"], "not": {"required": ["documents"]}},
        },
    )

    format: Literal["brat", "jsonl", "columns", "bioc_xml", "bioc_json", "pubtator"] = Field(
        description="brat: `documents`; the others: the file's `content` (BioC and PubTator gold is scored per passage)."
    )
    documents: list[BratDocumentIn] = Field(None, min_length=1, description="brat documents.")  # type: ignore[arg-type]
    content: str = Field(None, description="A JSON Lines or CoNLL column file's content.")  # type: ignore[assignment]
    separator: str = Field(" ", max_length=8, description="How column tokens are joined into text ('' for Chinese).")
    tag_map: dict[str, str] = Field(default_factory=dict, description="Tag cleaning rules for column files, e.g. {'I-I-MISC': 'I-MISC'}.")
    types: list[str] = Field(None, description="Score only these types (both sides), as `bioner evaluate --types`.")  # type: ignore[arg-type]
    dev_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Score only the dev split carved as `bioner evaluate --dev-fraction` does (0: all)."
    )
    seed: int = Field(13, strict=False, description="Seed of that split (`bioner evaluate --seed`).")
    model: str = Field(  # type: ignore[assignment]
        None, max_length=64, description=_MODEL_CHOICE, examples=["bioner-minilm-jnlpba"]
    )
    # The decoding choices /ner takes, so a lab can score them on its own gold before it picks one.
    aggregation_strategy: Strategy = Field(None, strict=False, description="As /ner's; default: the model's.")  # type: ignore[assignment]
    decoding: Decoding = Field(None, strict=False, description="As /ner's; default: the model's.")  # type: ignore[assignment]
    consistency: Consistency = Field(None, strict=False, description="As /ner's; default: the model's.")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateRequest:
        if (self.format == "brat") != (self.documents is not None) or (self.format != "brat") != (self.content is not None):
            raise ValueError("brat needs 'documents'; jsonl and columns need 'content' (and not the other)")
        return self


class AlternativeOut(BaseModel):
    label: str
    score: float


class EntityOut(BaseModel):
    start: int = Field(description="Start offset in the sent text (inclusive).")
    end: int = Field(description="End offset (exclusive); text == sent[start:end].")
    text: str
    label: str
    score: float = Field(description="Mean over the entity's words of the chosen label's probability.")
    alternatives: list[AlternativeOut] | None = Field(None, description="Present when the request asked for alternatives.")
    source: str = Field(description="The head that found it: the corpus it learned from (the model's name for a one-head model).")


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


_EXAMPLE_ENTITIES: Any = [
    {"start": 0, "end": 9, "text": "IL-2 gene", "label": "DNA", "score": 0.93, "source": "bioner-minilm-jnlpba"},
    {"start": 30, "end": 41, "text": "NF-kappa B", "label": "protein", "score": 0.97, "source": "bioner-minilm-jnlpba"},
]


class NerResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"entities": _EXAMPLE_ENTITIES, "model": {"name": "bioner-minilm-jnlpba", "version": "1", "sha256": "..."}}]
        }
    )

    entities: list[EntityOut]
    model: ModelRef


class NerBatchResponse(BaseModel):
    entities: list[list[EntityOut]] = Field(description="One entity list per input text, in order.")
    model: ModelRef


class PRFOut(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class EvaluateResponse(BaseModel):
    micro: PRFOut
    macro: PRFOut
    per_type: dict[str, PRFOut]
    documents: int
    model: ModelRef
    settings: dict[str, Any] = Field(description="Window, overlap, aggregation, decoding and provider the figures were made with.")


class ModelInfoOut(BaseModel):
    name: str
    version: str
    sha256: str
    labels: list[str]
    max_length: int
    stride: int
    window_align: str = Field("tokens", description="Where windows end: 'tokens' (fixed length, overlapping) or 'sentences'.")
    aggregation_strategy: str
    decoding: str
    consistency: str = Field("none", description="Whether a name keeps its first mention's type within a text, by default.")
    provider: str
    temperature: float = Field(1.0, description="Score calibration temperature fitted at export (1: raw probabilities).")
    heads: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The model's heads (name and labels), all decoded from one encoder pass; one for a single-corpus model.",
    )
    limits: dict[str, float] | None = Field(
        None, description="What one request may hold: max_texts_per_request, max_text_chars, max_request_windows, request_timeout_s."
    )
    self_check: dict[str, Any] | None = Field(
        None, description="The startup check against the bundle's golden answers (passed, texts differing, CPU); null without one."
    )


class HeadOut(BaseModel):
    name: str
    labels: list[str]


class ModelEntryOut(BaseModel):
    """One loaded model, as ``GET /models`` lists it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "bioner-minilm-jnlpba",
                    "default": True,
                    "version": "1.6.0",
                    "sha256": "d454998208f665365a68d1e5553933a07aa9daa624b57f42c669e2cca011ec1d",
                    "heads": [{"name": "bioner-minilm-jnlpba", "labels": ["DNA", "RNA", "cell_line", "cell_type", "protein"]}],
                    "labels": ["DNA", "RNA", "cell_line", "cell_type", "protein"],
                    "max_length": 128,
                    "stride": 32,
                    "window_align": "tokens",
                    "provider": "CPUExecutionProvider",
                    "decoding": "crf",
                    "aggregation_strategy": "first",
                    "consistency": "first_mention",
                }
            ]
        }
    )

    name: str = Field(description="What requests send as `model`.")
    default: bool = Field(description="True for the model of requests that name none (and of GET /model).")
    version: str
    sha256: str = Field(description="SHA-256 of the bundle's model.onnx.")
    heads: list[HeadOut] = Field(description="What the model recognises, head by head (one head per model for now).")
    labels: list[str]
    max_length: int = Field(description="Window length in tokens.")
    stride: int = Field(description="Overlap between windows in tokens.")
    window_align: str = Field(description="Where windows end: 'tokens' (fixed length, overlapping) or 'sentences'.")
    provider: str
    decoding: str
    aggregation_strategy: str
    consistency: str = Field(description="Whether a name keeps its first mention's type within a text, by default.")


class HealthOut(BaseModel):
    status: Literal["ok", "unhealthy"]
    reason: str | None = None


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    model: str | None = None
    reason: str | None = Field(None, description="Why not ready: starting, draining, a stopped or failing inference worker.")


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody
