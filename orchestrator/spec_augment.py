"""Training-time spectrogram augmentation: SoundCLR's SpecAugment-style frequency and time masks.

Applied to training batches only (``SpecMask`` is the identity in eval mode), on the device, per sample.
Feature extraction itself is :mod:`orchestrator.features`; waveform augmentation is :mod:`orchestrator.augment`.

What a masked band is filled with (``fill``):

* ``max`` (default): the sample's per-channel maximum. SoundCLR writes 0 into its masks
  (utils/transforms.py, ``FrequencyMask``/``TimeMask``), but its spectrogram is
  ``librosa.power_to_db(S, ref=np.max)``, whose maximum is 0 dB by construction: the reference's masks hold
  each clip's loudest value. Our features are ``log(mel + eps)`` with no such reference level, so ``max`` is
  what the reference computes.
* ``zero``: a literal 0. In our natural-log features that is mel power 1.0, a level that depends on the
  waveform's scale, so it means nothing in particular; kept for experiments that want the literal value.
* ``mean``: the sample's mean over all channels (what this project used before; a common SpecAugment choice).
"""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.config import MASK_FILLS, MaskConfig


class SpecMask(nn.Module):
    """``freq_masks`` bands of 0..``max_freq`` mel bins and ``time_masks`` spans of 0..``max_time`` frames,
    drawn independently per sample and set to ``fill`` (module docstring). Active only in training mode.

    Widths are uniform on 0..max inclusive and the start uniform over the positions where the band fits, as
    SoundCLR's ``random.randint(0, max_width)`` / ``random.randint(0, size - width)``.
    """

    # defaults: MaskConfig's (SoundCLR's 2 frequency masks of <= 32 bins, 1 time mask of <= 32 frames, max fill)
    def __init__(self, freq_masks: int = MaskConfig.freq_masks, max_freq: int = MaskConfig.max_freq,
                 time_masks: int = MaskConfig.time_masks, max_time: int = MaskConfig.max_time,
                 fill: str = MaskConfig.fill):
        super().__init__()
        if fill not in MASK_FILLS:
            raise ValueError(f"mask fill must be one of {MASK_FILLS}, got {fill!r}")
        self.freq_masks, self.max_freq = freq_masks, max_freq
        self.time_masks, self.max_time = time_masks, max_time
        self.fill = fill

    def _fill_value(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C|1, 1, 1) values the masked cells take, computed on the unmasked input."""
        if self.fill == "zero":
            return x.new_zeros(())
        if self.fill == "max":
            return x.amax(dim=(2, 3), keepdim=True)
        return x.mean(dim=(1, 2, 3), keepdim=True)

    def _mask(self, x: torch.Tensor, fill: torch.Tensor, axis: int, count: int, max_width: int) -> torch.Tensor:
        batch, size = x.shape[0], x.shape[axis]
        positions = torch.arange(size, device=x.device)
        for _ in range(count):
            width = torch.randint(0, max_width + 1, (batch, 1), device=x.device)
            start = (torch.rand(batch, 1, device=x.device) * (size - width + 1).clamp(min=1)).long()
            hit = (positions >= start) & (positions < start + width)  # (batch, size)
            shape = [batch, 1, 1, 1]
            shape[axis] = size
            if self.fill == "mean":
                fill = x.mean(dim=(1, 2, 3), keepdim=True)  # as before: the mean of the partly masked image
            x = torch.where(hit.view(shape), fill, x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked ``x`` (B, C, mel, time) in training mode, ``x`` itself in eval mode."""
        if not self.training:
            return x
        fill = self._fill_value(x)
        x = self._mask(x, fill, 2, self.freq_masks, self.max_freq)
        return self._mask(x, fill, 3, self.time_masks, self.max_time)
