import pytest
import torch

from rotaux.backbones import ResNet
from rotaux.errors import RotauxError
from rotaux.methods.wmse import WMSE

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _wmse(seed: int, **overrides) -> WMSE:
    torch.manual_seed(seed)
    options = dict(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=3,
        whitening_size=4,
        rotation_weight=0.0,
        channels_last=False,
    )
    return WMSE(**(options | overrides))


def _batch(size: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(size, 3, 32, 32, generator=generator) for _ in range(2)]
    return {"views": views, "label": torch.zeros(size, dtype=torch.long)}


def test_whitening_groups_follow_the_checkpointed_seed():
    model, other = _wmse(seed=0).eval(), _wmse(seed=1).eval()
    batch = _batch(8)
    loss = model.training_step(batch, 0)["loss"]
    # another seed draws other groups of 4 out of 8
    other.load_state_dict(model.state_dict() | {"whitening_seed": other.whitening_seed})
    assert not torch.equal(other.training_step(batch, 0)["loss"], loss)
    # the seed in the state dict (and so in checkpoints) gives the same groups again
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.training_step(batch, 0)["loss"], loss)


def test_whitening_needs_more_samples_per_group_than_dimensions():
    with pytest.raises(RotauxError, match="more embeddings than"):
        _wmse(seed=0, whitening_size=3)


def test_a_global_batch_that_whitening_size_does_not_divide_is_refused():
    with pytest.raises(RotauxError, match="divide the global batch of 6"):
        _wmse(seed=0).training_step(_batch(6), 0)
