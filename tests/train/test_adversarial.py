"""FGM on the word embeddings: the second gradient is the loss's at the moved table, the table comes back
bit for bit, and a tiny tagger trained with it still learns (and learns something else than without)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tiny_bert import make_base_model, make_corpus, tiny_train_config  # noqa: E402

from train.adversarial import EmbeddingAttack  # noqa: E402


def _loss(embedding: torch.nn.Embedding, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((embedding(ids).sum(1) - target) ** 2).sum()


def test_the_attack_adds_the_moved_tables_gradient_and_restores_the_table() -> None:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 4)
    ids, target = torch.tensor([[1, 2, 2], [3, 4, 0]]), torch.randn(2, 4)
    before = embedding.weight.detach().clone()
    _loss(embedding, ids, target).backward()
    clean = embedding.weight.grad.clone()  # type: ignore[union-attr]

    loss = EmbeddingAttack(embedding, 0.5)(lambda: _loss(embedding, ids, target))

    assert torch.equal(embedding.weight.detach(), before)  # exactly the table the optimiser will step on
    moved = torch.nn.Embedding(10, 4)
    with torch.no_grad():
        moved.weight.copy_(before + 0.5 * clean / torch.linalg.vector_norm(clean))
    expected = _loss(moved, ids, target)
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()))
    assert torch.allclose(embedding.weight.grad, clean + moved.weight.grad, atol=1e-6)  # type: ignore[arg-type, operator]
    assert float(expected.detach()) > float(_loss(embedding, ids, target).detach())  # the step raised this batch's loss


def test_no_gradient_no_attack_and_bad_settings_refused() -> None:
    embedding = torch.nn.Embedding(5, 3)
    attack = EmbeddingAttack(embedding, 1.0)
    calls: list[int] = []
    assert attack(lambda: calls.append(1) or torch.zeros(())) is None  # never back-propagated yet
    embedding.weight.grad = torch.zeros_like(embedding.weight)
    assert attack(lambda: calls.append(1) or torch.zeros(())) is None and not calls  # nothing to move along
    with pytest.raises(ValueError, match="above 0"):
        EmbeddingAttack(embedding, 0.0)
    with pytest.raises(ValueError, match="no weight table"):
        EmbeddingAttack(torch.nn.ReLU(), 1.0)


def test_a_tiny_crf_tagger_trains_with_the_attack(tmp_path: Path) -> None:
    from train.config import TrainConfig
    from train.finetune import train

    base, corpus = make_base_model(tmp_path / "base"), make_corpus(tmp_path / "corpus")
    settings = {"epochs": 4, "head": "crf", "crf_learning_rate": 0.1}
    plain = train(tiny_train_config(base, corpus, tmp_path / "plain", **settings))
    # the tiny table's rows have norms of about 0.1 (MiniLM's about 1), so a step of 1.0 would swamp them
    attacked = train(tiny_train_config(base, corpus, tmp_path / "fgm", adversarial_epsilon=0.05, **settings))
    assert attacked["dev"]["micro"]["f1"] > 0.8 and plain["dev"]["micro"]["f1"] > 0.8
    logs = [(tmp_path / run / "metrics.jsonl").read_text().splitlines()[1:] for run in ("plain", "fgm")]
    losses = [[json.loads(line)["train_loss"] for line in log] for log in logs]
    assert losses[0] != losses[1]  # the logged (clean) losses part from the first step on: the attack took part
    with pytest.raises(ValueError, match="--adversarial-epsilon"):
        TrainConfig(train=[str(corpus)], output=str(tmp_path / "x"), base_model=str(base), adversarial_epsilon=-1.0)
