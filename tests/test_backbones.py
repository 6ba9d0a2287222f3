import pytest
import torch
import torchvision
from torch import nn

from rotaux.backbones import build_backbone


@pytest.mark.parametrize(
    ("name", "width", "features"),
    [("resnet18", 64, 512), ("resnet18", 8, 64), ("resnet50", 64, 2048), ("resnet50", 8, 256)],
)
def test_output_is_pooled_features_of_num_features(name, width, features):
    net = build_backbone(name, cifar_stem=True, width=width).eval()
    assert net.num_features == features
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, features)


def test_small_width_scales_every_stage():
    net = build_backbone("resnet18", width=8)
    assert net.conv1.out_channels == 8
    assert net.bn1.num_features == 8
    assert [net.layer1[0].conv1.out_channels, net.layer2[0].conv1.out_channels] == [8, 16]
    assert [net.layer3[0].conv1.out_channels, net.layer4[-1].conv2.out_channels] == [32, 64]


def test_imagenet_stem_downsamples_and_cifar_stem_does_not():
    standard = build_backbone("resnet18", width=8)
    assert standard.conv1.kernel_size == (7, 7) and standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)

    cifar = build_backbone("resnet18", cifar_stem=True, width=8)
    assert cifar.conv1.kernel_size == (3, 3)
    assert cifar.conv1.stride == (1, 1)
    assert cifar.conv1.padding == (1, 1)
    assert cifar.conv1.out_channels == 8
    assert isinstance(cifar.maxpool, nn.Identity)
    # 32x32 input: the stem keeps 32x32, so layer4 sees 4x4 (ImageNet stem: 1x1)
    seen = []
    cifar.layer4.register_forward_hook(lambda module, args, out: seen.append(out.shape[-1]))
    standard.layer4.register_forward_hook(lambda module, args, out: seen.append(out.shape[-1]))
    with torch.no_grad():
        cifar.eval()(torch.randn(1, 3, 32, 32))
        standard.eval()(torch.randn(1, 3, 32, 32))
    assert seen == [4, 1]


def _torchvision_twin(name: str, cifar_stem: bool) -> nn.Module:
    model = getattr(torchvision.models, name)()
    model.fc = nn.Identity()
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize(
    ("name", "cifar_stem"), [("resnet18", False), ("resnet18", True), ("resnet50", False)]
)
def test_width_64_state_dict_loads_strictly_into_torchvision(name, cifar_stem):
    torch.manual_seed(0)
    ours = build_backbone(name, cifar_stem=cifar_stem, width=64).eval()
    theirs = _torchvision_twin(name, cifar_stem).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), ours(images), rtol=0, atol=0)


def test_invalid_name_and_width_are_rejected():
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("resnet34")
    with pytest.raises(ValueError, match="width"):
        build_backbone("resnet18", width=0)
