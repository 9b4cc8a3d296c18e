"""The settings of ``bioner train`` and ``bioner pretrain``: every field is a flag of the same name.

Defaults follow the published SciBERT-on-JNLPBA recipe (window 128, batch 32, AdamW 5e-5, linear
decay after 10% warmup, classifier dropout 0.3). The configs are written into each checkpoint
(``serving.json``'s ``train_config``, ``pretrain.json``), which is why run-time switches such as
``--resume`` and ``--folds`` are not fields: they do not change what a run learns.

Torch-free, so that building the CLI parser does not import the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.corpora.columns import parse_tag_map
from train.corpus_spec import parse_heads
from train.flags import flag

DEVICE = "where to train: auto picks the GPU when torch sees one, else the CPU"
BASE_MODEL = "hub name or local folder of a Hugging Face encoder"
EPOCHS_DIR = "epochs"  # under a run folder: each epoch's weights, with --keep-epochs
SEPARATOR = "how column-file tokens are joined into text ('' for Chinese)"


def dev_split_seed(seed: int, dev_seed: int | None) -> int:
    """The one rule: the dev split is carved with ``--dev-seed`` when given, else with ``--seed``."""
    return seed if dev_seed is None else dev_seed


def split_seed_of(train_config: dict[str, Any], chosen: int | None = None) -> int:
    """``chosen`` when given, else the seed a saved run carved its dev split with (``serving.json``'s
    ``train_config``), so that export, evaluate and studies score on that run's dev documents untold."""
    if chosen is not None:
        return chosen
    seed, dev_seed = train_config.get("seed"), train_config.get("dev_seed")
    return dev_split_seed(13 if seed is None else int(seed), None if dev_seed is None else int(dev_seed))


