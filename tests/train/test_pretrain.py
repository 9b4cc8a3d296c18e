"""Masked-LM adaptation and vocabulary extension on tiny data; Chinese offsets through a served bundle."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum")

from live_server import start_server, stop_server  # noqa: E402
from tiny_bert import export_bundle, make_base_model  # noqa: E402

from service.decoding.windows import TextEncoder  # noqa: E402
from train.align import IGNORE  # noqa: E402
from train.data import read_texts, without_texts_of  # noqa: E402
from train.pretrain import Chunk, chunk_texts, mask_words, masked_loss  # noqa: E402
from train.vocab import extend_vocabulary  # noqa: E402

ENGLISH = ["the p53 kinase binds the myc gene in cells .", "myc gene in cells", "the kinase binds p53 ."] * 6
# (characters, tags) sentences of a character-per-line Chinese corpus: 蛋白 = protein, 癌症 = disease
CHINESE = [
    ("本发明涉及蛋白和癌症。", "O O O O O B-protein I-protein O B-disease I-disease O"),
    ("癌症与蛋白有关。", "B-disease I-disease O B-protein I-protein O O O"),
    ("该蛋白抑制癌症。", "O B-protein I-protein O O B-disease I-disease O"),
]


def _chinese_columns(path: Path, repeat: int = 8) -> Path:
    lines = []
    for _ in range(repeat):
        for chars, tags in CHINESE:
            lines += [f"{c} {t}" for c, t in zip(chars, tags.split())] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _encoder(folder: Path) -> TextEncoder:
    return TextEncoder.from_file(folder / "tokenizer.json")


def test_whole_words_are_masked_together_and_specials_never(tmp_path: Path) -> None:
    base = make_base_model(tmp_path / "base")
    encoder = _encoder(base)
    [chunk] = chunk_texts(["p53x kinase binds mycx"], encoder, 32)  # "p53 ##x" and "myc ##x": two-subword words
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids, labels = mask_words(chunk, 0.3, mask_id=4, vocab_size=15, special_ids={0, 1, 2, 3, 4}, rng=rng)
        masked = labels != IGNORE
        assert masked.any()
        assert not masked[0] and not masked[-1]  # [CLS] and [SEP]
        for word in np.unique(chunk.word_ids[chunk.word_ids >= 0]):
            positions = chunk.word_ids == word
            assert masked[positions].all() or not masked[positions].any()
        assert np.array_equal(labels[masked], chunk.input_ids[masked])
        assert np.array_equal(ids[~masked], chunk.input_ids[~masked])


def test_masked_positions_only_give_the_full_models_loss(tmp_path: Path) -> None:
    import torch
    from transformers import BertForMaskedLM

    from train.batches import pad_labelled

    base = make_base_model(tmp_path / "base")
    model = BertForMaskedLM.from_pretrained(base).eval()
    chunks = chunk_texts(["p53x kinase binds mycx in the cells .", "the myc gene", "kinase binds p53 ."], _encoder(base), 32)
    rng = np.random.default_rng(3)
    batch = pad_labelled([mask_words(c, 0.3, mask_id=4, vocab_size=15, special_ids={0, 1, 2, 3, 4}, rng=rng) for c in chunks], 0)
    with torch.no_grad():
        full = model(**batch).loss
        assert torch.allclose(masked_loss(model, batch), full, atol=1e-6)
        summed = masked_loss(model, batch, reduction="sum")
    assert torch.allclose(summed / int((batch["labels"] != IGNORE).sum()), full, atol=1e-6)


def test_chunks_respect_the_length_and_keep_every_token(tmp_path: Path) -> None:
    encoder = _encoder(make_base_model(tmp_path / "base"))
    text = " ".join(["p53x kinase"] * 30)
    chunks = chunk_texts([text], encoder, 10)
    assert all(len(c.input_ids) <= 10 for c in chunks)
    content = np.concatenate([c.input_ids[1:-1] for c in chunks])
    assert np.array_equal(content, encoder.encode(text).ids)
    for c in chunks:  # no word split across chunks: each chunk starts on a word's first subword
        assert isinstance(c, Chunk) and c.input_ids[1] != 14  # 14 = "##x"


def test_read_texts_formats(tmp_path: Path) -> None:
    (tmp_path / "raw.txt").write_text("first text\n\n  second text \n", encoding="utf-8")
    assert read_texts(tmp_path / "raw.txt") == ["first text", "second text"]
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "json text", "entities": []}) + "\n", encoding="utf-8")
    assert read_texts(tmp_path / "docs.jsonl") == ["json text"]
    assert read_texts(_chinese_columns(tmp_path / "zh.bio", repeat=1), separator="") == [c for c, _ in CHINESE]


def test_dev_text_is_left_out_whole_as_part_of_a_joined_document_or_around_one() -> None:
    il2, nfkb, p53 = "IL-2 binds its receptor on T cells.", "NF-kB  enters the nucleus of B cells.", "p53 is mutated in most tumours."
    texts = [il2, nfkb, p53, f"{il2} Twice.", "Results", f"Abstract. {p53} More."]
    joined_dev = ["NF-kB enters the nucleus of B cells. p53 is mutated in most tumours."]  # whitespace differs from nfkb
    assert without_texts_of(texts, joined_dev) == [il2, f"{il2} Twice.", "Results", texts[5]]  # [5] shares a sentence only
    # a text around a dev text goes too; a short heading that happens to occur in dev text stays
    assert without_texts_of(texts, [il2, "Results of the assay on T cells"]) == [nfkb, p53, "Results", texts[5]]
    # another corpus's tokenisation of the same sentence: JNLPBA's column files split at hyphens and brackets
    assert without_texts_of(texts, ["IL - 2 binds its receptor on T cells ."]) == texts[1:3] + texts[4:]


@pytest.mark.parametrize("dev_seed", [None, 7])
def test_pretraining_leaves_out_the_ner_dev_split(tmp_path: Path, dev_seed: int | None) -> None:
    from service.corpora.load import split_dev
    from train.cli import main
    from train.data import read_all

    corpus = tmp_path / "docs.jsonl"
    docs = [{"text": f"document {i} names the p53 kinase and gene {i} .", "entities": []} for i in range(20)]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    raw = tmp_path / "raw.txt"  # document i appears i + 1 times: which documents left tells in the count
    raw.write_text("".join(f"{d['text']}\n" * (i + 1) for i, d in enumerate(docs)), encoding="utf-8")
    argv = ["pretrain", "--text", str(raw), "--base-model", str(make_base_model(tmp_path / "base")), "--output", str(tmp_path / "mlm")]
    argv += ["--exclude-dev-of", str(corpus), "--max-steps", "1", "--batch-size", "4", "--held-out-fraction", "0.2"]
    argv += [] if dev_seed is None else ["--dev-seed", str(dev_seed)]
    assert main(argv) == 0
    record = json.loads((tmp_path / "mlm" / "pretrain.json").read_text())

    def left_out(seed: int) -> int:  # what `bioner train --dev-fraction 0.1 --dev-seed SEED` scores on, with its copies
        return sum(int(d.text.split()[1]) + 1 for d in split_dev(read_all([str(corpus)], None, " "), 0.1, seed)[1])

    assert left_out(7) != left_out(13), "the two seeds carve different documents: the test tells them apart"
    expected = left_out(13 if dev_seed is None else dev_seed)
    assert record["dev_texts_left_out"] == expected and record["texts"] == 210 - expected


def test_vocabulary_extension_appends_unknown_characters(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    base = make_base_model(tmp_path / "base")
    before = _encoder(base)
    padded = Tokenizer.from_file(str(base / "tokenizer.json"))  # as all-MiniLM-L6-v2 ships it: padding and truncation at 128
    padded.enable_padding(length=128)
    padded.enable_truncation(128)
    padded.save(str(base / "tokenizer.json"))
    added = extend_vocabulary(base, tmp_path / "ext", [c for c, _ in CHINESE] + ["p53 kinase"])
    assert set(added) >= set("蛋白癌症本发明。") and len(added) == len(set(added))
    assert "." not in added  # already a token of the base vocabulary
    after = _encoder(tmp_path / "ext")
    old = before.encode("the p53 kinase")
    assert np.array_equal(after.encode("the p53 kinase").ids, old.ids)  # existing ids unchanged
    encoded = after.encode("该蛋白")
    assert list(encoded.ids) == [15 + added.index(c) for c in "该蛋白"]
    assert encoded.offsets.tolist() == [[0, 1], [1, 2], [2, 3]]
    vocab = (tmp_path / "ext" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[15:] == added


@pytest.fixture(scope="module")
def chinese_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny English base -> vocabulary + masked-LM adaptation on Chinese text -> NER -> ONNX bundle."""
    from train.cli import main

    root = tmp_path_factory.mktemp("zh")
    base = make_base_model(root / "base")
    corpus = _chinese_columns(root / "train.bio")
    adapted = root / "adapted"
    argv = ["pretrain", "--text", str(corpus), "--base-model", str(base), "--output", str(adapted), "--separator", ""]
    argv += [
        "--add-vocab-from",
        str(corpus),
        "--max-steps",
        "4",
        "--head-warmup-steps",
        "2",
        "--batch-size",
        "4",
        "--held-out-fraction",
        "0.2",
    ]
    assert main(argv) == 0
    record = json.loads((adapted / "pretrain.json").read_text())
    assert record["added_vocabulary"] >= 12 and record["head_initialised"] is False  # the tiny base ships its MLM head
    assert all(np.isfinite(record[k]) for k in ("perplexity_as_loaded", "perplexity_before", "perplexity_after"))
    argv = ["train", "--train", str(corpus), "--base-model", str(adapted), "--output", str(root / "ckpt"), "--separator", ""]
    argv += ["--epochs", "3", "--batch-size", "4", "--learning-rate", "5e-3", "--max-length", "24", "--stride", "6", "--dropout", "0"]
    assert main(argv) == 0
    flags = ["--data", str(corpus), "--separator", "", "--dev-fraction", "0.5", "--quantize", "none", "--name", "zh", "--version", "0"]
    assert export_bundle(root / "ckpt", root / "bundle", *flags) == 0
    parity = json.loads((root / "bundle" / "parity.json").read_text())
    assert parity["dev"]["onnx_fp32"]["micro"]["f1"] == pytest.approx(parity["dev"]["pytorch"]["micro"]["f1"])
    return root / "bundle"


def test_adapted_encoder_has_the_extended_embeddings(chinese_bundle: Path) -> None:
    config = json.loads((chinese_bundle / "config.json").read_text())
    vocab = (chinese_bundle / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert config["vocab_size"] == len(vocab) > 15
    encoded = _encoder(chinese_bundle).encode("该蛋白抑制癌症")
    assert 1 not in encoded.ids  # no [UNK]
    assert "--separator ''" in (chinese_bundle / "MODEL_CARD.md").read_text()  # the card's command rebuilds it


def test_service_offsets_on_chinese_text(chinese_bundle: Path) -> None:
    texts = ["本发明涉及蛋白和癌症。", "前言：该蛋白抑制癌症，😀 并且 蛋白 与 癌症。"]
    proc, url = start_server(chinese_bundle)
    try:
        body = httpx.post(f"{url}/ner", json={"texts": texts}, timeout=30).json()
    finally:
        stop_server(proc)
    found = [[(e["start"], e["end"], e["label"], e["text"]) for e in ents] for ents in body["entities"]]
    for text, ents in zip(texts, found):
        assert all(text[s:e] == t for s, e, _, t in ents)
    assert (5, 7, "protein", "蛋白") in found[0] and (8, 10, "disease", "癌症") in found[0]
