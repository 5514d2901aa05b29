"""A clip's sound: one definition, for every net and every set computed from the audio window.

A clip shorter than its analysis window is zero-padded to the window's length (``extract.decode.audio``). The clip's
sound is its samples up to its last one that is not zero: the window's padding after it is not sound, and neither is
digital silence at a clip's end, which no set can tell from padding. Every set computed from the window keeps the
padding as the value it gives that set: zero samples of a waveform, zero rows of the LLDs, frames of zero power in a
spectrogram (log-mel 0; the dB mel's floor, its least value). So a **frame of sound**, a step of any of them (a sample,
a spectrogram's column, a row of LLDs), is one whose value differs from what the padding gives it, and a clip's sound
lasts through its last frame of sound (a quiet passage inside it is sound). Three counts and a mask follow, each under
one name wherever it appears:

- ``sound_samples``: how many of the window's samples are the clip's sound (the LLDs and the handcrafted sets are
  computed over those alone; a spectrogram over the frames that reach into them);
- ``sound_frames``: how many steps of a set lead up to its last frame of sound (what each net reads);
- ``of_sound``: which steps of a batch are its clips' sound, a mask from their counts.

musicnn pools whole patches of 187 frames of sound (``extract.nets.musicnn.sound_patches``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


SCAN_BLOCK = 4096  # samples


def sound_samples(y: np.ndarray) -> int:
    """How many of the samples ``y`` (mono) are the clip's sound: up to its last one that is not zero; all of them
    where every one is zero (a clip of silence alone, whose end no set can tell)."""
    y = np.ravel(y)
    # From the end, a block at a time: the sound mostly ends in the last one (scanning all of a 30-s window took
    # 2 ms, once for each set of a clip)
    for start in range((y.size - 1) // SCAN_BLOCK * SCAN_BLOCK, -1, -SCAN_BLOCK):
        found = np.flatnonzero(y[start : start + SCAN_BLOCK])
        if found.size:
            return start + int(found[-1]) + 1
    return y.size


def sound_frames(x: torch.Tensor, *, padding: float | torch.Tensor = 0.0) -> torch.Tensor:
    """How many steps of the last axis of each clip of ``x`` (B, T) or (B, C, T) lead up to its last frame of sound,
    one at least: (B,) int64. A step is of sound where a value of it differs from ``padding``, what the window's
    padding gives this set (one value, or one per clip (B,): a dB mel's floor)."""
    import torch

    if isinstance(padding, torch.Tensor):
        padding = padding.reshape(-1, *[1] * (x.ndim - 1))
    differs = (x != padding).reshape(x.shape[0], -1, x.shape[-1]).any(dim=1)  # (B, T)
    after = differs.flip(1).to(torch.uint8).argmax(dim=1)  # the steps after the last one of sound
    return torch.where(differs.any(dim=1), x.shape[-1] - after, 1)


def of_sound(frames: torch.Tensor, steps: int) -> torch.Tensor:
    """Which of ``steps`` steps are each clip's sound, given its ``frames`` (B,) of sound: (B, steps) bool."""
    import torch

    return torch.arange(steps, device=frames.device)[None, :] < frames[:, None]


def floor_of(mel: torch.Tensor) -> torch.Tensor:
    """Each clip's floor (B,): the least value of its dB mel (B, 96, T), where the window's padding lies."""
    return mel.amin(dim=(1, 2))
