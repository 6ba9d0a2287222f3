import copy
from types import SimpleNamespace

import pytest
import torch
from cli_utils import fit_tiny, read_metrics

from rotaux.backbones import ResNet
from rotaux.callbacks import OnlineLinearProbe
from rotaux.methods import BYOL

# the hooks run without a Trainer here, so pl_module.log has nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

NUM_CLASSES = 4


def _module() -> BYOL:
    return BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=0.0,
    )


def _trainer() -> SimpleNamespace:
    return SimpleNamespace(
        world_size=1,
        sanity_checking=False,
        datamodule=SimpleNamespace(num_classes=NUM_CLASSES),
    )


def _probe(module: BYOL, **kwargs) -> OnlineLinearProbe:
    probe = OnlineLinearProbe(**kwargs)
    probe.setup(_trainer(), module, "fit")
    return probe


def _separable(count: int, dim: int, generator: torch.Generator) -> tuple:
    """Features of 4 classes around well-separated centres with a large shared offset and scale
    (as raw backbone features have), so the probe's BatchNorm matters."""
    centres = 6 * torch.eye(NUM_CLASSES, dim)
    labels = torch.randint(NUM_CLASSES, (count,), generator=generator)
    noise = torch.randn(count, dim, generator=generator)
    return 10 * (centres[labels] + noise) + 50, labels


def _train(probe, module, steps: int, generator: torch.Generator, batch: int = 32) -> None:
    for step in range(steps):
        features, labels = _separable(batch, module.num_features, generator)
        probe.on_train_batch_end(
            _trainer(), module, {"features": features}, {"label": labels}, step
        )


def test_probe_reaches_high_accuracy_on_separable_features():
    module = _module()
    probe = _probe(module)
    generator = torch.Generator().manual_seed(0)
    _train(probe, module, steps=60, generator=generator)
    for index in range(4):
        features, labels = _separable(64, module.num_features, generator)
        probe.on_validation_batch_end(
            _trainer(), module, {"features": features}, {"label": labels}, index
        )
    assert probe.top1.compute() > 0.95
    assert probe.top5.compute() == 1.0  # 4 classes: top-4 always contains the label


def test_probe_does_not_touch_the_pretraining_module():
    module = _module()
    probe = _probe(module)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.randint(NUM_CLASSES, (8,))
    output = module.training_step({"views": [images, images], "label": labels}, 0)
    before = copy.deepcopy(module.state_dict())
    probe_before = probe.classifier[1].weight.detach().clone()
    for step in range(3):
        probe.on_train_batch_end(_trainer(), module, output, {"label": labels}, step)
    # backbone weights and BatchNorm running statistics are exactly what the method left
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in module.parameters())
    assert not torch.equal(probe.classifier[1].weight, probe_before)


def test_probe_skips_unlabeled_samples():
    module = _module()
    probe = _probe(module)
    generator = torch.Generator().manual_seed(0)
    features, labels = _separable(16, module.num_features, generator)
    reference = _probe(module)
    reference.on_train_batch_end(
        _trainer(), module, {"features": features[:8]}, {"label": labels[:8]}, 0
    )
    # STL-10's unlabeled images have label -1: the probe trains on the labeled half only
    mixed = torch.cat([labels[:8], torch.full((8,), -1)])
    probe.on_train_batch_end(_trainer(), module, {"features": features}, {"label": mixed}, 0)
    for ours, theirs in zip(
        probe.classifier.parameters(), reference.classifier.parameters(), strict=True
    ):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("labeled", [0, 1])
def test_probe_survives_batches_with_almost_no_labels(labeled):
    # a batch of STL-10's train+unlabeled images can hold fewer than two labeled samples: too few
    # for batch statistics, so the running ones stay and standardise the batch
    module = _module()
    probe = _probe(module)
    norm = probe.classifier[0]
    norm.running_mean.fill_(3.0)
    norm.running_var.fill_(4.0)
    before = copy.deepcopy(probe.classifier.state_dict())
    labels = torch.full((16,), -1)
    labels[:labeled] = 2
    features = torch.randn(16, module.num_features)
    probe.on_train_batch_end(_trainer(), module, {"features": features}, {"label": labels}, 0)
    after = probe.classifier.state_dict()
    assert torch.equal(after["0.running_mean"], before["0.running_mean"])
    assert torch.equal(after["0.running_var"], before["0.running_var"])
    weight_changed = not torch.equal(after["1.weight"], before["1.weight"])
    assert weight_changed == bool(labeled)
    assert torch.isfinite(after["1.weight"]).all()
    if labeled:
        # the one labeled sample's gradient, with features standardised by the running stats
        reference = copy.deepcopy(before)
        linear = torch.nn.Linear(module.num_features, NUM_CLASSES)
        linear.load_state_dict({"weight": reference["1.weight"], "bias": reference["1.bias"]})
        loss = torch.nn.functional.cross_entropy(
            linear((features[:1] - 3.0) / torch.sqrt(torch.tensor(4.0) + norm.eps)),
            labels[:1],
        )
        loss.backward()
        expected = reference["1.weight"] - probe.lr * linear.weight.grad
        torch.testing.assert_close(after["1.weight"], expected)


