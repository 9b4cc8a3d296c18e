"""One file annotated with the service's own pipeline, in-process: read, plan, run, finish, write.

The same function serves the local processes and the Ray actors, so the two produce the same
bytes for the same input by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.bulk.files import Job, write_atomically
from service.bundle_format import pipeline_for
from service.decoding.consistency import Consistency, first_mention_documents
from service.documents.annotate import add_entities
from service.documents.formats import Format, read_documents, sniff, write_documents
from service.documents.offsets import OffsetUnit
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession


@dataclass(frozen=True)
class Options:
    model_path: Path
    output_format: Format = Format.JSONL
    offsets: OffsetUnit = OffsetUnit.CODEPOINT
    keep_existing: bool = True
    threads: int = 1  # ONNX Runtime intra-op threads per process
    batch_size: int = 16


@dataclass(frozen=True)
class FileStats:
    documents: int
    passages: int
    tokens: int
    entities: int
    input_bytes: int


class FileAnnotator:
    """The model loaded once (per process or Ray actor), then any number of files."""

    def __init__(self, options: Options) -> None:
        self.options = options
        bundle = load_bundle(options.model_path)
        self.pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
        self.session = OnnxSession(bundle.onnx_path, len(bundle.scheme), intra_op_threads=options.threads, spinning=False)
        self.session.check_reads(bundle.encoder.token_types, bundle.path)
        self.provenance = {"model": bundle.name, "model_version": bundle.version, "model_sha256": bundle.sha256}

    def __call__(self, job: Job) -> FileStats:
        data = job.source.read_bytes()
        collection = read_documents(data, sniff(data, job.source.name), self.options.offsets, str(job.source))
        texts = [p.text for p in collection.passages()]
        plan = self.pipeline.plan(texts)
        found = self.pipeline.finish(plan, self.pipeline.run(self.session.run, plan, self.options.batch_size))
        if self.pipeline.defaults.consistency is Consistency.FIRST_MENTION:  # a title's names carry into the abstract
            found = first_mention_documents([len(d.passages) for d in collection.documents], found)
        add_entities(collection, found, self.provenance, self.options.keep_existing)
        write_atomically(job.target, write_documents(collection, self.options.output_format, self.options.offsets))
        return FileStats(len(collection.documents), len(texts), plan.tokens, sum(map(len, found)), len(data))
