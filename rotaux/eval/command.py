"""``rotaux eval``: offline evaluation of a pretrained backbone by the field's protocols.

``rotaux eval <protocol> --checkpoint PATH --data SOURCE [options]``, where PATH is a ``.ckpt``
written by ``rotaux fit`` or a folder written by ``rotaux export``:

- ``linear``: a linear classifier on the frozen backbone (solo-learn's recipe; cached features
  of un-augmented images by default, ``--augmented true`` for augmented images);
- ``knn``: weighted k-nearest-neighbour classification (Wu et al. 2018, k=200, T=0.1);
- ``finetune``: the whole backbone and a linear head trained on all labels (SimCLR's
  fine-tuning recipe, :mod:`rotaux.eval.finetune`);
- ``semisup``: the same fine-tuning on 1% and 10% of the labels (SimCLR/BYOL's
  semi-supervised protocol): a seeded, stratified subset of every class, or the published
  image lists of a standard split (SimCLR's ImageNet ``1percent.txt``/``10percent.txt``) with
  ``--label_files``;
- ``transfer``: linear evaluation on other labelled datasets (``--targets+ CIFAR100
  --targets+ STL10``), for example of a CIFAR-10 pretraining.

Every finished evaluation appends a row to ``<out>/metrics.jsonl`` and the table of all rows is
printed and written to ``<out>/results.md``; one ``--out`` folder can collect the results of
several checkpoints and protocols. A rerun skips every evaluation whose row exists (same
checkpoint file, data, labels and recipe), and an interrupted fine-tuning resumes from the last
epoch checkpoint of its run folder ``<out>/runs/<protocol>-<key>/``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint

from rotaux.callbacks.knn import knn_class_scores
from rotaux.data.sources import CIFAR10, DataSource
from rotaux.errors import RotauxError
from rotaux.eval.data import LabelledData, TrainSelection
from rotaux.eval.features import extract_features
from rotaux.eval.finetune import FineTune
from rotaux.eval.label_subsets import ListedImages, StratifiedFraction
from rotaux.eval.linear import classifier_accuracy, train_linear_classifier
from rotaux.eval.results import ResultsFolder, evaluation_key
from rotaux.export import WEIGHTS_FILE, PretrainedBackbone, read_pretrained
from rotaux.loggers import RotauxLogger


@dataclass(frozen=True)
class EvalSetup:
    """Options every protocol shares.

    Args:
        checkpoint: the ``.ckpt`` that ``rotaux fit`` wrote, or a folder written by
            ``rotaux export``.
        data: the labelled images to evaluate on (a data source: ``CIFAR10``, ``CIFAR100``,
            ``STL10``, ``ImageFolder``, ``FileList``, ``Synthetic``, ...), for example
            ``--data CIFAR10 --data.root ./data``.
        out: results folder (``metrics.jsonl``, ``results.md``, fine-tuning runs); shared by
            any number of checkpoints and protocols.
        batch_size: images per step.
        num_workers: data loader processes.
        image_size: crop side; ``None`` takes the data's (evaluate a 32-px CIFAR backbone on
            STL-10 at 32 with ``--image_size 32``).
        val_resize: shorter side before the evaluation centre crop; ``None`` is ``image_size``
            (256 with 224 crops for ImageNet-style data).
        accelerator: ``auto``, ``cpu``, ``gpu`` or ``mps`` (one device).
        precision: Lightning's precision: ``32-true``, ``bf16-mixed`` or ``16-mixed``.
        seed: seed of the classifiers' initialisation, the shuffling and the augmentations.
    """

    checkpoint: str
    data: DataSource = CIFAR10()
    out: str = "runs/eval"
    batch_size: int = 256
    num_workers: int = 4
    image_size: int | None = None
    val_resize: int | None = None
    accelerator: str = "auto"
    precision: str = "32-true"
    seed: int = 0


def linear(
    setup: EvalSetup,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    augmented: bool = False,
) -> None:
    """Linear evaluation: a linear classifier on the frozen backbone, SGD with cosine decay
    (solo-learn's linear recipe, rotaux.eval.linear). By default it trains on cached features of
    un-augmented images (fast); --augmented true trains on random-resized-crop-and-flip images.

    Args:
        setup: the shared options.
        epochs: training epochs of the classifier.
        lr: learning rate per 256 images.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the classifier.
        augmented: train on augmented images through the frozen backbone (one backbone pass per
            image per epoch) instead of cached features.
    """
    recipe = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    if augmented:
        options = {**recipe, "nesterov": False, "label_smoothing": 0.0}
        _fine_tune(setup, "linear", setup.data, None, "all", options, freeze_backbone=True)
    else:
        _cached_linear(setup, "linear", setup.data, recipe)


def knn(setup: EvalSetup, k: int = 200, temperature: float = 0.1) -> None:
    """Weighted kNN classification of validation features against all labelled training
    features (Wu et al., CVPR 2018, as in DINO's and solo-learn's kNN evaluation).

    Args:
        setup: the shared options.
        k: neighbours that vote.
        temperature: a neighbour at cosine similarity s weighs exp(s / temperature).
    """
    settings = {"k": k, "temperature": temperature}
    with _Evaluation(setup, "knn", setup.data, "all", f"k={k}, T={temperature:g}", settings) as run:
        if run.finished:
            return
        bank, bank_labels = run.features(run.data.eval_train_dataset())
        queries, labels = run.features(run.data.val_dataset())
        votes = knn_class_scores(queries, bank, bank_labels, run.data.num_classes, k, temperature)
        ranked = votes.topk(min(5, votes.shape[1]), dim=1).indices
        hits = ranked == labels.unsqueeze(1)
        run.record(hits[:, 0].float().mean().item(), hits.any(dim=1).float().mean().item())


def finetune(
    setup: EvalSetup,
    epochs: int = 30,
    lr: float = 0.05,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
) -> None:
    """Fine-tuning of the whole backbone and a linear head on all labels, with SimCLR's
    fine-tuning recipe (Chen et al. 2020, Appendix B.5; rotaux.eval.finetune). The accuracy is
    that of the last epoch.

    Args:
        setup: the shared options.
        epochs: fine-tuning epochs (SimCLR's for 10% of the labels; more suit all labels).
        lr: learning rate per 256 images.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty (SimCLR uses none).
        label_smoothing: cross-entropy label smoothing.
    """
    options = {
        "epochs": epochs,
        "lr": lr,
        "momentum": momentum,
        "nesterov": nesterov,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
    }
    _fine_tune(setup, "finetune", setup.data, None, "all", options, freeze_backbone=False)


def semisup(
    setup: EvalSetup,
    fractions: list[float] = [0.01, 0.1],  # noqa: B006 - jsonargparse shows it in --help
    epochs: list[int] = [60, 30],  # noqa: B006
    label_files: list[str] = [],  # noqa: B006
    subset_seed: int = 0,
    lr: float = 0.05,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
) -> None:
    """Semi-supervised evaluation: fine-tuning (SimCLR's recipe) on a small share of the labels,
    one run per share: by default a seeded, stratified 1% and 10% of every class for 60 and 30
    epochs (SimCLR's). With --label_files the shares are published image lists instead, one file
    per run (SimCLR's ImageNet subsets imagenet_subsets/1percent.txt and 10percent.txt from
    github.com/google-research/simclr, not shipped with rotaux: 12,811 and 128,116 names).

    Args:
        setup: the shared options.
        fractions: shares of every class's labelled images, one run each.
        epochs: fine-tuning epochs of each run (one per fraction or label file).
        label_files: text files with one image file name per line (matched on base names),
            used instead of fractions.
        subset_seed: seed of the stratified subsets (recorded in the results).
        lr: learning rate per 256 images.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty.
    """
    shares: list[StratifiedFraction | ListedImages]
    if label_files:
        shares = [ListedImages(path) for path in label_files]
    else:
        shares = [StratifiedFraction(fraction, subset_seed) for fraction in fractions]
    if len(epochs) != len(shares):
        raise RotauxError(
            f"--epochs gives {len(epochs)} values for {len(shares)} label subsets; give one per "
            "fraction (or label file), for example --epochs [60,30] for --fractions [0.01,0.1]."
        )
    for share, share_epochs in zip(shares, epochs, strict=True):
        spec = (
            {"label_file": share.path, "file_size": os.path.getsize(share.path)}
            if isinstance(share, ListedImages) and os.path.isfile(share.path)
            else {"fraction": share.fraction, "seed": share.seed}
        )
        options = {
            "epochs": share_epochs,
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "label_smoothing": 0.0,
        }
        _fine_tune(setup, "semisup", setup.data, share, spec, options, freeze_backbone=False)


def transfer(
    setup: EvalSetup,
    targets: list[DataSource],
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> None:
    """Transfer evaluation: linear evaluation on cached features (the linear protocol's
    recipe) of each target dataset, for example a CIFAR-10 pretraining on CIFAR-100 and STL-10:
    --targets+ CIFAR100 --targets.root ./data --targets+ STL10 --targets.root ./data (each
    --targets+ adds a dataset; the options after it are that dataset's).

    Args:
        setup: the shared options (--data is not used: the targets are the data).
        targets: the labelled datasets to evaluate on, one row each.
        epochs: training epochs of the classifier.
        lr: learning rate per 256 images.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the classifier.
    """
    if not targets:
        raise RotauxError("transfer needs at least one --targets dataset (--targets CIFAR100).")
    recipe = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    for target in targets:
        _cached_linear(setup, "transfer", target, recipe)


PROTOCOLS: dict[str, tuple[Callable[..., None], str]] = {
    "linear": (linear, "linear classifier on the frozen backbone (solo-learn's recipe)"),
    "knn": (knn, "weighted k-nearest-neighbour classification (k=200, T=0.1)"),
    "finetune": (finetune, "fine-tune the whole backbone on all labels (SimCLR's recipe)"),
    "semisup": (semisup, "fine-tune on 1% and 10% of the labels (SimCLR/BYOL protocol)"),
    "transfer": (transfer, "linear evaluation on other datasets (--targets+ CIFAR100)"),
}
"""Each protocol's function and one-line description (``rotaux eval --help``)."""


def source_record(source: DataSource) -> dict[str, Any]:
    """The data source's class and options (what identifies the data of an evaluation)."""
    options = dataclasses.asdict(source) if dataclasses.is_dataclass(source) else repr(source)
    return {"class": f"{type(source).__module__}.{type(source).__name__}", "options": options}


def source_name(source: DataSource) -> str:
    """A short name for tables: the class, and the folder for sources read from one."""
    root = getattr(source, "root", None)
    name = type(source).__name__
    return f"{name}({Path(root).name})" if isinstance(root, str) and root else name


def checkpoint_fingerprint(path: str) -> str:
    """Size and modification time of the weights' file: a rewritten ``last.ckpt`` is a new
    checkpoint whose evaluations are not the old ones."""
    file = Path(path) / WEIGHTS_FILE if Path(path).is_dir() else Path(path)
    stat = file.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _device(accelerator: str) -> torch.device:
    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device({"gpu": "cuda"}.get(accelerator, accelerator))


def _autocast(precision: str, device: torch.device) -> AbstractContextManager:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


class _Evaluation:
    """One evaluation: its key and results row, the skip when it finished before, its data, and
    cached features through the backbone. Used as a context manager that sets the data up."""

    def __init__(
        self,
        setup: EvalSetup,
        protocol: str,
        source: DataSource,
        labels: Any,
        recipe: str,
        settings: dict[str, Any],
        select: TrainSelection | None = None,
    ) -> None:
        self.setup = setup
        self.protocol = protocol
        self.results = ResultsFolder(setup.out)
        self.pretrained: PretrainedBackbone = read_pretrained(setup.checkpoint)
        self.checkpoint = str(Path(setup.checkpoint).resolve())
        identity = {
            "protocol": protocol,
            "checkpoint": self.checkpoint,
            "fingerprint": checkpoint_fingerprint(setup.checkpoint),
            "data": source_record(source),
            "image_size": setup.image_size,
            "val_resize": setup.val_resize,
            "batch_size": setup.batch_size,
            "precision": setup.precision,
            "seed": setup.seed,
            "labels": labels,
            "settings": settings,
        }
        self.key = evaluation_key(identity)
        self.row: dict[str, Any] = {
            "key": self.key,
            "protocol": protocol,
            "checkpoint": _display_path(setup.checkpoint),
            "method": self.pretrained.method,
            "data": source_name(source),
            "labels": "all",
            "recipe": recipe,
            "identity": identity,
        }
        self.previous = self.results.done(self.key)
        self.finished = self.previous is not None
        self.data = LabelledData(
            source,
            batch_size=setup.batch_size,
            num_workers=setup.num_workers,
            image_size=setup.image_size,
            val_resize=setup.val_resize,
            select=select,
            seed=setup.seed,
        )
        self.device = _device(setup.accelerator)
        self._started = time.perf_counter()
        self._network: torch.nn.Module | None = None

    def __enter__(self) -> _Evaluation:
        if self.finished:
            print(
                f"[{self.protocol}] {self.row['data']}: done already (top-1 "
                f"{100 * self.previous['top1']:.2f}%, key {self.key} in "
                f"{self.results.metrics_path})",
                flush=True,
            )
            return self
        self.data.check_backbone(self.pretrained.backbone)
        self.data.prepare_data()
        self.data.setup()
        print(f"[{self.protocol}] {self.row['data']}: {self.row['recipe']}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._network = None

    def features(self, dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        if self._network is None:
            self._network = self.pretrained.build().to(self.device).eval()
        with _autocast(self.setup.precision, self.device):
            return extract_features(
                self._network,
                dataset,
                self.data.normalize,
                self._network.num_features,
                self.device,
                self.setup.batch_size,
                self.setup.num_workers,
            )

    def record(self, top1: float, top5: float, labels: str = "all") -> None:
        row = {
            **self.row,
            "labels": labels,
            "top1": top1,
            "top5": top5,
            "seconds": round(time.perf_counter() - self._started, 1),
        }
        self.results.add(row)
        print(
            f"[{self.protocol}] {row['data']} (labels: {labels}): top-1 {100 * top1:.2f}%, "
            f"top-5 {100 * top5:.2f}%",
            flush=True,
        )


def _cached_linear(
    setup: EvalSetup, protocol: str, source: DataSource, recipe: dict[str, Any]
) -> None:
    described = f"cached features, {recipe['epochs']} epochs, SGD lr {recipe['lr']:g}/256"
    with _Evaluation(setup, protocol, source, "all", described, recipe) as run:
        if run.finished:
            return
        train_features, train_labels = run.features(run.data.eval_train_dataset())
        val_features, val_labels = run.features(run.data.val_dataset())
        classifier = train_linear_classifier(
            train_features,
            train_labels,
            run.data.num_classes,
            epochs=recipe["epochs"],
            lr=recipe["lr"] * setup.batch_size / 256,
            momentum=recipe["momentum"],
            weight_decay=recipe["weight_decay"],
            batch_size=setup.batch_size,
            seed=setup.seed,
        )
        accuracy = classifier_accuracy(classifier, val_features, val_labels)
        run.record(accuracy["top1"], accuracy["top5"])


def _fine_tune(
    setup: EvalSetup,
    protocol: str,
    source: DataSource,
    share: StratifiedFraction | ListedImages | None,
    labels: Any,
    options: dict[str, Any],
    freeze_backbone: bool,
) -> None:
    kind = "augmented, frozen backbone" if freeze_backbone else "whole backbone"
    optimizer = "SGD-Nesterov" if options["nesterov"] else "SGD"
    described = f"{kind}, {options['epochs']} epochs, {optimizer} lr {options['lr']:g}/256"
    if options["weight_decay"]:
        described += f", wd {options['weight_decay']:g}"
    with _Evaluation(setup, protocol, source, labels, described, options, select=share) as run:
        if run.finished:
            return
        lightning.seed_everything(setup.seed, verbose=False)
        model = FineTune(
            run.pretrained,
            run.data.num_classes,
            freeze_backbone=freeze_backbone,
            lr=options["lr"],
            momentum=options["momentum"],
            nesterov=options["nesterov"],
            weight_decay=options["weight_decay"],
            label_smoothing=options["label_smoothing"],
            batch_size=setup.batch_size,
        )
        folder = Path(setup.out) / "runs"
        name = f"{protocol}-{run.key}"
        checkpoints = folder / name / "checkpoints"
        trainer = lightning.Trainer(
            max_epochs=options["epochs"],
            accelerator=setup.accelerator,
            devices=1,
            precision=setup.precision,
            logger=RotauxLogger(save_dir=str(folder), name=name, version=0),
            callbacks=[
                ModelCheckpoint(dirpath=checkpoints, filename="last", enable_version_counter=False)
            ],
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            log_every_n_steps=10,
        )
        last = checkpoints / "last.ckpt"
        trainer.fit(model, datamodule=run.data, ckpt_path=str(last) if last.exists() else None)
        # the accuracy of the last epoch: choosing the best epoch would select on the test set
        trainer.limit_val_batches = 1.0
        (metrics,) = trainer.validate(model, datamodule=run.data, verbose=False)
        run.record(
            float(metrics["val/top1"]),
            float(metrics["val/top5"]),
            share.describe() if share is not None else "all",
        )


def _display_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="rotaux eval",
        description="Evaluate a pretrained backbone (a rotaux fit checkpoint or a rotaux export "
        "folder) by the field's protocols. `rotaux eval <protocol> --help` lists each one's "
        "options. Results go to <out>/metrics.jsonl and <out>/results.md; a rerun skips what is "
        "done and resumes an interrupted fine-tuning.",
    )
    subcommands = parser.add_subcommands(dest="protocol")
    for name, (protocol, summary) in PROTOCOLS.items():
        sub = ArgumentParser(description=(protocol.__doc__ or "").split("\n\n")[0])
        sub.add_class_arguments(
            EvalSetup, nested_key=None, skip={"data"} if name == "transfer" else set()
        )
        sub.add_function_arguments(protocol, nested_key=None, skip={"setup"})
        subcommands.add_subcommand(name, sub, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``rotaux eval <protocol> ...``; returns the exit status."""
    parser = build_parser()
    config = parser.parse_args(sys.argv[1:] if argv is None else argv)
    name = config.protocol
    options = vars(parser.instantiate(config)[name]).copy()
    setup_fields = {field.name for field in dataclasses.fields(EvalSetup)}
    setup = EvalSetup(**{key: options.pop(key) for key in list(options) if key in setup_fields})
    try:
        PROTOCOLS[name][0](setup, **options)
    except RotauxError as error:
        print(f"rotaux: error: {error}", file=sys.stderr)
        return 2
    results = ResultsFolder(setup.out)
    if results.rows():
        print(f"\n{results.table()}\n\n(written to {results.table_path})", flush=True)
    return 0