@dataclass
class TrainConfig:
    """One fine-tuning run (``bioner train``)."""

    train: list[str] = field(metadata=flag("brat folder, column file or .jsonl (several allowed)"))
    output: str = field(metadata=flag("checkpoint folder: the best epoch, metrics.jsonl and the resume state"))
    base_model: str = field(metadata=flag(BASE_MODEL))
    dev: list[str] = field(default_factory=list, metadata=flag("dev files; default: carve --dev-fraction from train by document"))
    dev_fraction: float = field(default=0.1, metadata=flag("share of --train documents carved as dev when no --dev is given"))
    epochs: int = field(default=3, metadata=flag("fine-tuning epochs; the best by dev strict span F1 is kept"))
    batch_size: int = field(default=32, metadata=flag("windows per optimiser step"))
    learning_rate: float = field(default=5e-5, metadata=flag("peak AdamW learning rate of the encoder and classifier"))
    weight_decay: float = field(default=0.01, metadata=flag("AdamW weight decay (never on biases and norms)"))
    warmup_ratio: float = field(default=0.1, metadata=flag("share of steps with linear warm-up before linear decay"))
    dropout: float = field(default=0.3, metadata=flag("classifier dropout"))
    max_length: int = field(default=128, metadata=flag("window length in tokens, specials included"))
    stride: int = field(default=32, metadata=flag("overlap between windows in tokens"))
    window_align: str = field(
        default="tokens",
        metadata=flag(
            "where windows end, in training, dev scoring and the bundle's serving default: every max_length - stride "
            "tokens, or at a sentence start in a window's second half (overlap only inside long sentences)",
            choices=("tokens", "sentences"),
        ),
    )
    label_policy: str = field(
        default="first", metadata=flag("first: train each word's first subword; all: every subword", choices=("first", "all"))
    )
    token_types: str | None = field(
        default=None,
        metadata=flag(
            "what the model reads as token types: case marks subwords written with an upper-case letter (the uncased "
            "tokenizer drops case); default: the base checkpoint's, none for a plain encoder",
            choices=("none", "case"),
        ),
    )
    loss: str = field(default="ce", metadata=flag("class weighting against the dominant O tag", choices=("ce", "welt", "ens")))
    ens_beta: float = field(default=0.99, metadata=flag("beta of the effective-number weights (--loss ens)"))
    head: str = field(
        default="linear", metadata=flag("crf: linear-chain CRF over word emissions (with --loss ce)", choices=("linear", "crf"))
    )
    crf_learning_rate: float = field(default=1e-2, metadata=flag("learning rate of the CRF transition scores"))
    seed: int = field(
        default=13, metadata=flag("seeds the dev split (unless --dev-seed), subsets, batch order, dropout and initial weights")
    )
    dev_seed: int | None = field(
        default=None,
        metadata=flag(
            "seeds the dev split alone (default: --seed), so that runs of other seeds score on the same dev documents "
            "(seed spread, ensembles)"
        ),
    )
    threads: int = field(default=0, metadata=flag("torch threads (0: library default)"))
    device: str = field(default="auto", metadata=flag(DEVICE, choices=("auto", "cpu", "cuda")))
    max_steps: int = field(default=0, metadata=flag("stop after this many steps (smoke runs)"))
    tag_map: dict[str, str] = field(
        default_factory=dict, metadata=flag("cleaning rules for malformed tags: 'I-I-MISC=I-MISC,0=O'", parse=parse_tag_map)
    )
    separator: str = field(default=" ", metadata=flag(SEPARATOR))
    join_sentences: int = field(
        default=1,
        metadata=flag(
            "join this many consecutive column-file sentences into one document (train, --dev and folds alike); "
            "8 trains on abstract-length windows as the service runs them (train-joint's default); 1: sentences alone"
        ),
    )
    train_fraction: float = field(default=1.0, metadata=flag("train on this seeded share of the training documents"))
    aux_train: list[str] = field(
        default_factory=list, metadata=flag("general-domain corpus for multi-task training (own head, not exported)")
    )
    aux_tag_map: dict[str, str] = field(
        default_factory=dict, metadata=flag("tag cleaning rules for --aux-train, as --tag-map", parse=parse_tag_map)
    )
    aux_ratio: float = field(default=0.5, metadata=flag("share of multi-task batches drawn from --aux-train"))
    aux_epochs: int = field(default=1, metadata=flag("multi-task epochs before fine-tuning on --train alone"))
    teacher: list[str] = field(
        default_factory=list,
        metadata=flag("checkpoint or ONNX bundle whose soft labels the model also learns (several: an ensemble, averaged)"),
    )
    distill_text: list[str] = field(
        default_factory=list,
        metadata=flag("unlabelled text (.txt lines or any --train format, tags ignored) the teacher labels for the model too"),
    )
    distill_alpha: float = field(default=0.5, metadata=flag("share of the loss from the teacher's soft labels (--teacher)"))
    distill_temperature: float = field(default=2.0, metadata=flag("softmax temperature of teacher and student in that term"))
    student_layers: int = field(
        default=0, metadata=flag("keep this many of the base encoder's layers, evenly spaced, ending with the last (0: all)")
    )
    qat_epochs: int = field(
        default=0,
        metadata=flag(
            "train the last N of --epochs through simulated int8 (every linear layer and embedding table, s7 weights), so that "
            "`bioner export --quantize static --keep-fp32 attention_scores` keeps the accuracy"
        ),
    )
    adversarial_epsilon: float = field(
        default=0.0,
        metadata=flag(
            "FGM adversarial training: each step also trains on the word embeddings moved this far along their loss "
            "gradient (0: off; 1.0 is the usual value; a step then costs two passes). Fine-tuning epochs only, not --aux-train's"
        ),
    )
    keep_epochs: bool = field(
        default=False, metadata=flag("also keep every epoch's weights under epochs/ (for `bioner average`: checkpoint averaging)")
    )

    @property
    def split_seed(self) -> int:
        """The seed the dev split is carved with."""
        return dev_split_seed(self.seed, self.dev_seed)

    def __post_init__(self) -> None:
        if self.dev and self.dev_seed is not None:
            raise ValueError("--dev-seed seeds the dev split carved from --train; with --dev files there is none to carve")
        if self.head not in ("linear", "crf"):
            raise ValueError(f"head must be 'linear' or 'crf', not {self.head!r}")
        if self.head == "crf" and self.loss != "ce":
            raise ValueError("--head crf trains on the CRF's own sequence likelihood; class weights (--loss welt|ens) do not apply")
        if self.head == "crf" and self.label_policy != "first":
            raise ValueError("--head crf scores word sequences: it needs --label-policy first")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train fraction must be in (0, 1], not {self.train_fraction}")
        if self.aux_train and not 0.0 < self.aux_ratio < 1.0:
            raise ValueError(f"aux ratio must be in (0, 1), not {self.aux_ratio}")
        if self.aux_train and self.head == "crf":
            raise ValueError("multi-task training (--aux-train) is implemented for the linear head only")
        if self.teacher and self.aux_train:
            raise ValueError("distillation (--teacher) is implemented without --aux-train")
        if self.distill_text and not self.teacher:
            raise ValueError("--distill-text needs a --teacher to label it")
        if not 0.0 <= self.distill_alpha <= 1.0 or self.distill_temperature <= 0.0:
            raise ValueError("--distill-alpha must be in [0, 1] and --distill-temperature above 0")
        if not 0 <= self.qat_epochs <= self.epochs:
            raise ValueError(f"--qat-epochs must be between 0 and --epochs ({self.epochs}), not {self.qat_epochs}")
        if self.adversarial_epsilon < 0.0:
            raise ValueError(f"--adversarial-epsilon must be 0 (off) or above, not {self.adversarial_epsilon}")
        if self.student_layers < 0:
            raise ValueError(f"student layers must be 0 (all) or more, not {self.student_layers}")


