"""A tiny BERT (2 layers, hidden 32) with its own WordPiece vocabulary, trained for a few seconds on
simulator tickets and written as a complete model folder (ONNX fp32 + int8, tokenizer, label maps,
thresholds). For tests and for stream development; its predictions are weak on purpose.

    .venv/bin/python -m tests.support.tiny_model OUT_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from triage.labels import LABEL_HEADS
from triage.taxonomy import BANK_WORKSPACE, TAXONOMY_FILE, bank


def build_tiny_base(base_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """A random-init BERT folder with a WordPiece tokenizer for `texts`: the special tokens, every character (alone
    and as a continuation) and the most frequent words, ties broken alphabetically. Built by hand because the
    tokenizers trainer breaks ties in hash order, which differs between runs, and so would the tiny model."""
    from collections import Counter

    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    vocab = [*special, *chars, *(f"##{c}" for c in chars)]
    frequent = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    vocab += frequent[: max(0, 1500 - len(vocab))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128)
    base_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(base_dir))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=130, pad_token_id=0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(base_dir))
    return base_dir


def build_tiny_model(out_dir: Path, seed: int = 0, rows: int = 600, epochs: int = 4, say: object = None, *,
                     data: Path | None = None, text_col: str = "text", label_cols: tuple[str, ...] = LABEL_HEADS,
                     taxonomy: Path | None = None, ood_label: str | None = None) -> Path:
    """Write a complete, small model folder to `out_dir` (about 10 s on 2 cores); returns it.

    Trained on simulated bank tickets, or on `data` (a team's own labelled file) with its own labels.
    """
    from apps.simulator import write_csv
    from ml.data import load_file
    from ml.train import TrainingArgs, train

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="triage-tiny-") as tmp:
        if data is None:
            csv_path = Path(tmp) / "sim.csv"
            write_csv(csv_path, rows, seed=seed, ood_rate=0.08)
            taxonomy, ood_label = BANK_WORKSPACE / TAXONOMY_FILE, bank().out_of_scope
        else:
            csv_path = data
        ds = load_file(csv_path, text_col=text_col, label_cols=list(label_cols), ood_label=ood_label)
        base = build_tiny_base(Path(tmp) / "base", ds.texts, seed=seed)
        args = TrainingArgs(output_dir=str(out_dir), data=str(csv_path), base=str(base), ood_label=ood_label,
                            text_col=text_col, label_cols=list(label_cols),
                            taxonomy=str(taxonomy) if taxonomy else None,
                            epochs=epochs, batch_size=16, lr_encoder=3e-3, lr_heads=1e-2, dropout=0.0, patience=epochs,
                            max_length=96, val_fraction=0.2, freeze_word_embeddings=False,
                            seed=seed, progress=False, reference_rows=500)
        train(args, say=(lambda _m: None) if say is None else say, dataset=ds)  # type: ignore[arg-type]
    return out_dir


def _source_key() -> str:
    """Hash of what the tiny model is built from: a change to any of it means a new cached model."""
    from triage.settings import PROJECT_ROOT

    h = hashlib.sha256()
    sources = [*(PROJECT_ROOT / "ml").rglob("*.py")]
    sources += [PROJECT_ROOT / "triage" / "labels.py", PROJECT_ROOT / "triage" / "taxonomy.py",
                BANK_WORKSPACE / TAXONOMY_FILE, PROJECT_ROOT / "apps" / "simulator.py",
                PROJECT_ROOT / "apps" / "sim_text.py", Path(__file__)]
    for path in sorted(sources):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cached_tiny_model(cache_dir: Path | None = None) -> Path:
    """The tiny model folder, built once per source version under `.triage/test-cache` (tests, chaos runs).

    Built by `python -m tests.support.tiny_model` in the ops environment, so it can be asked for from the stream
    environment too (which has no torch). Safe when several processes ask at once.
    """
    from triage.settings import PROJECT_ROOT

    out = (cache_dir or PROJECT_ROOT / ".triage" / "test-cache") / f"tiny-{_source_key()}"
    if (out / "model.int8.onnx").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    ops_python = PROJECT_ROOT / ".venv" / "bin" / "python"
    result = subprocess.run([str(ops_python), "-m", "tests.support.tiny_model", str(tmp)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"tests.support.tiny_model failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    with contextlib.suppress(OSError):  # another process built it first
        tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.tiny_model",
                                description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("out_dir", type=Path, help="model folder to write")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    build_tiny_model(a.out_dir, seed=a.seed, say=print)
    print(a.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def build_small_pretrained_base(base_dir: Path, layers: int = 2, base: str | None = None) -> Path:
    """The first `layers` transformer layers of the default MiniLM, with its tokenizer: a small model that
    still knows English, for behaviour tests that must train in seconds."""
    from transformers import AutoModel, AutoTokenizer

    from ml.train import _quiet_transformers, default_base

    _quiet_transformers()
    source = base or default_base()
    model = AutoModel.from_pretrained(source, add_pooling_layer=False)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    base_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(base_dir))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(base_dir))
    return base_dir
