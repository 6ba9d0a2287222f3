import json

import pytest
import torch
import torchvision
from torch import nn

from rotaux.backbones import (
    BACKBONES,
    ConvNeXt,
    ResNet,
    Swin,
    TimmModel,
    ViT,
    WideResNet,
    backbone_from_record,
)
from rotaux.errors import RotauxError


@pytest.mark.parametrize(
    ("name", "width", "features"),
    [
        ("resnet18", 64, 512),
        ("resnet18", 8, 64),
        ("resnet34", 64, 512),
        ("resnet34", 8, 64),
        ("resnet50", 64, 2048),
        ("resnet50", 8, 256),
    ],
)
def test_output_is_pooled_features_of_num_features(name, width, features):
    net = ResNet(name, cifar_stem=True, width=width).build().eval()
    assert net.num_features == features
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, features)


def test_resnet34_has_torchvisions_stage_depths():
    net = ResNet("resnet34", width=8).build()
    assert [len(net.layer1), len(net.layer2), len(net.layer3), len(net.layer4)] == [3, 4, 6, 3]


def test_small_width_scales_every_stage():
    net = ResNet("resnet18", width=8).build()
    assert net.conv1.out_channels == 8
    assert net.bn1.num_features == 8
    assert [net.layer1[0].conv1.out_channels, net.layer2[0].conv1.out_channels] == [8, 16]
    assert [net.layer3[0].conv1.out_channels, net.layer4[-1].conv2.out_channels] == [32, 64]


def test_imagenet_stem_downsamples_and_cifar_stem_does_not():
    standard = ResNet("resnet18", width=8).build()
    assert standard.conv1.kernel_size == (7, 7) and standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)

    cifar = ResNet("resnet18", cifar_stem=True, width=8).build()
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


def test_resnet_channels_set_the_stems_input():
    spec = ResNet("resnet18", cifar_stem=True, width=8, channels=1)
    net = spec.build().eval()
    assert spec.in_channels == 1 and net.conv1.in_channels == 1
    with torch.no_grad():
        assert net(torch.randn(2, 1, 16, 16)).shape == (2, 64)


def _torchvision_twin(name: str, cifar_stem: bool) -> nn.Module:
    model = getattr(torchvision.models, name)()
    model.fc = nn.Identity()
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize(
    ("name", "cifar_stem"),
    [("resnet18", False), ("resnet18", True), ("resnet34", False), ("resnet50", False)],
)
def test_width_64_state_dict_loads_strictly_into_torchvision(name, cifar_stem):
    torch.manual_seed(0)
    ours = ResNet(name, cifar_stem=cifar_stem, width=64).build().eval()
    theirs = _torchvision_twin(name, cifar_stem).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), ours(images), rtol=0, atol=0)


def test_invalid_name_and_width_are_rejected():
    with pytest.raises(RotauxError, match="resnet18"):
        ResNet("resnet101")
    with pytest.raises(RotauxError, match="width"):
        ResNet("resnet18", width=0)
    # RotauxError is a ValueError, which jsonargparse reports as an invalid option value
    assert issubclass(RotauxError, ValueError)


def _parameter_count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def _wide_resnet_parameters(depth: int, k: int) -> int:
    """Parameters of WRN-depth-k as the architecture describes it: a 3x3 stem convolution with
    bias to 16 channels; three stages of (depth - 4) / 6 pre-activation blocks of widths 16k,
    32k, 64k, each block BN -> 3x3 conv (bias) -> BN -> 3x3 conv (bias) plus a 1x1 projecting
    shortcut (bias) where the width changes; a final BN. BatchNorm has a weight and a bias per
    channel."""
    blocks = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 3 * 16 * 9 + 16
    for stage in range(3):
        for index in range(blocks):
            c_in, c_out = widths[stage] if index == 0 else widths[stage + 1], widths[stage + 1]
            total += 2 * c_in + (9 * c_in * c_out + c_out) + 2 * c_out + (9 * c_out * c_out + c_out)
            if c_in != c_out:
                total += c_in * c_out + c_out
    return total + 2 * widths[3]


def test_wide_resnet_28_2_has_128_features_and_the_described_parameter_count():
    net = WideResNet(28, 2).build().eval()
    assert net.num_features == 128
    # 1,468,352 = _wide_resnet_parameters(28, 2). solo-learn's wide_resnet28w2 (FixMatch's
    # module layout) holds exactly the same tensors: every block has bn1, conv1 and conv2 with
    # biases, bn2 and a biased 1x1 shortcut where the width changes, plus the stem convolution
    # and the final BN; it only wires the first block of stages 2 and 3 differently in forward,
    # which changes no shape. Its count is therefore also 1,468,352 (verified by building that
    # layout); the figure 1,467,610 given for it is 742 fewer, which no subset of these layers
    # accounts for.
    assert _parameter_count(net) == _wide_resnet_parameters(28, 2) == 1_468_352
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_wide_resnet_28_8_has_512_features():
    net = WideResNet(28, 8).build()
    assert net.num_features == 512
    assert _parameter_count(net) == _wide_resnet_parameters(28, 8)


@pytest.mark.parametrize("depth", [27, 6, 30])
def test_wide_resnet_depth_must_be_6n_plus_4(depth):
    with pytest.raises(RotauxError, match="6n \\+ 4"):
        WideResNet(depth, 2)


