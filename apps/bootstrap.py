"""Out of the box: when the registry has no champion, train one on simulator tickets and promote it.

The simulator writes the workspace's traffic: the bank's own for the bank's taxonomy, paraphrases of
the workspace's examples.csv for any other (apps.sim_examples), so the first model knows the labels
the workspace's policy names.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from triage.schemas import ModelVersion
from triage.settings import Settings

# Sized to finish within 5 minutes on 2 cores (MiniLM, about 30 tokens per simulator ticket).
BOOTSTRAP_ROWS = 3000
BOOTSTRAP_EPOCHS = 3
BOOTSTRAP_TRAIN_BUDGET_S = 200.0


def ensure_champion(settings: Settings, say: Callable[[str], None] = print, *, rows: int = BOOTSTRAP_ROWS,
                    epochs: int = BOOTSTRAP_EPOCHS, base: str | None = None) -> ModelVersion:
    """The champion of `settings.model_name`, training and registering one first if there is none."""
    from ml import registry

    url = settings.db_url()
    current = registry.champion(url, settings.model_name)
    if current is not None:
        return current
    from apps.sim_examples import generator_for
    from apps.simulator import write_csv
    from ml.train import TrainingArgs, default_base, train
    from triage.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(settings.taxonomy_file)
    generator = generator_for(settings.workspace, seed=0, ood_rate=0.05)
    say(f"no champion for {settings.model_name}: training one on {rows} simulated tickets of taxonomy "
        f"{taxonomy.name!r} (MiniLM, up to {epochs} epochs, about 4 minutes)")
    with tempfile.TemporaryDirectory(prefix="triage-bootstrap-") as tmp:
        data = Path(tmp) / "simulated.csv"
        write_csv(data, rows, seed=0, generator=generator)
        out = Path(tmp) / "model"
        args = TrainingArgs(output_dir=str(out), data=str(data), label_cols=list(taxonomy.heads),
                            ood_label=taxonomy.out_of_scope, taxonomy=str(settings.taxonomy_file),
                            base=base or default_base(), epochs=epochs, patience=epochs, mask_pii=True,
                            time_budget_s=BOOTSTRAP_TRAIN_BUDGET_S, threads=settings.serving_threads)
        metrics = train(args, say=say)
        mv = registry.register(url, out, name=settings.model_name, status="champion", changed_by="bootstrap",
                               reason="no champion: trained on simulator tickets", metrics=metrics,
                               models_dir=settings.models_dir)
    say(f"registered {mv.name} v{mv.version} as champion ({mv.artifact_path})")
    return mv
