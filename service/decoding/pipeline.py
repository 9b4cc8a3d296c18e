"""One decoding pipeline: texts -> window rows (``plan``), window logits -> entities (``finish``).

The service's engine runs plan -> micro-batcher -> finish; evaluation, export, calibration and
benchmarks run plan -> :meth:`Pipeline.run` -> finish. A served answer and an evaluated one are
therefore one computation, not two implementations kept equal by a test.

A :class:`Pipeline` is built once from a bundle's serving configuration (or a checkpoint's), and
the rules that depend on the model (CRF decoding needs transition scores, the window must hold
content, requested labels and heads must exist) are checked here and nowhere else.

A bundle may have several heads (one per training corpus) over one encoder: the graph's logits
are the heads' columns side by side, so one pass of the encoder feeds every head, and ``finish``
decodes each head from its own columns. Their entities come back in one list, each with its
``source``; spans of different heads may overlap, and ``Overlap`` says what to do about it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from service.decoding.aggregate import (
    Decoding,
    Entity,
    Strategy,
    WordScores,
    choose_labels,
    entities_from_spans,
    label_spans,
    softmax,
    word_scores,
)
from service.decoding.calibration import calibrated_probs
from service.decoding.consistency import Consistency, first_mention_types
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.windows import DEFAULT_WINDOW, Encoded, TextEncoder, WindowConfig, WindowSpan, stitch
from service.errors import UnsupportedOptionError

# (input_ids, attention_mask) both (rows, padded_len) int64 -> logits (rows, padded_len, labels)
RunBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Texts whose path recursions run together: enough to share each step's numpy call overhead,
# few enough that a run's padding (to its longest text) and back-pointers stay small.
_DECODE_RUN = 64
_DECODE_WORDS = 1 << 16


class Overlap(str, Enum):
    """What to do with overlapping spans from different heads."""

    KEEP_ALL = "keep_all"  # every head's entities, overlaps included
    LONGEST = "longest"  # of overlapping spans keep the longest (then the higher score)
    HIGHEST_SCORE = "highest_score"  # of overlapping spans keep the highest score (then the longer)


@dataclass(frozen=True)
class Head:
    """One token-classification head: its labels, its columns of the graph's logits, and its
    own CRF transition scores and calibration temperature."""

    name: str
    scheme: LabelScheme
    columns: slice
    transitions: Transitions | None = None
    temperature: float = 1.0


@dataclass(frozen=True)
class Options:
    """Per-request decoding choices; only :meth:`Pipeline.options` makes them, checked."""

    strategy: Strategy
    decoding: Decoding
    min_score: float = 0.0
    labels: frozenset[str] | None = None
    alternatives: int = 0
    heads: frozenset[str] | None = None
    overlap: Overlap = Overlap.KEEP_ALL
    consistency: Consistency = Consistency.NONE


@dataclass(frozen=True)
class TextPlan:
    """One text's subwords and the windows that cover them."""

    text: str
    encoded: Encoded
    spans: tuple[WindowSpan, ...]


@dataclass(frozen=True)
class Plan:
    """Texts in request order and their window rows, text by text, window by window."""

    texts: tuple[TextPlan, ...]
    rows: tuple[np.ndarray, ...]

    @property
    def tokens(self) -> int:
        return sum(len(t.encoded) for t in self.texts)

    @property
    def work_tokens(self) -> int:
        """Tokens the model reads (content of every window, overlaps counted twice, no specials or padding)."""
        return sum(s.end - s.start for t in self.texts for s in t.spans)


@dataclass(frozen=True)
class Finishing:
    """One request's windows back from the model, to be turned into entities."""

    plan: Plan
    window_logits: Sequence[np.ndarray]
    options: Options


@dataclass(frozen=True)
class _Unit:
    """One text of one request under one head, its words scored, its labels not yet chosen."""

    job: int
    index: int
    text: TextPlan
    head: int  # its position in the pipeline's heads
    options: Options
    scores: WordScores