def test_vit_tiny_patch_4_takes_32_and_16_px_inputs():
    net = ViT(size="tiny", patch_size=4, image_size=32).build().eval()
    assert net.num_features == 192
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 192)
        # multi-crop's small crops: the position embedding is interpolated
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 192)


def test_vit_pooling_is_the_cls_token_or_the_normalised_mean_of_patch_tokens():
    images = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    cls = ViT(size="tiny", patch_size=8, image_size=32, pooling="cls").build().eval()
    torch.manual_seed(0)
    mean = ViT(size="tiny", patch_size=8, image_size=32, pooling="mean").build().eval()
    with torch.no_grad():
        cls_features, mean_features = cls(images), mean(images)
        torch.testing.assert_close(cls_features, cls.forward_features(images)[:, 0])
        patch_tokens = mean.forward_features(images)[:, 1:]
        torch.testing.assert_close(mean_features, mean.fc_norm(patch_tokens.mean(dim=1)))
    assert not torch.allclose(cls_features, mean_features, atol=1e-3)


def test_vit_refuses_crops_its_patch_size_does_not_divide():
    spec = ViT(size="tiny", patch_size=4, image_size=32)
    spec.check_input_size(16)
    spec.check_input_size(32)
    with pytest.raises(RotauxError, match="Crops of 30 px do not split into the ViT's 4-px"):
        spec.check_input_size(30)
    with pytest.raises(RotauxError, match="patch size 5 must divide its image_size 32"):
        ViT(size="tiny", patch_size=5, image_size=32)


def test_vit_keeps_position_embedding_and_cls_token_out_of_weight_decay():
    spec = ViT(size="tiny", patch_size=8, image_size=32)
    assert spec.no_weight_decay(spec.build()) == {"pos_embed", "cls_token"}


def test_swin_and_convnext_refuse_crops_they_cannot_take():
    Swin(image_size=32, window_size=2).check_input_size(32)
    with pytest.raises(RotauxError, match="Swin is built for 32-px images"):
        Swin(image_size=32, window_size=2).check_input_size(16)
    ConvNeXt().check_input_size(64)
    with pytest.raises(RotauxError, match="multiples of 32"):
        ConvNeXt().check_input_size(48)


# One small instance of every family: building and comparing them takes about a second each.
SMALL_BACKBONES = [
    ResNet("resnet18", cifar_stem=False, width=64),
    ResNet("resnet18", cifar_stem=True, width=64),
    ResNet("resnet18", cifar_stem=True, width=8),
    WideResNet(10, 1),
    ViT(size="tiny", patch_size=4, image_size=32, pooling="mean"),
    Swin(image_size=32, window_size=2),
    ConvNeXt(),
    TimmModel("resnet10t"),
]


def test_the_small_instances_cover_every_family():
    assert {type(spec) for spec in SMALL_BACKBONES} == set(BACKBONES)


@pytest.mark.parametrize("spec", SMALL_BACKBONES, ids=repr)
def test_record_round_trips_through_json(spec):
    record = json.loads(json.dumps(spec.record()))
    assert record["class_path"].endswith(type(spec).__name__)
    assert backbone_from_record(record) == spec


def test_record_round_trips_timm_options():
    spec = TimmModel("resnet10t", options={"in_chans": 1})
    again = backbone_from_record(json.loads(json.dumps(spec.record())))
    assert again == spec and again.in_channels == 1


def test_record_of_an_unknown_class_is_refused():
    with pytest.raises(RotauxError, match="Cannot import the backbone class"):
        backbone_from_record({"class_path": "rotaux.backbones.NoSuchNet", "init_args": {}})
    with pytest.raises(RotauxError, match="do not fit"):
        backbone_from_record({"class_path": "rotaux.backbones.ResNet", "init_args": {"depth": 18}})


@pytest.mark.parametrize("spec", SMALL_BACKBONES, ids=repr)
def test_exported_weights_load_strictly_into_the_source_library(spec):
    torch.manual_seed(0)
    ours = spec.build().eval()
    theirs = spec.build_in_source_library().eval()
    if spec.source_library() != "rotaux":
        assert not type(theirs).__module__.startswith("rotaux")
    theirs.load_state_dict(ours.state_dict(), strict=True)
    # torchvision's ResNets at width 64 are the slowest: a 16 px input keeps them quick
    side = 16 if isinstance(spec, ResNet) else 32
    images = torch.randn(2, spec.in_channels, side, side)
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), ours(images), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("spec", "library"),
    [
        (ResNet("resnet50", width=64), "torchvision"),
        (ResNet("resnet18", width=16), "rotaux"),
        (WideResNet(28, 2), "rotaux"),
        (ViT(), "timm"),
        (Swin(), "timm"),
        (ConvNeXt(), "timm"),
        (TimmModel("resnet10t"), "timm"),
    ],
    ids=repr,
)
def test_source_library_and_load_snippet(spec, library):
    assert spec.source_library() == library
    snippet = spec.load_snippet("backbone.pt")
    if library == "torchvision":
        assert "torchvision.models.resnet50()" in snippet and "backbone.pt" in snippet
    elif library == "timm":
        assert "timm.create_model(" in snippet and "backbone.pt" in snippet
    else:
        assert "load_exported_backbone" in snippet


def test_unknown_timm_model_lists_similar_names():
    with pytest.raises(RotauxError, match="timm has no model 'resnet18_nonexistent'") as error:
        TimmModel("resnet18_nonexistent").build()
    assert "Similar names" in str(error.value) and "'resnet18'" in str(error.value)
