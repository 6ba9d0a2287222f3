"""The throughput benchmark's limit rests on the backbone calls it records in a step: they must
be exactly the passes each method makes."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput  # noqa: E402

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
