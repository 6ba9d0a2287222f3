"""A DataSource written in user code (examples/custom_dataset.py) runs through `rotaux fit`
without any change to rotaux."""

from pathlib import Path

import pytest
import torch
from cli_utils import fit_tiny, read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_on_path(monkeypatch):
    """What ``PYTHONPATH=examples`` does for ``rotaux fit``."""
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_the_example_source_fulfils_the_contract(examples_on_path):
    from custom_dataset import Shapes

    source = Shapes(size=20, val_size=6, side=24)
    splits = source.load()
    assert (len(splits.train), len(splits.val), splits.classes) == (20, 6, ["disc", "square"])
    image, label = splits.train[0]
    assert image.shape == (1, 24, 24) and image.dtype == torch.uint8
    assert isinstance(label, int) and label in (0, 1)
    assert (source.channels, len(source.mean), source.native_size) == (1, 1, 24)


def test_rotaux_fit_trains_on_the_example_source(examples_on_path, tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--data.dataset",
        "custom_dataset.Shapes",
        "--data.dataset.size",
        "48",
        "--data.dataset.val_size",
        "16",
        "--model.backbone.channels",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    )
    rows = read_metrics(run)
    logged = set().union(*rows)
    assert {"train/loss", "val/linear_top1"} <= logged
    (top1,) = [row["val/linear_top1"] for row in rows if "val/linear_top1" in row]
    # a 2-class probe over a 16-image batch: a fraction in sixteenths
    assert 0 <= top1 <= 1 and (top1 * 16) == pytest.approx(round(top1 * 16))
    config = (run / "config.yaml").read_text()
    assert "custom_dataset.Shapes" in config


def test_a_backbone_with_rgb_input_is_refused_for_the_one_channel_source(
    examples_on_path, tmp_path, capsys
):
    with pytest.raises(SystemExit):
        fit_tiny(tmp_path, "BYOL", "--data.dataset", "custom_dataset.Shapes")
    message = capsys.readouterr().err
    assert "takes 3-channel images but the data has 1 channels" in message
    assert "--model.backbone.channels 1" in message
