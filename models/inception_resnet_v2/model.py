"""Inception-ResNet-v2 (Szegedy et al., 2016, https://arxiv.org/abs/1602.07261).

Written here rather than imported: torchvision does not ship this network. Module and
parameter names follow timm's ``inception_resnet_v2`` exactly (``conv2d_1a.conv.weight``,
``repeat.0.branch1.1.bn.running_var``, ``classif.weight`` ...), so checkpoints move between
this model and timm with ``load_state_dict(strict=True)``; timm is the test oracle only.

The stem uses unpadded convolutions as in the TF-slim original, so 299x299 inputs end at
8x8; the head pools adaptively, so any input from 75x75 up works.
"""
from typing import List

import torch
from torch import nn

__all__ = ["InceptionResNetV2", "inception_resnet_v2"]


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU, the unit every branch is built from."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        # eps 1e-3 as in the TF-slim checkpoints that timm's weights were ported from
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class _Branches(nn.Module):
    """Runs every ``branchN`` child on the same input and concatenates along channels.

    Subclasses only register ``branch0``, ``branch1``, ... in order in ``__init__``.
    """

    def _branches(self) -> List[nn.Module]:
        return [m for name, m in self.named_children() if name.startswith("branch")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self._branches()], 1)


class _ScaledResidual(_Branches):
    """``relu(x + scale * conv2d(cat(branches(x))))``; subclasses also register ``conv2d``.

    Scaling the residual before the sum is the paper's fix for unstable training
    of very wide residual Inception blocks (section 3.3); the last block has no ReLU.
    """

    def __init__(self, scale: float, relu: bool) -> None:
        super().__init__()
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2d(super().forward(x))
        return self.relu(x + self.scale * residual)


class Mixed5b(_Branches):
    """192 -> 320 channels at 35x35."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(192, 48, kernel_size=1),
            BasicConv2d(48, 64, kernel_size=5, padding=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(192, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
            BasicConv2d(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(192, 64, kernel_size=1),
        )


class Block35(_ScaledResidual):
    """Inception-ResNet-A: 320 channels at 35x35."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale, relu=True)
        self.branch0 = BasicConv2d(320, 32, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(320, 32, kernel_size=1),
            BasicConv2d(32, 32, kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(320, 32, kernel_size=1),
            BasicConv2d(32, 48, kernel_size=3, padding=1),
            BasicConv2d(48, 64, kernel_size=3, padding=1),
        )
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1)


class Mixed6a(_Branches):
    """Reduction-A: 320 x 35 x 35 -> 1088 x 17 x 17."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(320, 384, kernel_size=3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(320, 256, kernel_size=1),
            BasicConv2d(256, 256, kernel_size=3, padding=1),
            BasicConv2d(256, 384, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class Block17(_ScaledResidual):
    """Inception-ResNet-B: 1088 channels at 17x17, factorised 7x7 convolutions."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale, relu=True)
        self.branch0 = BasicConv2d(1088, 192, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1088, 128, kernel_size=1),
            BasicConv2d(128, 160, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(160, 192, kernel_size=(7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1)


class Mixed7a(_Branches):
    """Reduction-B: 1088 x 17 x 17 -> 2080 x 8 x 8."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(1088, 256, kernel_size=1),
            BasicConv2d(256, 384, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(1088, 256, kernel_size=1),
            BasicConv2d(256, 288, kernel_size=3, stride=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(1088, 256, kernel_size=1),
            BasicConv2d(256, 288, kernel_size=3, padding=1),
            BasicConv2d(288, 320, kernel_size=3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)


class Block8(_ScaledResidual):
    """Inception-ResNet-C: 2080 channels at 8x8, factorised 3x3 convolutions."""

    def __init__(self, scale: float = 1.0, relu: bool = True) -> None:
        super().__init__(scale, relu=relu)
        self.branch0 = BasicConv2d(2080, 192, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(2080, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=(1, 3), padding=(0, 1)),
            BasicConv2d(224, 256, kernel_size=(3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1)


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 for 3-channel images; returns logits N x num_classes."""

    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 1536

        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)

        # block counts and residual scales of the TF-slim reference implementation
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[Block35(scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=0.20) for _ in range(9)])
        self.block8 = Block8(relu=False)
        self.conv2d_7b = BasicConv2d(2080, self.num_features, kernel_size=1)

        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 299 x 299
        x = self.conv2d_1a(x)
        # N x 32 x 149 x 149
        x = self.conv2d_2a(x)
        # N x 32 x 147 x 147
        x = self.conv2d_2b(x)
        # N x 64 x 147 x 147
        x = self.maxpool_3a(x)
        # N x 64 x 73 x 73
        x = self.conv2d_3b(x)
        # N x 80 x 73 x 73
        x = self.conv2d_4a(x)
        # N x 192 x 71 x 71
        x = self.maxpool_5a(x)
        # N x 192 x 35 x 35
        x = self.mixed_5b(x)
        # N x 320 x 35 x 35
        x = self.repeat(x)
        x = self.mixed_6a(x)
        # N x 1088 x 17 x 17
        x = self.repeat_1(x)
        x = self.mixed_7a(x)
        # N x 2080 x 8 x 8
        x = self.repeat_2(x)
        x = self.block8(x)
        x = self.conv2d_7b(x)
        # N x 1536 x 8 x 8
        x = self.global_pool(x)
        # N x 1536
        x = self.head_drop(x)
        x = self.classif(x)
        # N x num_classes
        return x


def inception_resnet_v2(num_classes: int = 1000, **kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2 at 299x299, randomly initialised.

    Args:
        num_classes: size of the classifier output.
        **kwargs: passed to :class:`InceptionResNetV2` (``drop_rate``).
    """
    return InceptionResNetV2(num_classes=num_classes, **kwargs)
