"""Checkpoints written by rotaux 0.1 (a ResNet recorded as backbone/cifar_stem/backbone_width in
the hyperparameters and the architecture record) still resume through `rotaux fit --ckpt_path`,
export, and load into LinearEval."""

import torch
from cli_utils import SMALL_HEADS, TINY_RUN, fit_tiny, read_metrics

from rotaux.backbones import ResNet
from rotaux.cli import main
from rotaux.eval.linear import LinearEval
from rotaux.export import export_backbone, load_exported_backbone


def _as_written_by_0_1(checkpoint_path, legacy_path) -> dict:
    """The checkpoint rewritten in rotaux 0.1's format; returns its state dict."""
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    backbone = hparams.pop("backbone")["init_args"]
    hparams.update(
        backbone=backbone["name"],
        cifar_stem=backbone["cifar_stem"],
        backbone_width=backbone["width"],
    )
    checkpoint["rotaux_architecture"] = {
        "method": "BYOL",
        "backbone": backbone["name"],
        "cifar_stem": backbone["cifar_stem"],
        "backbone_width": backbone["width"],
    }
    torch.save(checkpoint, legacy_path)
    return checkpoint["state_dict"]


def test_a_0_1_checkpoint_resumes_exports_and_evaluates(tmp_path):
    run = fit_tiny(tmp_path / "first", "BYOL", *SMALL_HEADS)
    legacy = tmp_path / "legacy.ckpt"
    state = _as_written_by_0_1(run / "checkpoints" / "last.ckpt", legacy)

    exported = export_backbone(legacy, tmp_path / "export")
    network = load_exported_backbone(exported)
    for key, value in network.state_dict().items():
        assert torch.equal(value, state[f"backbone.{key}"]), key

    evaluation = LinearEval(checkpoint=str(legacy))
    assert evaluation.backbone_config == ResNet("resnet18", cifar_stem=True, width=8)

    # the checkpoint's (0.1) model options replace the command line's, translated
    main(
        [
            "fit", "--model", "BYOL", *TINY_RUN, *SMALL_HEADS,
            "--trainer.max_epochs", "2",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "resumed"),
            "--trainer.logger.init_args.name", "test",
            "--ckpt_path", str(legacy),
        ]
    )  # fmt: skip
    rows = read_metrics(tmp_path / "resumed" / "test" / "version_0")
    assert [row["epoch"] for row in rows if "val/linear_top1" in row] == [1]
