"""Text -> windows -> ONNX -> spans on the tiny hand-weighted bundle (known answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.decoding.aggregate import Decoding, Strategy
from service.decoding.crf import Transitions
from service.decoding.pipeline import Finishing, Pipeline
from service.decoding.windows import WindowConfig
from service.runtime.bundle import Bundle, load_bundle
from service.runtime.session import OnnxSession


@pytest.fixture(scope="module")
def runtime(tiny_bundle: Path) -> tuple[Bundle, OnnxSession]:
    bundle = load_bundle(tiny_bundle)
    return bundle, OnnxSession(bundle.onnx_path, len(bundle.scheme))


def predict(
    runtime: tuple[Bundle, OnnxSession],
    text: str,
    max_length: int = 16,
    stride: int = 4,
    strategy: Strategy = Strategy.FIRST,
    decoding: Decoding = Decoding.GREEDY,
) -> list[tuple[str, str]]:
    bundle, session = runtime
    pipeline = Pipeline(bundle.encoder, bundle.scheme, WindowConfig(max_length, stride), strategy, decoding)
    [entities] = pipeline.predict([text], session.run)
    assert all(text[e.start : e.end] == e.text for e in entities)
    return [(e.text, e.label) for e in entities]


def test_known_entities(runtime: tuple[Bundle, OnnxSession]) -> None:
    text = "The p53 kinase binds the myc gene in cells."
    assert predict(runtime, text, max_length=64) == [("p53 kinase", "protein"), ("myc gene", "DNA")]


def test_entity_split_across_two_windows(runtime: tuple[Bundle, OnnxSession]) -> None:
    # windows of 6 content tokens with overlap 2: the long entity crosses several window edges
    text = "the the the the p53 kinase kinase kinase kinase kinase the myc gene"
    one_window = predict(runtime, text, max_length=64, stride=4)
    assert predict(runtime, text, max_length=8, stride=2) == one_window
    assert one_window[0] == ("p53 kinase kinase kinase kinase kinase", "protein")


def test_stray_inside_tag_opens_a_new_entity(runtime: tuple[Bundle, OnnxSession]) -> None:
    assert predict(runtime, "the kinase binds") == [("kinase", "protein")]


def test_adjacent_entities_of_different_types(runtime: tuple[Bundle, OnnxSession]) -> None:
    assert predict(runtime, "p53 myc gene") == [("p53", "protein"), ("myc gene", "DNA")]


def test_strategies_on_subwords(runtime: tuple[Bundle, OnnxSession]) -> None:
    # "p53x" = p53 (B-protein, 4.0) + ##x (I-DNA, 6.0)
    assert predict(runtime, "the p53x", strategy=Strategy.FIRST) == [("p53x", "protein")]
    assert predict(runtime, "the p53x", strategy=Strategy.MAX) == [("p53x", "DNA")]


def test_constrained_decoding_keeps_valid_entities(runtime: tuple[Bundle, OnnxSession]) -> None:
    text = "The p53 kinase binds the myc gene in cells."
    assert predict(runtime, text, decoding=Decoding.CONSTRAINED) == [("p53 kinase", "protein"), ("myc gene", "DNA")]


def test_chinese_without_spaces(runtime: tuple[Bundle, OnnxSession]) -> None:
    assert predict(runtime, "在蛋白质在") == [("蛋白质", "protein")]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u200b", "\x00"])
def test_empty_and_whitespace_text(runtime: tuple[Bundle, OnnxSession], text: str) -> None:
    assert predict(runtime, text) == []


@pytest.mark.parametrize(
    "text",
    ["Café p53 naïve kinase", "α-p53 β kinase", "p53\u0301 kinase", "😀p53😀 kinase 🧬", "p53\u200d kinase", "مرحبا p53 kinase"],
)
def test_unicode_offsets(runtime: tuple[Bundle, OnnxSession], text: str) -> None:
    found = predict(runtime, text)  # the helper asserts text[start:end] == entity.text
    assert any(label == "protein" for _, label in found)


ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200) | st.lists(
    st.sampled_from(["p53", "kinase", "myc", "gene", " ", "蛋", "白", "x", "\u0301", "-", "😀"]), max_size=60
).map("".join)


def test_spans_always_slice_the_input(runtime: tuple[Bundle, OnnxSession]) -> None:
    bundle, session = runtime
    n = len(bundle.scheme)
    checked: list[int] = []  # entities checked per example: the property must not hold over nothing

    @settings(max_examples=300, deadline=None)
    @example("The p53 kinase binds the myc gene in cells.")
    @given(ANY_TEXT)
    def spans_slice(text: str) -> None:
        crf = Transitions(np.random.default_rng(len(text)).normal(size=(n, n)), np.zeros(n), np.zeros(n))
        pipeline = Pipeline(bundle.encoder, bundle.scheme, WindowConfig(8, 2), transitions=crf)
        for strategy, decoding in [(s, d) for s in Strategy for d in Decoding if d is not Decoding.CRF or s is Strategy.FIRST]:
            [entities] = pipeline.predict([text], session.run, options=pipeline.options(strategy, decoding))
            previous_end = 0
            for e in entities:
                assert text[e.start : e.end] == e.text
                assert e.text == e.text.strip() and e.text
                assert e.start >= previous_end  # sorted and non-overlapping
                assert 0.0 <= e.score <= 1.0
                previous_end = e.end
            checked.append(len(entities))

    spans_slice()
    assert sum(checked) > 0, "no example produced an entity"


def test_requests_finished_together_get_what_each_gets_alone(runtime: tuple[Bundle, OnnxSession]) -> None:
    """The engine decodes the requests whose inference is done as one batch; each answer must be
    exactly the one ``finish`` gives that request alone, whatever its options."""
    bundle, session = runtime
    n = len(bundle.scheme)
    crf = Transitions(np.random.default_rng(5).normal(size=(n, n)), np.zeros(n), np.zeros(n))
    pipeline = Pipeline(bundle.encoder, bundle.scheme, WindowConfig(8, 2), transitions=crf, decoding=Decoding.CRF)
    requests = [
        (["The p53 kinase binds the myc gene in cells.", "", "p53"], pipeline.options()),
        (["myc gene and p53 kinase " * 5], pipeline.options(decoding=Decoding.CONSTRAINED, alternatives=2)),
        (["The p53 kinase binds the myc gene."], pipeline.options(Strategy.MAX, Decoding.GREEDY, min_score=0.3)),
        (["cells p53 myc", "the myc gene"], pipeline.options(labels=["DNA"])),
    ]
    jobs = []
    for texts, options in requests:
        plan = pipeline.plan(texts)
        jobs.append(Finishing(plan, pipeline.run(session.run, plan), options))
    together = pipeline.finish_many(jobs)
    alone = [pipeline.finish(job.plan, job.window_logits, job.options) for job in jobs]
    assert together == alone
    assert [len(found) for found in together] == [3, 1, 1, 2] and together[0][1] == []
    assert any(found for per_request in together for found in per_request), "no entity at all: nothing compared"


def test_cuda_request_falls_back_to_cpu_here(tiny_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    from service.runtime.session import choose_providers
    from service.settings import Provider

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    assert choose_providers(Provider.CUDA) == ["CPUExecutionProvider"]
    assert "falling back to CPU" in caplog.text
    bundle = load_bundle(tiny_bundle)
    assert OnnxSession(bundle.onnx_path, len(bundle.scheme), Provider.CUDA).provider == "CPUExecutionProvider"


def test_bundle_label_width_mismatch_fails_fast(tmp_path: Path) -> None:
    from tiny_bundle import write_bundle

    from service.errors import BundleError

    folder = write_bundle(tmp_path / "b", labels=["O", "B-protein", "I-protein"])
    bundle = load_bundle(folder)
    with pytest.raises(BundleError, match="5 logits per token but config.json has 3 labels"):
        OnnxSession(bundle.onnx_path, len(bundle.scheme))
