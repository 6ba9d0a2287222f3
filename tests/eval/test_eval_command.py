import json
from pathlib import Path

import pytest
import torch
from lightning import Trainer
from torch.utils.data import Dataset

from rotaux.backbones import ResNet
from rotaux.callbacks.knn import knn_class_scores
from rotaux.cli import main as rotaux_main
from rotaux.data import Synthetic, SyntheticImages
from rotaux.errors import RotauxError
from rotaux.eval.command import main
from rotaux.eval.data import LabelledData
from rotaux.eval.features import extract_features
from rotaux.eval.label_subsets import ListedImages, StratifiedFraction, stratified_fraction
from rotaux.eval.linear import classifier_accuracy, train_linear_classifier
from rotaux.eval.results import ResultsFolder
from rotaux.export import read_pretrained
from rotaux.methods import BYOL

TINY_DATA = ["--data", "Synthetic", "--data.size", "48"]
TINY_SETUP = ["--batch_size", "16", "--num_workers", "0", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A width-8 BYOL checkpoint as ModelCheckpoint writes it (untrained: the protocols' wiring
    is under test, not the representation)."""
    torch.manual_seed(0)
    model = BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
    )
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(model)
    path = tmp_path_factory.mktemp("pretrained") / "last.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def evaluate(protocol: str, checkpoint: str, out: Path, *extra: str, data=TINY_DATA) -> int:
    return main(
        [protocol, "--checkpoint", checkpoint, "--out", str(out), *TINY_SETUP, *data, *extra]
    )


def direct_features(checkpoint: str) -> tuple[LabelledData, tuple, tuple]:
    """Features of the tiny data's training and validation images, computed here without the
    command."""
    data = LabelledData(Synthetic(size=48), batch_size=16, num_workers=0)
    data.setup()
    network = read_pretrained(checkpoint).build().eval()
    device = torch.device("cpu")

    def features(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        return extract_features(network, dataset, data.normalize, network.num_features, device, 16)

    return data, features(data.eval_train_dataset()), features(data.val_dataset())


def test_linear_and_knn_give_the_direct_numbers_and_a_rerun_skips_them(
    checkpoint, tmp_path, capsys
):
    out = tmp_path / "eval"
    assert evaluate("linear", checkpoint, out, "--epochs", "3") == 0
    assert evaluate("knn", checkpoint, out, "--k", "5") == 0
    linear_row, knn_row = ResultsFolder(out).rows()

    data, (train, train_labels), (val, val_labels) = direct_features(checkpoint)
    classifier = train_linear_classifier(
        train, train_labels, 10, epochs=3, lr=0.1 * 16 / 256, batch_size=16, seed=0
    )
    expected = classifier_accuracy(classifier, val, val_labels)
    assert (linear_row["top1"], linear_row["top5"]) == (expected["top1"], expected["top5"])
    votes = knn_class_scores(val, train, train_labels, 10, k=5)
    assert knn_row["top1"] == (votes.argmax(1) == val_labels).float().mean().item()
    assert [row["protocol"] for row in (linear_row, knn_row)] == ["linear", "knn"]
    assert linear_row["method"] == "BYOL" and linear_row["data"] == "Synthetic"

    capsys.readouterr()
    assert evaluate("linear", checkpoint, out, "--epochs", "3") == 0
    printed = capsys.readouterr().out
    assert f"done already (top-1 {100 * linear_row['top1']:.2f}%" in printed
    assert len(ResultsFolder(out).rows()) == 2
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 4 and "| linear | Synthetic | all | cached features, 3 epochs" in table[2]
    # another recipe is another evaluation
    assert evaluate("linear", checkpoint, out, "--epochs", "2") == 0
    assert len(ResultsFolder(out).rows()) == 3


def test_an_exported_backbone_evaluates_like_its_checkpoint(checkpoint, tmp_path):
    with pytest.raises(SystemExit) as exited:
        rotaux_main(["export", checkpoint, str(tmp_path / "exported")])
    assert exited.value.code == 0
    out = tmp_path / "eval"
    assert evaluate("knn", checkpoint, out) == 0
    assert evaluate("knn", str(tmp_path / "exported"), out) == 0
    from_checkpoint, from_export = ResultsFolder(out).rows()
    assert from_checkpoint["key"] != from_export["key"]
    assert from_checkpoint["top1"] == from_export["top1"]


def backbone_weights(run_checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {
        key[len("backbone.") :]: value
        for key, value in state.items()
        if key.startswith("backbone.")
    }


def test_finetune_trains_the_backbone_and_augmented_linear_keeps_it(checkpoint, tmp_path):
    pretrained = read_pretrained(checkpoint).state_dict
    out = tmp_path / "eval"
    assert evaluate("finetune", checkpoint, out, "--epochs", "1") == 0
    assert evaluate("linear", checkpoint, out, "--epochs", "1", "--augmented", "true") == 0
    finetuned, linear = ResultsFolder(out).rows()
    for row in (finetuned, linear):
        assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    assert linear["recipe"] == "augmented, frozen backbone, 1 epochs, SGD lr 0.1/256"

    def weights(row: dict) -> dict[str, torch.Tensor]:
        path = out / "runs" / f"{row['protocol']}-{row['key']}" / "checkpoints" / "last.ckpt"
        return backbone_weights(path)

    changed = [
        key for key, value in weights(finetuned).items() if not torch.equal(value, pretrained[key])
    ]
    assert any(key.endswith("conv1.weight") for key in changed)
    frozen = weights(linear)
    assert all(torch.equal(frozen[key], value) for key, value in pretrained.items())

    # a run that finished training but not its row (interrupted): the rerun resumes from the
    # run's last.ckpt instead of training again, and measures the same accuracy
    run_checkpoint = out / "runs" / f"finetune-{finetuned['key']}" / "checkpoints" / "last.ckpt"
    written = run_checkpoint.stat().st_mtime_ns
    (out / "metrics.jsonl").write_text(json.dumps(linear) + "\n")
    assert evaluate("finetune", checkpoint, out, "--epochs", "1") == 0
    assert run_checkpoint.stat().st_mtime_ns == written  # no epoch trained (and saved) again
    redone = ResultsFolder(out).rows()[-1]
    assert redone["key"] == finetuned["key"] and redone["top1"] == finetuned["top1"]


def test_stratified_fraction_by_hand():
    labels = [0] * 10 + [1] * 20 + [2] * 3
    chosen = stratified_fraction(labels, 0.1, seed=0)
    # round(0.1 * 10) = 1, round(0.1 * 20) = 2, round(0.1 * 3) = 0 -> at least 1
    assert [labels[i] for i in chosen] == [0, 1, 1, 2]
    assert chosen == stratified_fraction(labels, 0.1, seed=0)
    assert chosen != stratified_fraction(labels, 0.1, seed=1)
    assert len(stratified_fraction(labels, 1.0, seed=0)) == 33
    with pytest.raises(RotauxError, match="fraction must be in"):
        stratified_fraction(labels, 0.0, seed=0)


class _Files(Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.samples = [(path, 0) for path in paths]

    def __len__(self) -> int:
        return len(self.samples)


def test_listed_images_match_base_names(tmp_path):
    train = _Files(["/d/train/n01/a.JPEG", "/d/train/n01/b.JPEG", "/d/train/n02/c.JPEG"])
    listing = tmp_path / "1percent.txt"
    listing.write_text("c.JPEG\na.JPEG\nnot_here.JPEG\n")
    select = ListedImages(str(listing))
    assert select(train, [0, 1, 2]) == [0, 2]
    assert select.describe() == "1percent.txt: 2 images, 1 listed names not found"
    # only labelled images count
    assert select(train, [1, 2]) == [2]
    listing.write_text("zzz.JPEG\n")
    with pytest.raises(RotauxError, match="None of the 1 images listed"):
        select(train, [0, 1, 2])


def test_semisup_fine_tunes_on_stratified_shares(checkpoint, tmp_path):
    out = tmp_path / "eval"
    assert (
        evaluate("semisup", checkpoint, out, "--fractions", "[0.25,0.5]", "--epochs", "[1,1]") == 0
    )
    rows = ResultsFolder(out).rows()
    targets = SyntheticImages(48, 10, 32, seed=0).targets.tolist()
    expected = [
        StratifiedFraction(fraction, 0)(_Labelled(targets), list(range(48)))
        for fraction in (0.25, 0.5)
    ]
    assert [row["labels"] for row in rows] == [
        f"25% stratified (seed 0): {len(expected[0])} images",
        f"50% stratified (seed 0): {len(expected[1])} images",
    ]
    assert len(expected[0]) < len(expected[1]) < 48


class _Labelled(Dataset):
    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)


def test_transfer_gives_a_row_per_target(checkpoint, tmp_path):
    out = tmp_path / "eval"
    targets = [
        "--targets+", "Synthetic", "--targets.size", "40", "--targets.classes", "5",
        "--targets+", "Synthetic", "--targets.size", "30", "--targets.seed", "3",
    ]  # fmt: skip
    assert evaluate("transfer", checkpoint, out, "--epochs", "2", *targets, data=[]) == 0
    rows = ResultsFolder(out).rows()
    assert [row["protocol"] for row in rows] == ["transfer", "transfer"]
    assert [row["identity"]["data"]["options"]["classes"] for row in rows] == [5, 10]


def test_bad_input_is_named(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate("knn", str(tmp_path / "missing.ckpt"), out) == 2
    assert "missing.ckpt does not exist" in capsys.readouterr().err
    assert evaluate("semisup", checkpoint, out, "--fractions", "[0.1,0.2]", "--epochs", "[5]") == 2
    assert "--epochs gives 1 values for 2 label subsets" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()