def _runs(units: list[_Unit]) -> Iterator[list[_Unit]]:
    """Consecutive units (sorted by length) whose recursions run together: each run pads to its
    longest text, and holds at most ``_DECODE_RUN`` texts and ``_DECODE_WORDS`` padded words, so
    memory stays that of a few abstracts even when a request sends many book-length texts."""
    run: list[_Unit] = []
    for unit in units:
        if run and (len(run) == _DECODE_RUN or (len(run) + 1) * len(unit.scores.words.probs) > _DECODE_WORDS):
            yield run
            run = []
        run.append(unit)
    if run:
        yield run


def resolve_overlaps(entities: Sequence[Entity], overlap: Overlap) -> list[Entity]:
    """Sorted by offset; with ``LONGEST`` or ``HIGHEST_SCORE``, a span that overlaps a preferred
    one is dropped (greedy, in preference order)."""
    ordered = sorted(entities, key=lambda e: (e.start, e.end, e.source, e.label))
    if overlap is Overlap.KEEP_ALL or len(ordered) < 2:
        return ordered
    if overlap is Overlap.LONGEST:
        preference = sorted(ordered, key=lambda e: (-(e.end - e.start), -e.score, e.start))
    else:
        preference = sorted(ordered, key=lambda e: (-e.score, -(e.end - e.start), e.start))
    kept: list[Entity] = []
    for entity in preference:
        if all(entity.end <= k.start or k.end <= entity.start for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: (e.start, e.end, e.source, e.label))


