import pytest
import torch
from cli_utils import TINY_BACKBONE, TINY_RUN, read_metrics
from lightning import Trainer

from rotaux.backbones import ResNet
from rotaux.cli import main
from rotaux.data import SSLDataModule, Synthetic, SyntheticImages
from rotaux.data.transforms import eval_transform
from rotaux.errors import RotauxError
from rotaux.eval import LinearEval, linear_eval_on_features
from rotaux.export import export_backbone, read_checkpoint_backbone
from rotaux.methods import BYOL


def pretrained_checkpoint(path) -> str:
    """An untrained width-8 BYOL (the architecture of tests/cli_utils.TINY_RUN), saved as
    Lightning's ModelCheckpoint would."""
    torch.manual_seed(0)
    model = BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=0.0,
    )
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


def fit_linear_eval(tmp_path, checkpoint: str, *extra: str):
    """``rotaux fit --model rotaux.eval.LinearEval`` of ``checkpoint`` on the tiny run's data
    and trainer (the backbone comes from the checkpoint). Returns the run folder."""
    data_and_trainer = TINY_RUN[len(TINY_BACKBONE) :]
    main(
        [
            "fit",
            "--model",
            "rotaux.eval.LinearEval",
            "--model.checkpoint",
            checkpoint,
            *data_and_trainer,
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.logger.init_args.name",
            "test",
            *extra,
        ]
    )
    return tmp_path / "test" / "version_0"


def encode(backbone: torch.nn.Module, images: SyntheticImages) -> torch.Tensor:
    """Eval-mode features of un-augmented synthetic images, in batches of 16 like the runs."""
    transform, normalize = eval_transform(32, 32), SSLDataModule(Synthetic()).normalize
    batch = torch.stack([transform(image) for image, _ in images])
    with torch.no_grad():
        return torch.cat([backbone.eval()(normalize(part)) for part in batch.split(16)])


def test_separable_features_are_classified_perfectly():
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.eye(4, 16)

    def blobs(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(4).repeat(count // 4)
        return centres[labels] + 0.3 * torch.randn(len(labels), 16, generator=generator), labels

    train_features, train_labels = blobs(200)
    val_features, val_labels = blobs(40)
    # unlabelled samples are skipped: garbage in training, not counted in validation
    train_labels[:8] = -1
    train_features[:8] = 100 * torch.randn(8, 16, generator=generator)
    val_labels[:4] = -1
    results = linear_eval_on_features(
        train_features, train_labels, val_features, val_labels, epochs=10, batch_size=32
    )
    assert results == {"top1": 1.0, "top5": 1.0}
    # with permuted validation labels the perfect classifier scores exactly the agreement rate
    permuted = val_labels[torch.randperm(40, generator=generator)]
    labeled = (permuted >= 0) & (val_labels >= 0)
    agreement = (permuted[labeled] == val_labels[labeled]).float().mean().item()
    shuffled = linear_eval_on_features(
        train_features,
        train_labels,
        val_features[labeled],
        permuted[labeled],
        epochs=10,
        batch_size=32,
        num_classes=4,
    )
    assert shuffled["top1"] == pytest.approx(agreement)
    assert agreement < 0.5


def test_fit_trains_a_linear_classifier_on_the_frozen_backbone(tmp_path):
    checkpoint = pretrained_checkpoint(tmp_path / "byol.ckpt")
    run = fit_linear_eval(tmp_path, checkpoint, "--trainer.log_every_n_steps", "1")
    rows = read_metrics(run)
    assert any("train/loss" in row for row in rows)
    (logged,) = [row for row in rows if "val/top1" in row]

    trained = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    pretrained = read_checkpoint_backbone(checkpoint)
    # weights and BatchNorm statistics untouched: no gradient and eval mode throughout
    for name, value in pretrained.state_dict.items():
        torch.testing.assert_close(trained[f"backbone.{name}"], value, rtol=0, atol=0)
    val = SyntheticImages(10, 10, 32, seed=1)
    logits = encode(pretrained.build(), val) @ trained["classifier.weight"].T
    logits += trained["classifier.bias"]
    predictions = logits.topk(5, dim=1).indices
    expected_top1 = (predictions[:, 0] == val.targets).float().mean().item()
    expected_top5 = (predictions == val.targets.unsqueeze(1)).any(1).float().mean().item()
    assert logged["val/top1"] == pytest.approx(expected_top1)
    assert logged["val/top5"] == pytest.approx(expected_top5)


def test_precomputed_features_path_matches_linear_eval_on_features(tmp_path):
    checkpoint = pretrained_checkpoint(tmp_path / "byol.ckpt")
    run = fit_linear_eval(
        tmp_path,
        checkpoint,
        "--model.precompute_features",
        "true",
        "--model.channels_last",
        "false",
        "--trainer.max_epochs",
        "20",
        "--seed_everything",
        "0",
        "--trainer.log_every_n_steps",
        "1",
        "--model.optimizer.lr",
        "16",
        "--data.dataset.size",
        "160",
    )
    rows = read_metrics(run)
    assert not any("train/loss" in row for row in rows)
    (logged,) = [row for row in rows if "val/top1" in row]

    backbone = read_checkpoint_backbone(checkpoint).build()
    train, val = SyntheticImages(160, 10, 32, seed=0), SyntheticImages(16, 10, 32, seed=1)
    expected = linear_eval_on_features(
        encode(backbone, train),
        train.targets,
        encode(backbone, val),
        val.targets,
        epochs=20,
        lr=16 * 16 / 256,
        batch_size=16,
        num_classes=10,
        seed=0,
    )
    assert logged["val/top1"] == pytest.approx(expected["top1"])
    assert logged["val/top5"] == pytest.approx(expected["top5"])


def test_loads_exported_backbones_and_rejects_other_architectures(tmp_path, capsys):
    checkpoint = pretrained_checkpoint(tmp_path / "byol.ckpt")
    folder = export_backbone(checkpoint, tmp_path / "export")
    model = LinearEval(checkpoint=str(folder))
    # the architecture comes from the export's record and is kept in the hyperparameters
    assert model.hparams.backbone == ResNet(width=8, cifar_stem=True)
    assert model.backbone_config == ResNet(width=8, cifar_stem=True)
    for name, value in read_checkpoint_backbone(checkpoint).state_dict.items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, rtol=0, atol=0)
    assert not model.train().backbone.training

    # the expected architecture may be given, and must then be the checkpoint's
    same = LinearEval(checkpoint=checkpoint, backbone=ResNet(width=8, cifar_stem=True))
    assert same.backbone_config == ResNet(width=8, cifar_stem=True)
    with pytest.raises(RotauxError, match="width=8.*asks for ResNet.*width=16"):
        LinearEval(checkpoint=checkpoint, backbone=ResNet(width=16, cifar_stem=True))
    with pytest.raises(SystemExit):
        fit_linear_eval(
            tmp_path,
            checkpoint,
            "--model.backbone",
            "ResNet",
            *TINY_BACKBONE,
            "--model.backbone.cifar_stem",
            "false",
        )
    assert "but this run asks for ResNet(name='resnet18', cifar_stem=False, width=8" in (
        capsys.readouterr().err
    )
