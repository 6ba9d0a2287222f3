import pytest
import torch

from rotaux.backbones import ResNet
from rotaux.methods.supcon import SupCon

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def test_supcon_trains_on_the_batch_labels():
    torch.manual_seed(0)
    model = SupCon(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        rotation_weight=0.0,
        channels_last=False,
    ).eval()
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]

    def loss(labels: list[int]) -> torch.Tensor:
        return model.training_step({"views": views, "label": torch.tensor(labels)}, 0)["loss"]

    # unlabelled samples and samples of distinct classes have the same positives (SimCLR's)
    torch.testing.assert_close(loss([-1, -1, -1, -1]), loss([0, 1, 2, 3]))
    assert not torch.allclose(loss([0, 0, 1, 1]), loss([0, 1, 2, 3]))