def pad_windows(rows: Sequence[np.ndarray], pad_id: int = 0, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id rows to the longest (or to ``width``, if longer); returns ``(input_ids, attention_mask)``."""
    width = max(width, *(len(r) for r in rows))
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def run_rows(run_batch: RunBatch, rows: Sequence[np.ndarray], pad_id: int = 0) -> list[np.ndarray]:
    """One padded batch through the model; each row's logits cut back to the row's own length."""
    ids, mask = pad_windows(rows, pad_id)
    logits = run_batch(ids, mask)
    return [logits[i, : len(row)] for i, row in enumerate(rows)]


class Pipeline:
    def __init__(
        self,
        encoder: TextEncoder,
        scheme: LabelScheme | Sequence[Head],
        window: WindowConfig = DEFAULT_WINDOW,
        strategy: Strategy = Strategy.FIRST,
        decoding: Decoding = Decoding.CONSTRAINED,
        transitions: Transitions | None = None,
        temperature: float = 1.0,
        pad_id: int = 0,
        name: str = "",
        consistency: Consistency = Consistency.NONE,
    ) -> None:
        """``scheme``: one head's labels (a single-head bundle, named ``name``), or the heads."""
        window.validate(encoder.n_special)
        if isinstance(scheme, LabelScheme):
            heads: tuple[Head, ...] = (Head(name, scheme, slice(0, len(scheme)), transitions, temperature),)
        else:
            heads = tuple(scheme)
            if not heads or len({h.name for h in heads}) != len(heads):
                raise ValueError(f"heads must be at least one, with distinct names: {[h.name for h in heads]}")
        self.encoder = encoder
        self.heads = heads
        self.window = window
        self.pad_id = pad_id
        self.n_columns = max(h.columns.stop for h in heads)
        # Entity types in head order, each once (two heads may share a type, e.g. Disease).
        self.labels: tuple[str, ...] = tuple(dict.fromkeys(t for h in heads for t in h.scheme.entity_types))
        crf_everywhere = all(h.transitions is not None for h in heads)
        self.decodings: tuple[Decoding, ...] = tuple(d for d in Decoding if d is not Decoding.CRF or crf_everywhere)
        self.defaults = self._checked(Options(strategy, decoding, consistency=consistency))

    @property
    def scheme(self) -> LabelScheme:
        """A single-head pipeline's labels (training, calibration and evaluation work on one head)."""
        if len(self.heads) != 1:
            raise ValueError(f"this pipeline has {len(self.heads)} heads; pick one with .head(name)")
        return self.heads[0].scheme

    @property
    def temperature(self) -> float:
        return self.heads[0].temperature if len(self.heads) == 1 else 1.0

    def head(self, name: str) -> Pipeline:
        """The same pipeline restricted to one head, its columns first: to evaluate or calibrate it."""
        chosen = next((h for h in self.heads if h.name == name), None)
        if chosen is None:
            raise UnsupportedOptionError(f"unknown head {name!r}; this model has {[h.name for h in self.heads]}")
        twin = copy.copy(self)
        twin.heads = (chosen,)
        twin.labels = chosen.scheme.entity_types
        return twin

    def with_temperature(self, temperature: float) -> Pipeline:
        """The same single-head pipeline scoring with another calibration temperature (fitting it at export)."""
        twin = copy.copy(self)
        twin.heads = tuple(replace(h, temperature=temperature) for h in self.heads)
        return twin

    def options(
        self,
        strategy: Strategy | None = None,
        decoding: Decoding | None = None,
        min_score: float = 0.0,
        labels: Sequence[str] | None = None,
        alternatives: int = 0,
        heads: Sequence[str] | None = None,
        overlap: Overlap = Overlap.KEEP_ALL,
        consistency: Consistency | None = None,
    ) -> Options:
        """This model's defaults with a request's choices on top."""
        chosen = Options(
            strategy or self.defaults.strategy,
            decoding or self.defaults.decoding,
            min_score,
            frozenset(labels) if labels else None,
            alternatives,
            frozenset(heads) if heads else None,
            overlap,
            consistency or self.defaults.consistency,
        )
        return self._checked(chosen)

    def _checked(self, options: Options) -> Options:
        """Refuses what this model cannot do: the only place these rules are checked."""
        if options.decoding not in self.decodings:
            raise UnsupportedOptionError(f"decoding '{options.decoding.value}' needs a model trained with a CRF head; this one has none")
        if options.decoding is Decoding.CRF and options.strategy is not Strategy.FIRST:
            raise UnsupportedOptionError("decoding 'crf' reads each word's first subword, as the CRF was trained; strategy must be 'first'")
        unknown = sorted((options.labels or frozenset()) - set(self.labels))
        if unknown:
            raise UnsupportedOptionError(f"unknown labels {unknown}; this model knows {list(self.labels)}")
        names = [h.name for h in self.heads]
        if missing := sorted((options.heads or frozenset()) - set(names)):
            raise UnsupportedOptionError(f"unknown heads {missing}; this model has {names}")
        return options

    def window_bound(self, n_chars: int) -> int:
        """Most windows a text of ``n_chars`` characters can need: every subword covers at least one
        character. Cheap, so a request that could never fit is refused before any tokenising."""
        return self.window.max_windows(n_chars, self.encoder.n_special)

    def plan(self, texts: Sequence[str], encoded: Sequence[Encoded] | None = None) -> Plan:
        """Tokenise (unless ``encoded`` is given) and cut every text into window rows."""
        encoder = self.encoder
        encoded = encoder.encode_batch(texts) if encoded is None else encoded
        plans = tuple(TextPlan(t, e, tuple(self.window.plan_text(t, e, encoder.n_special))) for t, e in zip(texts, encoded))
        rows = tuple(encoder.window_ids(p.encoded, span) for p in plans for span in p.spans)
        return Plan(plans, rows)

    def token_logits(self, plan: Plan, window_logits: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per text, stitched content logits ``(n_tokens, columns)`` from each row's logits."""
        if len(window_logits) != len(plan.rows):
            raise ValueError(f"{len(window_logits)} window results for {len(plan.rows)} windows")
        n_prefix = len(self.encoder.prefix_ids)
        out: list[np.ndarray] = []
        cursor = 0
        for text in plan.texts:
            content = [window_logits[cursor + k][n_prefix : n_prefix + span.end - span.start] for k, span in enumerate(text.spans)]
            cursor += len(text.spans)
            if not text.spans:
                out.append(np.zeros((0, self.n_columns), dtype=np.float32))
            else:
                out.append(stitch(len(text.encoded), text.spans, content).astype(np.float32))
        return out

    def finish(self, plan: Plan, window_logits: Sequence[np.ndarray], options: Options | None = None) -> list[list[Entity]]:
        """Entities per text from every (chosen) head, sorted by offset, overlaps resolved as asked,
        filtered by the options' labels and minimum score."""
        return self.finish_many([Finishing(plan, window_logits, options or self.defaults)])[0]

    def finish_many(self, jobs: Sequence[Finishing]) -> list[list[list[Entity]]]:
        """``finish`` for several requests at once: every text that one head decodes one way goes
        through the path recursions together (one numpy step per word of the longest text instead
        of one per word of every text). Each request's answer is what ``finish`` alone gives."""
        units: list[_Unit] = []
        for j, job in enumerate(jobs):
            heads = [(k, h) for k, h in enumerate(self.heads) if job.options.heads is None or h.name in job.options.heads]
            for t, (text, logits) in enumerate(zip(job.plan.texts, self.token_logits(job.plan, job.window_logits))):
                if len(text.encoded):
                    units.extend(self._unit(j, t, text, logits[:, head.columns], k, job.options) for k, head in heads)
        groups: dict[tuple[int, Decoding], list[_Unit]] = {}
        for unit in units:
            groups.setdefault((unit.head, unit.options.decoding), []).append(unit)
        found: list[list[list[Entity]]] = [[[] for _ in job.plan.texts] for job in jobs]
        for (k, decoding), group in groups.items():
            head = self.heads[k]
            temperature = self._temperature(head, decoding)  # read only by CRF decoding, to temper the whole CRF
            for run in _runs(sorted(group, key=lambda u: len(u.scores.words.probs))):
                chosen = choose_labels([u.scores for u in run], head.scheme, decoding, head.transitions, temperature)
                for unit, (labels, confidence) in zip(run, chosen):
                    text, words, alternatives = unit.text, unit.scores.words, unit.options.alternatives
                    spans = label_spans(labels, head.scheme)
                    decided_by = None
                    if unit.options.consistency is Consistency.FIRST_MENTION:
                        spans, decided_by = first_mention_types(text.text, text.encoded.offsets, words, spans)
                    entities = entities_from_spans(
                        text.text, text.encoded.offsets, words, spans, labels, confidence, head.scheme, alternatives, head.name, decided_by
                    )
                    found[unit.job][unit.index].extend(entities)
        return [[self._kept(entities, job.options) for entities in per_text] for job, per_text in zip(jobs, found)]

    @staticmethod
    def _kept(found: list[Entity], options: Options) -> list[Entity]:
        keep = options.labels
        found = [e for e in found if e.score >= options.min_score and (keep is None or e.label in keep)]
        return resolve_overlaps(found, options.overlap)

    def _temperature(self, head: Head, decoding: Decoding) -> float:
        """A temperature calibrates the scores it was fitted on: CRF marginals under a CRF default,
        else the word softmax. A request that switches between the two gets raw scores."""
        crf = decoding is Decoding.CRF
        return head.temperature if crf == (self.defaults.decoding is Decoding.CRF) else 1.0

    def _unit(self, job: int, index: int, text: TextPlan, logits: np.ndarray, k: int, options: Options) -> _Unit:
        head = self.heads[k]
        calibrated = None if options.decoding is Decoding.CRF else calibrated_probs(logits, self._temperature(head, options.decoding))
        return _Unit(job, index, text, k, options, word_scores(softmax(logits), text.encoded.word_ids, options.strategy, calibrated))

    def run(self, run_batch: RunBatch, plan: Plan, batch_size: int = 16) -> list[np.ndarray]:
        """Every row of ``plan`` through ``run_batch`` in length-sorted batches; logits in row order."""
        order = sorted(range(len(plan.rows)), key=lambda i: len(plan.rows[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(plan.rows)
        for lo in range(0, len(order), batch_size):
            chunk = order[lo : lo + batch_size]
            for i, logits in zip(chunk, run_rows(run_batch, [plan.rows[i] for i in chunk], self.pad_id)):
                out[i] = logits
        return out

    def predict(
        self, texts: Sequence[str], run_batch: RunBatch, batch_size: int = 16, options: Options | None = None
    ) -> list[list[Entity]]:
        """plan -> run -> finish, synchronously: evaluation, export and the startup self-check."""
        plan = self.plan(texts)
        return self.finish(plan, self.run(run_batch, plan, batch_size), options)
