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

Block groupings (the data in ``orchestrator.architectures``; each reduction / transition opens or closes a group so that
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
* SoundNet8 (ours, :class:`orchestrator.architectures.SoundNet8`; random init only): stem = conv1;
  block1 = conv2, block2 = conv3-4, block3 = conv5, block4 = conv6-7.
* EfficientNet-Lite0 (timm): stem = conv_stem, bn1; stages grouped by output resolution:
  block1 = blocks.0-1 (stride 4), block2 = blocks.2 (8), block3 = blocks.3-4 (16),
  block4 = blocks.5-6 + conv_head + bn2 (32).

Weights are only ever read with ``torch.load(..., weights_only=True)``; nothing is downloaded unless
``allow_download=True``. Finding and matching weight files is :mod:`orchestrator.weights` (search order:
explicit file, s3:// URI, packaged file, torch hub cache, download), re-exported here; the architecture
facts (:class:`ArchSpec`, the registry, init modes) are :mod:`orchestrator.architectures`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.architectures import (INIT_MODES, NUM_BLOCKS, ArchSpec, InceptionInputTransform,  # noqa: F401
                                        get_spec, list_models, parse_init)
from orchestrator.weights import WeightsSource, is_under
# re-exported: callers find weight files by model name here or in orchestrator.weights
from orchestrator.weights import hub_cache_path, load_pretrained_state, read_state_dict, resolve_weights_file  # noqa: F401
from orchestrator.config import DEFAULT_PROJECTION_DIM, PROJECTIONS
from orchestrator.errors import ConfigError


class BlockNet(nn.Module):
    """``stem -> block1..blockN -> global average pool -> dropout -> head`` (N = 4, or k after ``cutoff:k``).

    ``feature_dim`` is the width of the pooled features that the head (or a projection head) consumes.
    ``frozen_through`` is -1 when nothing is frozen, else the last frozen block (0: the stem only).
    ``l2_embedding`` (:func:`unit_embeddings`): the pooled features are L2-normalised before the head and
    any projection head (SoundCLR); off by default. It has no parameters, so checkpoints are the same.
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
        self.l2_embedding = False

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
        """Pooled features (B, feature_dim), before dropout and head; unit-norm rows with ``l2_embedding``."""
        pooled = self.pool(self.block_outputs(x)[-1])
        return F.normalize(pooled, dim=1) if self.l2_embedding else pooled

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


def build_native(name: str, in_chans: int = 3) -> nn.Module:
    """The library's own model (torchvision/timm/ours) for ``name``: default random init, 1000-class head.
    ``in_chans`` other than 3 only for architectures that take any (``ArchSpec.any_input_channels``)."""
    spec = get_spec(name)
    return spec.build(in_chans=in_chans) if spec.any_input_channels else spec.build()


class RepeatChannels(nn.Module):
    """``(B, 1, H, W) -> (B, 3, H, W)``: a 1-channel input for a 3-channel network (no parameters). Through
    the first convolution this equals summing its weights over the input channels (timm's ``in_chans=1``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


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
              pretrained: bool, in_chans: int = 3) -> BlockNet:
    """A :class:`BlockNet` reusing ``native``'s stem and first ``depth`` blocks, with a new head.

    ``pretrained``: ImageNet weights were loaded, so the architecture's ``pretrained_input`` (if any) leads
    the stem (Inception-v3's transform_input). A 1-channel input to a 3-channel architecture is repeated
    first (:class:`RepeatChannels`).
    """
    spec = get_spec(name)
    blocks = [_sequential(native, paths) for paths in spec.blocks[:depth]]
    if spec.final_relu and depth == NUM_BLOCKS:
        blocks[-1].add_module("final_relu", nn.ReLU())
    stem = _sequential(native, spec.stem)
    if pretrained and spec.pretrained_input is not None:
        stem = nn.Sequential(OrderedDict([("input_transform", spec.pretrained_input()), *stem.named_children()]))
    if in_chans != 3 and not spec.any_input_channels:
        stem = nn.Sequential(OrderedDict([("repeat_channels", RepeatChannels()), *stem.named_children()]))
    return BlockNet(name, stem, blocks, spec.block_channels[depth - 1], num_classes, dropout)


def create_model(name: str, *, num_classes: int, pretrained: WeightsSource = False, init: str | None = None,
                 allow_download: bool = False, drop_rate: float | None = None, in_chans: int = 3) -> BlockNet:
    """Build model ``name`` with a new ``num_classes`` head, initialised per ``init``.

    ``init``: pretrained | random | fusion:K | freeze:K | cutoff:K (module docstring); None means
    "pretrained" when ``pretrained`` is truthy, else "random". ``pretrained`` says where ImageNet weights
    come from (True: default sources; a path or s3:// URI: that file; see :func:`resolve_weights_file`).
    Every mode but "random" needs weights; "random" ignores ``pretrained`` so that a sweep can vary
    ``init`` under one fixed weights source. ``drop_rate``: dropout before the head (default: native).
    ``in_chans``: input channels, 3 or 1 (a 1-channel dataset; see :class:`RepeatChannels`).
    """
    spec = get_spec(name)
    kind, k = parse_init(init if init is not None else ("pretrained" if pretrained else "random"))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3, got {in_chans!r}")
    native = build_native(name, in_chans)
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
                      pretrained=kind != "random", in_chans=in_chans)
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


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers: saved in checkpoints): per input channel (``mean``
    of shape ``(C,)``) or per (channel, mel bin) (``(C, H)``), broadcast over time."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        for name, value in (("mean", mean), ("std", std)):
            value = torch.as_tensor(value, dtype=torch.float32)
            self.register_buffer(name, value.reshape(value.shape[0], -1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) in x's dtype."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def standardize_input(model: BlockNet, mean, std) -> BlockNet:
    """Put :class:`Standardize` first in ``model``'s stem (before Inception-v3's input transform, which
    expects ImageNet-normalised inputs: standardised ones have their statistics)."""
    model.stem = nn.Sequential(OrderedDict([("standardize", Standardize(mean, std)), *model.stem.named_children()]))
    return model


def unit_embeddings(model: BlockNet) -> BlockNet:
    """L2-normalise ``model``'s pooled features before its head and any projection head, as SoundCLR's
    ``train_hybridLoss.py`` and ``train_crossEntropyLoss.py`` do (``F.normalize(model(x), dim=1)``)."""
    model.l2_embedding = True
    return model


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
            raise ConfigError(f"projection must be one of {PROJECTIONS}, got {kind!r}")

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
