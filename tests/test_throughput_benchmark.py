"""The throughput benchmark's limit rests on the backbone calls it records in a step: they must
be exactly the passes each method makes."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput  # noqa: E402

from rotaux.backbones import ResNet  # noqa: E402
from rotaux.data import Synthetic  # noqa: E402
from rotaux.methods import METHODS  # noqa: E402

CPU = torch.device("cpu")


def _measure(method: str, rotation: bool) -> throughput.Row:
    args = throughput.parse_args(
        ["--width", "4", "--batch-size", "8", "--steps", "1", "--warmup", "1", "--device", "cpu"]
    )
    return throughput.measure(method, rotation, args, CPU, throughput.BackboneLimit(args, CPU))


@pytest.mark.parametrize(
    ("method", "rotation", "calls"),
    [
        # two online views with gradient, the target's two forwards without
        ("byol", False, "2x 8@32px fwd, 2x 8@32px fwd+bwd"),
        # plus one batch of the 4 rotated copies of each image
        ("byol", True, "2x 8@32px fwd, 2x 8@32px fwd+bwd, 1x 32@32px fwd+bwd"),
        # the recipe's multi-crop: 2 large crops in one call, 6 small ones in another
        ("swav", False, "1x 16@32px fwd+bwd, 1x 48@16px fwd+bwd"),
    ],
)
def test_records_every_backbone_call_of_a_step(method, rotation, calls):
    row = _measure(method, rotation)
    assert row.backbone_calls == calls
    assert row.rotation is rotation


def test_methods_are_the_registered_ones_each_with_its_cifar10_recipe():
    assert set(throughput.METHODS) == set(METHODS)
    assert {"byol", "simclr", "swav", "dino"} <= set(throughput.METHODS)
    for name in throughput.METHODS:
        assert (throughput.CONFIGS / f"{name}.yaml").is_file(), name
    args = throughput.parse_args(["--methods", "simclr", "nnclr"])
    assert args.methods == ["simclr", "nnclr"]
    # the masked-image methods need a ViT: by default they run only on one
    cnn_methods = [name for name, entry in METHODS.items() if entry.backbones == "any"]
    assert throughput.parse_args([]).methods == cnn_methods
    assert throughput.parse_args(["--backbone", "vit_tiny"]).methods == list(METHODS)
    with pytest.raises(SystemExit):
        throughput.parse_args(["--methods", "no_such_method"])


def test_the_benchmark_sets_the_recipes_backbone_width_and_synthetic_data():
    args = throughput.parse_args(["--width", "4", "--batch-size", "8", "--device", "cpu"])
    model, data = throughput.build("byol", True, args, total_steps=3)
    assert model.backbone_config == ResNet("resnet18", cifar_stem=True, width=4)
    assert data.dataset == Synthetic(size=24)
    assert data.batch_size == 8 and model.rotation_weight > 0
    baseline, _ = throughput.build("byol", False, args, total_steps=3)
    assert baseline.rotation_input() is None


def test_another_backbone_replaces_the_recipes_and_the_limits_network():
    args = throughput.parse_args(
        ["--backbone", "vit_tiny", "--batch-size", "4", "--steps", "1", "--warmup", "1"]
    )
    model, _ = throughput.build("mae", True, args, total_steps=2)
    assert model.backbone_config == throughput.backbone("vit_tiny", 64)
    limit = throughput.BackboneLimit(args, CPU)
    assert limit.net.num_features == 192
    row = throughput.measure("byol", False, args, CPU, limit)
    assert row.backbone_calls == "2x 4@32px fwd, 2x 4@32px fwd+bwd"


def test_recipes_a_backbone_cannot_take_are_reported_not_run(capsys):
    throughput.main(
        ["--backbone", "convnext", "--methods", "swav", "--rotation", "off",
         "--batch-size", "2", "--steps", "1", "--warmup", "1", "--device", "cpu"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "Not run on this backbone" in out and "swav:" in out and "multiples of 32" in out


def test_token_level_methods_are_measured_without_a_limit(capsys):
    # MAE's encoder sees only visible patches, outside the backbone's forward: without rotation
    # no backbone call is recorded at all, which once divided by zero
    throughput.main(
        ["--backbone", "vit_tiny", "--methods", "mae", "--rotation", "off",
         "--batch-size", "2", "--steps", "1", "--warmup", "1", "--device", "cpu"]
    )  # fmt: skip
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mae")]
    assert line.endswith("| n/a | n/a |")
