import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import efficiency  # noqa: E402
from efficiency import Point, Reach  # noqa: E402

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
    backbone:
      class_path: rotaux.backbones.ResNet
      init_args:
        cifar_stem: true
        width: 8
    proj_hidden_dim: 32
    pred_hidden_dim: 32
    rotation_hidden_dim: 32
data:
  dataset:
    class_path: rotaux.data.Synthetic
    init_args:
      size: 48
  batch_size: 16
  num_workers: 0
"""


def test_summary_is_mean_and_sample_std():
    summary = efficiency.summarise([0.5, 0.7, None])
    assert summary.n == 2
    assert summary.mean == pytest.approx(0.6)
    # sample std: sqrt((0.1^2 + 0.1^2) / (2 - 1))
    assert summary.std == pytest.approx(math.sqrt(0.02))
    assert summary.format(100) == "60.00 ± 14.14"
    assert efficiency.summarise([0.3]).format(100) == "30.00"
    assert efficiency.summarise([None]).format() == "n/a"


def test_interpolation_stays_inside_the_measured_range():
    times, values = [1.0, 3.0, 4.0], [0.2, 0.6, 0.8]
    assert efficiency.interpolate(times, values, 2.0) == pytest.approx(0.4)
    assert efficiency.interpolate(times, values, 3.5) == pytest.approx(0.7)
    assert efficiency.interpolate(times, values, 1.0) == 0.2
    assert efficiency.interpolate(times, values, 4.0) == 0.8
    assert efficiency.interpolate(times, values, 0.5) is None
    assert efficiency.interpolate(times, values, 4.5) is None


def test_lead_at_equal_time_by_hand():
    reference = [(1.0, 0.3), (2.0, 0.5), (4.0, 0.6)]
    other = [(1.5, 0.4), (2.5, 0.8)]
    # t=1 is before other's first point, t=4 after its last; at t=2 other reads 0.6
    leads = efficiency.lead_at_equal_time(reference, other)
    assert leads[0] is None and leads[2] is None
    assert leads[1] == pytest.approx(0.1)


def test_time_to_reach_by_hand():
    curve = [(1.0, 0.2), (3.0, 0.6)]
    assert efficiency.time_to_reach(curve, 0.5) == Reach(pytest.approx(2.5))
    assert efficiency.time_to_reach(curve, 0.1) == Reach(1.0, upper_bound=True)
    assert efficiency.time_to_reach(curve, 0.7) == Reach(None)
    # the first crossing counts, not a later one after a dip
    dipping = [(1.0, 0.2), (2.0, 0.6), (3.0, 0.4), (4.0, 0.9)]
    assert efficiency.time_to_reach(dipping, 0.5).minutes == pytest.approx(1.75)


def point(arm: str, seed: int, epoch: int, minutes: float, linear: float) -> Point:
    return Point("byol", arm, seed, epoch, 2, 48 * epoch, 60 * minutes, linear - 0.1, linear)


HAND_POINTS = [
    # seed 0: rotation at baseline's final 2 min reads 0.4 + 0.3 * 0.5 / 1.5 = 0.5 (lead 0) and
    # reaches baseline's final 0.5 at 2 min (fraction 2 / 2 = 1)
    point("baseline", 0, 1, 1.0, 0.3),
    point("baseline", 0, 2, 2.0, 0.5),
    point("rotation", 0, 1, 1.5, 0.4),
    point("rotation", 0, 2, 3.0, 0.7),
    # seed 1: rotation reads 0.5 + 0.3 / 3 = 0.6 at 2 min (lead 0.2) and is above baseline's
    # final 0.4 at its first point (1.5 min: fraction at most 0.75)
    point("baseline", 1, 1, 1.0, 0.3),
    point("baseline", 1, 2, 2.0, 0.4),
    point("rotation", 1, 1, 1.5, 0.5),
    point("rotation", 1, 2, 3.0, 0.8),
]


def test_comparison_over_seeds_by_hand():
    comparison = efficiency.compare(HAND_POINTS, "byol", "rotation", "baseline", "linear_top1")
    assert comparison.seeds == 2 and comparison.reference_epochs == [1, 2]
    assert comparison.leads[0].n == 0  # 1 min is before rotation's first point in both seeds
    assert comparison.leads[1].mean == pytest.approx(0.1)
    assert comparison.leads[1].std == pytest.approx(math.sqrt(0.02))
    assert comparison.reference_minutes[1].mean == pytest.approx(2.0)
    assert comparison.time_fraction.mean == pytest.approx(0.875)
    assert comparison.time_fraction.std == pytest.approx(math.sqrt(2 * 0.125**2))
    assert (comparison.reached, comparison.upper_bounds) == (2, 1)
    assert efficiency.describe_reach(comparison) == "≤ 0.88 ± 0.18"
    # the baseline does not reach rotation's final accuracy in either seed
    backwards = efficiency.compare(HAND_POINTS, "byol", "baseline", "rotation", "linear_top1")
    assert efficiency.describe_reach(backwards) == "not reached"


def test_budget_table_rows_by_hand():
    rows = efficiency.budget_table(HAND_POINTS, "byol", ["baseline", "rotation"])
    assert rows[2] == "| baseline | 1 | 2 | 1.0 ± 0.0 | 30.00 ± 0.00 | 20.00 ± 0.00 |"
    assert rows[5] == "| rotation | 2 | 2 | 3.0 ± 0.0 | 75.00 ± 7.07 | 65.00 ± 7.07 |"


def parse(*argv: str):
    return efficiency.parse_args(list(argv))


def test_arms_seeds_and_budget_modes_plan_the_runs(tmp_path):
    args, extra = parse(
        "--out", str(tmp_path), "--methods", "byol=a.yaml", "simclr=b.yaml",
        "--seeds", "0", "1", "--budgets", "4", "1", "2",
        "--arms", "baseline=--model.rotation_weight 0", "rotation=",
        "effssl=--model.rotation_source views --model.rotation_copies 1 "
        "--model.rotation_weight 0.1",
        "--", "--data.batch_size", "64",
    )  # fmt: skip
    assert extra == ["--data.batch_size", "64"]
    assert [arm.name for arm in args.arms] == ["baseline", "rotation", "effssl"]
    assert args.arms[2].options == (
        "--model.rotation_source", "views", "--model.rotation_copies", "1",
        "--model.rotation_weight", "0.1",
    )  # fmt: skip
    assert args.arms[1].options == ()
    runs, evaluated = efficiency.plan(args)
    # schedule: one 4-epoch run per method, seed and arm, evaluated after 1, 2 and 4 epochs
    assert len(runs) == 2 * 2 * 3 and {run.epochs for run in runs} == {4}
    assert all(evaluated[run] == [1, 2, 4] for run in runs)
    args.budget_mode = "separate"
    runs, evaluated = efficiency.plan(args)
    # separate: a run per budget, each evaluated at its end; the 4-epoch run is the same one
    assert len(runs) == 2 * 2 * 3 * 3
    assert all(evaluated[run] == [run.epochs] for run in runs)
    assert runs[0].folder(tmp_path) == tmp_path / "runs" / "byol" / "baseline" / "seed0_1ep" / "run"


def test_spec_file_gives_defaults_the_command_line_overrides(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "out: runs/x\nmethods: {byol: a.yaml}\nseeds: [0, 1]\nbudgets: [1, 2]\n"
        "budget_mode: separate\noptions: [--model.backbone.init_args.width, 8]\n"
    )
    args, extra = parse("--spec", str(spec), "--seeds", "3", "--", "--data.num_workers", "0")
    assert args.methods == {"byol": "a.yaml"} and args.seeds == [3]
    assert args.budgets == [1, 2] and args.budget_mode == "separate"
    assert [arm.name for arm in args.arms] == ["baseline", "rotation"]
    assert extra == ["--model.backbone.init_args.width", "8", "--data.num_workers", "0"]
    with pytest.raises(SystemExit):
        parse("--spec", str(spec), "--reference", "nope")


def test_preset_spec_parses():
    args, extra = parse("--spec", str(ROOT / "configs" / "efficiency" / "cpu_two_methods.yaml"))
    assert len(args.methods) == 2 and len(args.seeds) == 2
    assert all((ROOT / config).exists() for config in args.methods.values())


def test_tiny_report_end_to_end_is_resumable_and_plots(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    out = tmp_path / "report"
    argv = [
        "--out", str(out), "--methods", f"byol={config}", "--budgets", "1", "2",
        "--linear-epochs", "2", "--knn-k", "5",
    ]  # fmt: skip
    efficiency.main(argv)

    report = json.loads((out / "report.json").read_text())
    points = report["points"]
    assert [(p["arm"], p["epoch"]) for p in points] == [
        ("baseline", 1), ("baseline", 2), ("rotation", 1), ("rotation", 2)
    ]  # fmt: skip
    assert [p["images_seen"] for p in points] == [48, 96, 48, 96]  # 3 batches of 16 per epoch
    assert all(p["schedule_epochs"] == 2 for p in points)
    assert points[1]["train_seconds"] > points[0]["train_seconds"] > 0
    table = (out / "report.md").read_text()
    assert "after N epochs of one 2-epoch cosine schedule" in table
    assert "| byol | rotation | linear top-1 |" in table
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = {
        arm: (out / "runs" / "byol" / arm / "seed0_2ep" / "run" / "metrics.jsonl").read_text()
        for arm in ("baseline", "rotation")
    }
    assert "train/rot_loss" not in logged["baseline"] and "train/rot_loss" in logged["rotation"]

    capsys.readouterr()
    efficiency.main(argv)
    rerun = capsys.readouterr().out
    assert rerun.count("trained already") == 2
    assert json.loads((out / "report.json").read_text())["points"] == points
