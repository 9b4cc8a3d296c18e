"""Give a released bundle a new ``consistency`` default without its PyTorch weights: rewrite
``serving.json`` and ``golden.json`` so that the startup self-check holds the new answers.

``bioner export --consistency`` is the normal way (it makes the golden answers itself). This is for a
bundle whose checkpoint is gone (the joint model 0.3.0). Its golden answers are remade as follows:

- ``expected`` (the bundle's own graph): recomputed here through the served pipeline with the new
  default. The old answers are recomputed first under the old default and must match the file (spans
  exactly, scores within its tolerance), so this machine computes what the export machine did;
- ``reference`` (the fp32 graph's answers, kept to report agreement with fp32): the stored answers
  retyped by the same rule. Golden files do not record which head found a span, so the head is
  inferred from the label. A label two heads share (Disease) is resolved through the matching
  ``expected`` span, and the script stops if that is not possible for a span the rule would retype.

    python scripts/retype_golden.py --model models/bioner-minilm-joint --consistency first_mention --version 0.4.0
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from service.bundle_format import pipeline_for, write_serving
from service.decoding.aggregate import Entity
from service.decoding.consistency import Consistency, first_mention_across
from service.runtime.bundle import load_bundle
from service.runtime.golden import Span, cpu_summary, read_golden, spans_of, write_golden
from service.runtime.session import OnnxSession


def same(found: list[Span], stored: list[Span], tolerance: float) -> bool:
    return [s[:3] for s in found] == [s[:3] for s in stored] and all(abs(a[3] - b[3]) <= tolerance for a, b in zip(found, stored))


def retyped_reference(text: str, stored: list[Span], expected: list[Entity], heads: dict[str, list[str]]) -> list[Entity]:
    """The fp32 answers of one text under the rule, each span's head inferred from its label."""
    by_span = {(e.start, e.end, e.label): e.source for e in expected}
    entities = []
    for start, end, label, score in stored:
        owners = heads[label]
        source = owners[0] if len(owners) == 1 else by_span.get((start, end, label))
        if source is None:
            name = text[start:end]
            if any(text[a:b] == name and other != label for a, b, other, _ in stored):
                raise SystemExit(f"cannot tell which head found {name!r} ({label}) in {text[:40]!r}...")
            source = owners[0]  # the name has no other type in this text: the rule leaves it alone either way
        entities.append(Entity(start, end, label, score, text[start:end], source=source))
    return first_mention_across([entities])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--consistency", choices=[c.value for c in Consistency], required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    if args.consistency == Consistency.NONE.value:
        raise SystemExit("going back to 'none' needs the answers from before the rule: take the bundle from git")
    bundle = load_bundle(args.model)
    golden = read_golden(args.model)
    if golden is None:
        raise SystemExit(f"{args.model} has no golden answers")
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme))
    old = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
    replayed = old.predict(golden.texts, session.run)
    if not all(same(spans_of(found), stored, golden.score_tolerance) for found, stored in zip(replayed, golden.expected)):
        raise SystemExit("this machine does not reproduce the stored answers: remake them where it does")
    new = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id, consistency=Consistency(args.consistency))
    expected = new.predict(golden.texts, session.run)
    heads: dict[str, list[str]] = {}
    for head in old.heads:
        for label in head.scheme.entity_types:
            heads.setdefault(label, []).append(head.name)
    reference = [retyped_reference(text, stored, found, heads) for text, stored, found in zip(golden.texts, golden.reference, replayed)]
    made_on = {
        **golden.made_on,
        "expected_remade_on": cpu_summary(),
        "reference": f"the fp32 answers of version {bundle.version}, retyped by consistency {args.consistency} (scripts/retype_golden.py)",
    }
    write_golden(args.model, golden.texts, expected, reference, golden.score_tolerance, made_on)
    write_serving(args.model, replace(bundle.serving, consistency=Consistency(args.consistency), version=args.version))
    changed = sum(spans_of(a) != spans_of(b) for a, b in zip(expected, replayed))
    print(f"{args.model}: version {bundle.version} -> {args.version}, consistency {args.consistency}; {changed} golden texts changed")


if __name__ == "__main__":
    main()