@dataclass
class PretrainConfig:
    """One masked-LM adaptation run (``bioner pretrain``)."""

    text: list[str] = field(metadata=flag(".txt (one text per line), .jsonl, brat folder or column file(s)"))
    base_model: str = field(metadata=flag(BASE_MODEL))
    output: str = field(metadata=flag("adapted encoder folder; pass it to `train --base-model`"))
    epochs: int = field(default=1, metadata=flag("adaptation epochs (with --max-steps 0)"))
    batch_size: int = field(default=32, metadata=flag("windows per optimiser step"))
    learning_rate: float = field(default=5e-5, metadata=flag("peak AdamW learning rate of the adaptation"))
    max_length: int = field(default=128, metadata=flag("window length in tokens, specials included"))
    mask_probability: float = field(default=0.15, metadata=flag("share of words masked (whole-word masking)"))
    held_out_fraction: float = field(default=0.05, metadata=flag("texts kept aside for perplexity before/after"))
    exclude_dev_of: list[str] = field(
        default_factory=list,
        metadata=flag(
            "NER corpora whose dev split (--dev-fraction, --seed, as `bioner train` carves it) is left out of the "
            "adaptation text, so their dev F1 stays a measure on text the encoder never read"
        ),
    )
    dev_fraction: float = field(default=0.1, metadata=flag("the dev share --exclude-dev-of carves"))
    dev_seed: int | None = field(
        default=None, metadata=flag("the --dev-seed of the training run whose dev split --exclude-dev-of leaves out (default: --seed)")
    )
    dev_join_sentences: int = field(
        default=1, metadata=flag("the --join-sentences of the training run whose dev split --exclude-dev-of leaves out")
    )
    head_warmup_steps: int = field(default=0, metadata=flag("train only the masked-LM head first (base models shipped without one)"))
    head_learning_rate: float = field(default=1e-3, metadata=flag("peak learning rate of the head warm-up"))
    add_vocab_from: list[str] = field(
        default_factory=list, metadata=flag("corpora whose characters unknown to the tokenizer join the vocabulary")
    )
    separator: str = field(default=" ", metadata=flag(SEPARATOR))
    seed: int = field(default=13, metadata=flag("seeds the held-out split, batch order, masking and dropout"))
    threads: int = field(default=0, metadata=flag("torch threads (0: library default)"))
    device: str = field(default="auto", metadata=flag(DEVICE, choices=("auto", "cpu", "cuda")))
    max_steps: int = field(default=0, metadata=flag("adaptation steps (0: full epochs)"))


@dataclass
class JointConfig:
    """One multi-head run (``bioner train-joint``): a shared encoder, one token-classification head per corpus."""

    corpora: list[str] = field(
        metadata=flag(
            "NAME=PATH per head (brat, columns, JSON Lines, BioC, PubTator); NAME=PATH,PATH feeds one head from several "
            "corpora, PATH@LABEL+LABEL keeps only those types of a file"
        )
    )
    output: str = field(metadata=flag("checkpoint folder: encoder/, heads.pt, serving.json with the heads, metrics.jsonl"))
    base_model: str = field(metadata=flag(BASE_MODEL))
    dev_fraction: float = field(default=0.1, metadata=flag("share of each corpus's documents carved as its dev set"))
    epochs: int = field(default=3, metadata=flag("epochs; one epoch draws as many batches as all corpora hold together"))
    batch_size: int = field(default=32, metadata=flag("windows per optimiser step (all from one corpus)"))
    learning_rate: float = field(default=5e-5, metadata=flag("peak AdamW learning rate"))
    weight_decay: float = field(default=0.01, metadata=flag("AdamW weight decay (never on biases and norms)"))
    warmup_ratio: float = field(default=0.1, metadata=flag("share of steps with linear warm-up before linear decay"))
    dropout: float = field(default=0.3, metadata=flag("head dropout"))
    max_length: int = field(default=128, metadata=flag("window length in tokens, specials included"))
    stride: int = field(default=32, metadata=flag("overlap between windows in tokens"))
    sampling_alpha: float = field(
        default=0.5,
        metadata=flag("a batch comes from corpus i with probability proportional to (its windows)^alpha: 1 proportional, 0 uniform"),
    )
    separator: str = field(default=" ", metadata=flag(SEPARATOR))
    join_sentences: int = field(
        default=8,
        metadata=flag(
            "join this many consecutive column-file sentences into one document (before the dev split), so "
            "training windows hold abstract-length text as served ones do; 1: sentences alone"
        ),
    )
    seed: int = field(default=13, metadata=flag("seeds the dev splits, batch order, corpus draws, dropout and initial weights"))
    threads: int = field(default=0, metadata=flag("torch threads (0: library default)"))
    device: str = field(default="auto", metadata=flag(DEVICE, choices=("auto", "cpu", "cuda")))
    max_steps: int = field(default=0, metadata=flag("stop after this many steps (smoke runs)"))
    steps_per_epoch: int = field(
        default=0,
        metadata=flag("optimiser steps an epoch (0: as many batches as the heads' windows hold); fixes the compute when heads change"),
    )

    def __post_init__(self) -> None:
        parse_heads(self.corpora)  # raises on a malformed spec before any file is read
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ValueError(f"sampling alpha must be in [0, 1], not {self.sampling_alpha}")
