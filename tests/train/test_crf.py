"""CRF head: likelihood against enumeration, and a tiny model trained -> exported -> served -> decoded."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

from live_server import start_server, stop_server  # noqa: E402
from tiny_bert import export_bundle, make_base_model, make_corpus, tiny_train_config  # noqa: E402

from service.bundle_format import pipeline_for, read_serving  # noqa: E402
from service.decoding.aggregate import Decoding  # noqa: E402
from service.decoding.crf import FORBIDDEN  # noqa: E402
from service.decoding.labels import LabelScheme  # noqa: E402
from service.decoding.paths import allowed_transitions  # noqa: E402
from service.decoding.windows import TextEncoder  # noqa: E402
from train.align import IGNORE  # noqa: E402
from train.crf import CrfHead, labelled_positions  # noqa: E402

SCHEME = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})


def _brute_force_nll(head: CrfHead, emissions: torch.Tensor, tags: list[int]) -> float:
    trans, start, end = head.matrix().detach().double(), head.start.detach().double(), head.end.detach().double()
    em = emissions.double()

    def score(path: tuple[int, ...]) -> torch.Tensor:
        s = start[path[0]] + end[path[-1]] + sum(em[t, j] for t, j in enumerate(path))
        return s + sum((trans[a, b] for a, b in zip(path, path[1:])), torch.tensor(0.0, dtype=torch.float64))

    log_z = torch.logsumexp(torch.stack([score(p) for p in itertools.product(range(len(SCHEME)), repeat=len(tags))]), dim=0)
    return float(log_z - score(tuple(tags)))


def _random_head_and_ragged_batch() -> tuple[CrfHead, torch.Tensor, torch.Tensor, list[int]]:
    torch.manual_seed(1)
    head = CrfHead(SCHEME)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    lengths = [3, 1, 4]
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return head, torch.randn(3, 4, 5), mask, lengths


def test_nll_equals_enumeration_over_ragged_batches() -> None:
    head, emissions, mask, lengths = _random_head_and_ragged_batch()
    gold = [[1, 2, 0], [3], [0, 3, 4, 4]]
    tags = torch.zeros(3, 4, dtype=torch.long)
    for i, (n, g) in enumerate(zip(lengths, gold)):
        tags[i, :n] = torch.tensor(g)
    expected = np.mean([_brute_force_nll(head, emissions[i, :n], g) for i, (n, g) in enumerate(zip(lengths, gold))])
    assert float(head.nll(emissions, tags, mask).detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_marginals_equal_the_services_forward_backward_over_ragged_batches(temperature: float) -> None:
    from service.decoding.paths import crf_marginals

    head, emissions, mask, lengths = _random_head_and_ragged_batch()
    log_q = head.log_marginals(emissions, mask, temperature).detach().double()
    allowed, _ = allowed_transitions(SCHEME)
    tempered = head.to_transitions().tempered(temperature)
    for i, n in enumerate(lengths):
        expected = crf_marginals(emissions[i, :n].double().numpy() / temperature, allowed, np.ones(5, dtype=bool), tempered)
        assert np.allclose(log_q[i, :n].exp().numpy(), expected, atol=1e-6)


def test_marginals_are_the_gradient_of_the_log_partition() -> None:
    head, emissions, mask, lengths = _random_head_and_ragged_batch()
    emissions.requires_grad_(True)
    log_z = head._log_partition(emissions, mask, head.matrix()).sum()
    (grad,) = torch.autograd.grad(log_z, emissions)
    q = head.log_marginals(emissions, mask).exp()
    assert torch.allclose((q * mask.unsqueeze(-1)).detach(), grad, atol=1e-5)


def test_crf_distillation_loss_limits() -> None:
    from train.crf import CrfTagger

    class Emitting(torch.nn.Module):  # a "model" whose logits are the input: the loss alone under test
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
            return type("Out", (), {"logits": input_ids})()

    head, emissions, mask, lengths = _random_head_and_ragged_batch()
    tagger = CrfTagger(Emitting(), SCHEME)
    tagger.crf = head
    labels = torch.where(mask, torch.randint(0, 1, mask.shape), torch.full(mask.shape, IGNORE))  # all O: valid BIO
    batch = {"input_ids": emissions, "attention_mask": mask.long(), "token_type_ids": torch.zeros_like(mask.long()), "labels": labels}
    own = head.log_marginals(emissions, mask, 2.0).exp().detach()
    # alpha 0: the CRF's own likelihood
    assert torch.allclose(tagger.distill_loss(batch, own, 0.0, 2.0), tagger.loss(batch))
    # a student that already has the teacher's marginals has nothing left to learn from it
    assert float(tagger.distill_loss(batch, own, 1.0, 2.0).detach()) == pytest.approx(0.0, abs=1e-5)
    assert float(tagger.distill_loss(batch, torch.full_like(own, 0.2), 1.0, 2.0).detach()) > 0.01


def test_forbidden_moves_are_pinned_and_untrained() -> None:
    head = CrfHead(SCHEME)
    allowed, _ = allowed_transitions(SCHEME)
    emissions = torch.randn(2, 3, 5)
    tags = torch.tensor([[1, 2, 0], [3, 4, 0]])
    head.nll(emissions, tags, torch.ones(2, 3, dtype=torch.bool)).backward()
    assert head.transitions.grad is not None
    assert torch.all(head.transitions.grad[torch.from_numpy(~allowed)] == 0)
    matrix = head.matrix().detach().numpy()
    assert np.all(matrix[~allowed] == FORBIDDEN) and np.all(matrix[allowed] == 0)


def test_labelled_positions_are_gathered_in_order() -> None:
    logits = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1).expand(2, 5, 3).contiguous()
    labels = torch.tensor([[IGNORE, 1, IGNORE, 2, IGNORE], [IGNORE, IGNORE, 0, IGNORE, IGNORE]])
    empty = torch.full((1, 5), IGNORE)
    emissions, tags, mask = labelled_positions(torch.cat([logits, logits[:1]]), torch.cat([labels, empty]))
    assert emissions.shape == (2, 2, 3)  # the row without labels is dropped
    assert emissions[:, :, 0].tolist() == [[1.0, 3.0], [7.0, 5.0]]  # row 2: position 7, then padding (position 0 of row 2 -> 5)
    assert tags.tolist() == [[1, 2], [0, 0]] and mask.tolist() == [[True, True], [True, False]]


@pytest.fixture(scope="module")
def crf_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.finetune import train

    root = tmp_path_factory.mktemp("crf")
    base, corpus = make_base_model(root / "base"), make_corpus(root / "corpus")
    train(tiny_train_config(base, corpus, root / "ckpt", head="crf", crf_learning_rate=0.1))
    flags = ["--data", str(corpus), "--dev-fraction", "0.25", "--quantize", "none", "--name", "crf", "--version", "0"]
    assert export_bundle(root / "ckpt", root / "bundle", *flags) == 0
    return root / "bundle"


def test_crf_checkpoint_and_bundle_carry_learned_transitions(crf_bundle: Path) -> None:
    serving = read_serving(crf_bundle)
    assert serving.default_decoding is Decoding.CRF and serving.transitions is not None
    allowed, _ = allowed_transitions(SCHEME)
    learned = serving.transitions.matrix[allowed]
    assert np.abs(learned).max() > 0  # one epoch moved them from zero
    assert np.all(serving.transitions.matrix[~allowed] == FORBIDDEN)
    assert read_serving(crf_bundle.parent / "ckpt").transitions is not None
    card = (crf_bundle / "MODEL_CARD.md").read_text()
    assert "Decoding: `crf`" in card and "--head crf" in card


def test_crf_bundle_is_calibrated_on_its_marginals(crf_bundle: Path) -> None:
    calibration = json.loads((crf_bundle / "parity.json").read_text())["calibration"]
    assert calibration["fitted_on"] == "word marginals of the CRF"
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9  # the fitted T is at least as good as T = 1
    assert read_serving(crf_bundle).temperature == calibration["temperature"] != 1.0
    assert (crf_bundle / "reliability.png").stat().st_size > 0


def test_crf_temperature_applies_to_crf_scores_only(crf_bundle: Path) -> None:
    from service.decoding.aggregate import Strategy
    from service.errors import UnsupportedOptionError
    from train.backends import onnx_runner

    serving = read_serving(crf_bundle)
    scheme = LabelScheme.from_id2label(json.loads((crf_bundle / "config.json").read_text())["id2label"])
    calibrated = pipeline_for(serving, TextEncoder.from_file(crf_bundle / "tokenizer.json"), scheme)
    raw = calibrated.with_temperature(1.0)
    texts = ["the p53 kinase binds the myc gene in cells .", "myc gene p53 kinase the myc"]
    run = onnx_runner(crf_bundle / "model.onnx")

    def answers(pipeline: object, **options: object) -> list[tuple[int, int, str, float]]:
        chosen = pipeline.options(**options)  # type: ignore[attr-defined]
        found = pipeline.predict(texts, run, options=chosen)  # type: ignore[attr-defined]
        return [(e.start, e.end, e.label, round(e.score, 6)) for ents in found for e in ents]

    crf_calibrated, crf_raw = answers(calibrated), answers(raw)
    assert crf_calibrated and [a[:3] for a in crf_calibrated] == [a[:3] for a in crf_raw]
    assert [a[3] for a in crf_calibrated] != [a[3] for a in crf_raw]
    # The temperature was fitted on CRF marginals: softmax scores under another decoding stay raw.
    assert answers(calibrated, decoding=Decoding.CONSTRAINED) == answers(raw, decoding=Decoding.CONSTRAINED)
    with pytest.raises(UnsupportedOptionError, match="first"):
        calibrated.options(strategy=Strategy.AVERAGE)


def test_bad_config_combinations_are_refused() -> None:
    from train.finetune import TrainConfig

    with pytest.raises(ValueError, match="class weights"):
        TrainConfig(train=[], output="o", base_model="b", head="crf", loss="welt")
    with pytest.raises(ValueError, match="label-policy first"):
        TrainConfig(train=[], output="o", base_model="b", head="crf", label_policy="all")


def test_served_crf_bundle_answers_as_evaluate_decodes(crf_bundle: Path) -> None:
    from train.backends import onnx_runner

    texts = [
        "the p53 kinase binds the myc gene in cells .",
        "myc gene p53 kinase the myc",
        "the p53 kinase binds the myc gene in cells . " * 6,  # several windows: Viterbi across boundaries
    ]
    serving = read_serving(crf_bundle)
    scheme = LabelScheme.from_id2label(json.loads((crf_bundle / "config.json").read_text())["id2label"])
    pipeline = pipeline_for(serving, TextEncoder.from_file(crf_bundle / "tokenizer.json"), scheme)
    assert pipeline.defaults.decoding is Decoding.CRF
    expected = pipeline.predict(texts, onnx_runner(crf_bundle / "model.onnx"))
    proc, url = start_server(crf_bundle)
    try:
        model = httpx.get(f"{url}/model").json()
        assert model["decoding"] == "crf"
        body = httpx.post(f"{url}/ner", json={"texts": texts}, timeout=30).json()
        served = [[(e["start"], e["end"], e["label"]) for e in ents] for ents in body["entities"]]
        assert served == [[(e.start, e.end, e.label) for e in ents] for ents in expected]
        assert any(served)  # the tiny model learned something to compare
        constrained = httpx.post(f"{url}/ner", json={"texts": texts, "decoding": "constrained"}, timeout=30)
        assert constrained.status_code == 200
    finally:
        stop_server(proc)