def test_probe_ignores_non_finite_features():
    # the features of a step that the divergence guard skips can be NaN; they must not reach the
    # probe's weights or statistics
    module = _module()
    generator = torch.Generator().manual_seed(1)
    features, labels = _separable(16, module.num_features, generator)
    reference = _probe(module)
    reference.on_train_batch_end(
        _trainer(), module, {"features": features[:12]}, {"label": labels[:12]}, 0
    )
    probe = _probe(module)
    features[12:, 3] = float("nan")
    probe.on_train_batch_end(_trainer(), module, {"features": features}, {"label": labels}, 0)
    for name, value in probe.classifier.state_dict().items():
        torch.testing.assert_close(value, reference.classifier.state_dict()[name])
    assert torch.isfinite(probe.classifier[1].weight).all()


def test_state_dict_round_trips_exactly_even_when_loaded_before_setup():
    module = _module()
    probe = _probe(module, lr=0.05, seed=3)
    _train(probe, module, steps=5, generator=torch.Generator().manual_seed(0))
    saved = copy.deepcopy(probe.state_dict())
    assert saved["optimizer"]["state"]  # momentum buffers are part of the state

    early = OnlineLinearProbe(lr=0.05, seed=7)  # other seed: the weights must come from `saved`
    early.load_state_dict(copy.deepcopy(saved))
    assert early.state_dict() == {}
    early.setup(_trainer(), module, "fit")
    late = _probe(module, lr=0.05, seed=7)
    late.load_state_dict(copy.deepcopy(saved))
    for restored in (early, late):
        for name, value in restored.state_dict()["classifier"].items():
            assert torch.equal(value, saved["classifier"][name]), name

    # the next step (which uses the restored momentum) is the same as the original probe's
    for restored in (probe, early, late):
        _train(restored, module, steps=1, generator=torch.Generator().manual_seed(1))
    for restored in (early, late):
        for ours, theirs in zip(
            restored.classifier.parameters(), probe.classifier.parameters(), strict=True
        ):
            assert torch.equal(ours, theirs)


def test_same_seed_same_initial_probe():
    module = _module()
    first, second = _probe(module, seed=5), _probe(module, seed=5)
    assert torch.equal(first.classifier[1].weight, second.classifier[1].weight)
    assert not torch.equal(first.classifier[1].weight, _probe(module, seed=6).classifier[1].weight)


def test_probe_logs_accuracy_and_is_saved_in_checkpoints(tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.rotation_weight",
        "0",
        "--model.proj_hidden_dim",
        "32",
        "--model.pred_hidden_dim",
        "32",
        "--trainer.log_every_n_steps",
        "1",
    )
    rows = read_metrics(run)
    top1 = [row["val/linear_top1"] for row in rows if "val/linear_top1" in row]
    assert len(top1) == 1 and 0.0 <= top1[0] <= 1.0
    assert any("train/linear_loss" in row for row in rows)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if "OnlineLinearProbe" in k]
    assert state["classifier"]["1.weight"].shape == (10, 64)
    assert state["optimizer"]["state"]


def test_masked_step_equals_plain_batchnorm_and_linear_on_the_labeled_samples():
    # the probe masks unlabeled samples instead of indexing them away; the result must be what
    # torch's own BatchNorm1d + Linear + SGD give on the labeled samples alone
    module = _module()
    probe = _probe(module, momentum=0.0)
    reference = copy.deepcopy(probe.classifier)
    optimizer = torch.optim.SGD(reference.parameters(), lr=probe.lr, momentum=0.0)
    generator = torch.Generator().manual_seed(2)
    for step in range(3):
        features, labels = _separable(16, module.num_features, generator)
        labels[step::3] = -1
        probe.on_train_batch_end(
            _trainer(), module, {"features": features}, {"label": labels}, step
        )
        labeled = labels >= 0
        reference.train()
        loss = torch.nn.functional.cross_entropy(reference(features[labeled]), labels[labeled])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, value in reference.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(probe.classifier.state_dict()[name], value, msg=name)
