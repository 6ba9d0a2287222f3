import pytest
import torch

from rotaux.data.rotation import rotate_batch
from rotaux.errors import RotauxError
from rotaux.methods import BYOL, RotationAuxMixin, SSLMethod

# the steps run without a Trainer, so their self.log calls have nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class _Toy(RotationAuxMixin, SSLMethod):
    """The smallest method: its loss is the mean feature, so only the mixin adds structure."""

    def __init__(self, rotation_weight: float) -> None:
        super().__init__(backbone_width=8, cifar_stem=True, channels_last=False)
        self.setup_rotation_head(rotation_weight, hidden_dim=16, num_layers=2)

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
        backbone_width=8,
        cifar_stem=True,
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


def test_positive_weight_without_rotated_images_names_the_data_option():
    model = _Toy(rotation_weight=0.4)
    with pytest.raises(RotauxError, match="with_rotation"):
        model.total_loss(torch.tensor(0.0), _batch(with_rotation=False))
