import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import efficiency  # noqa: E402

TINY_CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  limit_val_batches: 1
  num_sanity_val_steps: 0
  log_every_n_steps: 1
  enable_model_summary: false
model:
  class_path: rotaux.BYOL
  init_args:
    cifar_stem: true
    backbone_width: 8
    proj_hidden_dim: 32
    pred_hidden_dim: 32
    rotation_hidden_dim: 32
data:
  dataset: synthetic
  synthetic_size: 48
  batch_size: 16
  num_workers: 0
"""


def test_report_has_both_arms_is_resumable_and_plots(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    out = tmp_path / "report"
    argv = [
        "--config",
        str(config),
        "--out",
        str(out),
        "--eval-epochs",
        "1",
        "--linear-epochs",
        "2",
    ]
    efficiency.main(argv)

    table = (out / "report.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| baseline") or
            line.startswith("| rotation")]  # fmt: skip
    assert [row.split("|")[1].strip() for row in rows] == ["baseline", "rotation"]
    assert all(row.split("|")[3].strip() == "48" for row in rows)  # 3 batches of 16 images
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    baseline_metrics = (out / "baseline" / "version_0" / "metrics.jsonl").read_text()
    rotation_metrics = (out / "rotation" / "version_0" / "metrics.jsonl").read_text()
    assert "train/rot_loss" not in baseline_metrics
    assert "train/rot_loss" in rotation_metrics

    cached = json.loads((out / "rotation" / "version_0" / "eval_epoch0001.json").read_text())
    assert 0.0 <= cached["knn_top1"] <= 1.0 and cached["images_seen"] == 48

    capsys.readouterr()
    efficiency.main(argv)
    rerun = capsys.readouterr().out
    assert "[baseline] trained already" in rerun and "[rotation] trained already" in rerun
    assert (out / "report.md").read_text() != ""
