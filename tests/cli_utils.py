"""Run `rotaux fit` in-process on tiny synthetic data, as a user would from the shell."""

from __future__ import annotations

import json
from pathlib import Path

from rotaux.cli import main

TINY_RUN = [
    "--model.backbone_width",
    "8",
    "--model.cifar_stem",
    "true",
    "--data.dataset",
    "synthetic",
    "--data.synthetic_size",
    "48",
    "--data.batch_size",
    "16",
    "--data.num_workers",
    "0",
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "1",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.num_sanity_val_steps",
    "0",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def fit_tiny(tmp_path: Path, model: str, *extra: str) -> Path:
    """``rotaux fit --model <model>``: one epoch (3 steps) of a width-8 ResNet-18 on 48 synthetic
    images, written into ``tmp_path``. Returns the run folder (metrics.jsonl, checkpoints/)."""
    main(
        [
            "fit",
            "--model",
            model,
            *TINY_RUN,
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.logger.init_args.name",
            "test",
            *extra,
        ]
    )
    return tmp_path / "test" / "version_0"


def read_metrics(run_dir: Path) -> list[dict]:
    """Rows of the run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
