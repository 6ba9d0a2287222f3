import pytest
import torch
import torch.nn.functional as F

from rotaux.architecture import Architecture
from rotaux.backbones import ResNet
from rotaux.data.rotation import RotationInput, rotate_batch, rotate_views
from rotaux.errors import RotauxError
from rotaux.methods import BYOL, RotationAuxMixin, SSLMethod

# the steps run without a Trainer, so their self.log calls have nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class _Toy(RotationAuxMixin, SSLMethod):
    """The smallest method: its loss is the mean feature, so only the mixin adds structure."""

    def __init__(self, rotation_weight: float, **base_options) -> None:
        super().__init__(
            backbone=ResNet(width=8, cifar_stem=True),
            channels_last=False,
            rotation_weight=rotation_weight,
            rotation_hidden_dim=16,
            rotation_num_layers=2,
            **base_options,
        )

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        features = self.backbone(batch["views"][0])
        return self.step_output(features.mean(), batch, features)


def _batch(size: int = 4, with_rotation: bool = True) -> dict:
    torch.manual_seed(1)
    views = [torch.randn(size, 3, 16, 16) for _ in range(2)]
    batch = {"views": views, "label": torch.arange(size)}
    if with_rotation:
        batch["rotation"], batch["rotation_labels"] = rotate_batch(views[0])
    return batch


def _byol(rotation_weight: float) -> BYOL:
    return BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=rotation_weight,
        rotation_hidden_dim=16,
    )


def test_positive_weight_adds_weighted_cross_entropy_of_a_4_way_head():
    torch.manual_seed(0)
    model = _Toy(rotation_weight=0.4).eval()
    assert model.uses_rotation
    assert model.rotation_head[-1].out_features == 4
    assert model.rotation_head[0].in_features == model.num_features
    batch = _batch()
    ssl_loss = torch.tensor(1.5)
    total = model.total_loss(ssl_loss, batch)

    with torch.no_grad():
        logits = model.rotation_head(model.backbone(batch["rotation"]))
    log_probs = logits - logits.logsumexp(dim=1, keepdim=True)
    labels = batch["rotation_labels"]
    cross_entropy = -log_probs[torch.arange(len(labels)), labels].mean()
    torch.testing.assert_close(total, ssl_loss + 0.4 * cross_entropy)
    assert cross_entropy > 0.1  # the check above is not trivially satisfied by a zero term


def test_rotation_loss_trains_backbone_and_head():
    model = _Toy(rotation_weight=1.0)
    model.total_loss(torch.tensor(0.0), _batch()).backward()
    assert model.rotation_head[0].weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_zero_weight_builds_no_head_and_adds_nothing():
    model = _Toy(rotation_weight=0.0)
    assert not model.uses_rotation
    assert not [name for name, _ in model.named_parameters() if "rotation" in name]
    assert not [name for name in model.state_dict() if "rotation" in name]
    ssl_loss = torch.tensor(0.75)
    # even a batch that carries rotated images adds nothing
    assert model.total_loss(ssl_loss, _batch()) is ssl_loss
    assert model.total_loss(ssl_loss, _batch(with_rotation=False)) is ssl_loss


def test_zero_weight_byol_runs_the_backbone_once_per_view():
    model = _byol(rotation_weight=0.0)
    assert not [name for name, _ in model.named_parameters() if name.startswith("rotation_head")]
    sizes = []
    model.backbone.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    output = model.training_step(_batch(size=4), 0)
    assert sizes == [4, 4]
    assert output["features"].shape == (4, model.num_features)
    assert not output["features"].requires_grad


def test_byol_with_rotation_adds_one_forward_of_the_rotated_copies():
    model = _byol(rotation_weight=0.4)
    sizes = []
    model.backbone.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    output = model.training_step(_batch(size=4), 0)
    assert sizes == [4, 4, 16]
    assert output["loss"].requires_grad


def test_negative_weight_is_rejected_with_the_argument_name():
    with pytest.raises(RotauxError, match="rotation_weight must be >= 0"):
        _Toy(rotation_weight=-0.1)
    with pytest.raises(RotauxError, match="rotation_weight"):
        _byol(rotation_weight=-1.0)


def test_positive_weight_without_rotated_images_says_where_they_come_from():
    model = _Toy(rotation_weight=0.4)
    with pytest.raises(RotauxError, match="set up by a Trainer together with this model"):
        model.total_loss(torch.tensor(0.0), _batch(with_rotation=False))


def test_rotation_input_follows_the_rotation_options():
    assert _Toy(rotation_weight=0.0).rotation_input() is None
    assert _Toy(rotation_weight=0.4).rotation_input() == RotationInput(
        source="crop", copies=4, crop_size=None, crop_scale=None, views=2
    )
    model = _Toy(
        rotation_weight=0.1,
        rotation_source="views",
        rotation_copies=1,
        rotation_crop_size=16,
        rotation_crop_scale=(0.05, 0.14),
    )
    # views: the method's large crops
    assert model.rotation_input() == RotationInput("views", 1, 16, (0.05, 0.14), views=2)
    assert model.rotation_input().groups == 2


def test_views_source_sums_the_cross_entropy_of_each_separately_rotated_view():
    torch.manual_seed(0)
    model = _Toy(rotation_weight=0.1, rotation_source="views", rotation_copies=1).eval()
    batch = _batch()
    batch["rotation"], batch["rotation_labels"] = rotate_views(batch["views"], copies=1)
    sizes = []
    model.backbone.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    ssl_loss = torch.tensor(1.5)
    total = model.total_loss(ssl_loss, batch)
    # each rotated view goes through the backbone in a call of its own
    assert sizes == [4, 4]
    with torch.no_grad():
        logits = model.rotation_head(model.backbone(batch["rotation"]))
    labels = batch["rotation_labels"]
    per_view = [
        F.cross_entropy(logits[:4], labels[:4]),
        F.cross_entropy(logits[4:], labels[4:]),
    ]
    torch.testing.assert_close(total, ssl_loss + 0.1 * (per_view[0] + per_view[1]))
    # a sum over the views, not the mean over all rotated images
    assert not torch.allclose(total, ssl_loss + 0.1 * F.cross_entropy(logits, labels))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rotation_source": "patch"}, "rotation_source must be crop, view or views"),
        ({"rotation_copies": 2}, "rotation_copies must be 1 or 4, got 2"),
    ],
)
def test_invalid_rotation_options_are_rejected(options, message):
    with pytest.raises(RotauxError, match=message):
        _Toy(rotation_weight=0.4, **options)


@pytest.mark.parametrize(("weight", "head"), [(0.0, False), (0.4, True)])
def test_architecture_records_whether_a_rotation_head_exists(weight, head):
    model = _byol(rotation_weight=weight)
    assert model.architecture() == Architecture("BYOL", ResNet(width=8, cifar_stem=True), head)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["rotaux_architecture"]["rotation_head"] is head
