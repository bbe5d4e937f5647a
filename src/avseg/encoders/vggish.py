"""VGGish audio encoder: one 128-d embedding per 0.96-s log-mel example.

This is the VGGish network as AVSBench (and TeSO, which follows it) runs it:
the PyTorch port of Google's VGGish whose weights ship as
``vggish-10086976.pth``. :class:`VGGish` reproduces that port's module layout,
so its ``state_dict()`` has the same keys and shapes (``features.N.*`` for the
six convolutions, ``embeddings.N.*`` for the three linear layers) and the
official file loads with ``strict=True``.

Decisions, each following AVSBench's ``torchvggish/vggish.py``:

- The conv output ``(B, C, 6, 4)`` is flattened in NHWC order, because the
  linear weights were ported from TensorFlow, which flattens channels last.
- A ReLU follows every linear layer, the 128-d embedding layer included.
  Google's current TensorFlow VGGish leaves the embedding pre-activation;
  AVSBench's models were trained on the ReLU'd embedding, so we keep it.
- No PCA/whitening and 8-bit quantisation postprocess. Every AVSBench config
  (S4, MS3, AVSS) sets ``POSTPROCESS_LOG_MEL_WITH_PCA = False``; its parameters
  are not in the weights file but in a separate one, and it exists only to
  reproduce the features AudioSet released.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
from torch import nn

from avseg.audio import VGGISH_EXAMPLE_FRAMES, VGGISH_MEL_BANDS, vggish_examples
from avseg.errors import AvsegError, ConfigError
from avseg.loading import read_torch_weights

POOL_AFTER = (0, 1, 3, 5)
"""Indices of the convolutions followed by a 2x2 max-pool (1st, 2nd, 4th, 6th)."""

_DOWNSAMPLE = 2 ** len(POOL_AFTER)
_KEYS_SHOWN = 4


@dataclass(frozen=True)
class VGGishConfig:
    """Layer widths. The input is always one ``(96, 64)`` log-mel example."""

    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
    fc: tuple[int, ...] = (4096, 4096, 128)

    def __post_init__(self):
        if len(self.channels) != 6 or not self.fc or min(self.channels + self.fc) < 1:
            raise ConfigError(
                f"VGGish needs 6 positive conv widths and at least one positive fc width, "
                f"got channels={self.channels} fc={self.fc}"
            )

    @classmethod
    def tiny(cls) -> VGGishConfig:
        """A 19k-parameter VGGish (same layout, narrower layers) for tests."""
        return cls(channels=(4, 8, 8, 8, 16, 16), fc=(32, 32, 16))

    @property
    def dim(self) -> int:
        """Size of the output embedding."""
        return self.fc[-1]


class VGGish(nn.Module):
    """The VGGish network: ``(B, 96, 64)`` or ``(B, 1, 96, 64)`` log-mel examples in, ``(B, dim)`` out."""

    def __init__(self, config: VGGishConfig | None = None):
        super().__init__()
        self.config = config or VGGishConfig()
        layers: list[nn.Module] = []
        width = 1
        for index, channels in enumerate(self.config.channels):
            layers += [nn.Conv2d(width, channels, kernel_size=3, padding=1), nn.ReLU()]
            if index in POOL_AFTER:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            width = channels
        self.features = nn.Sequential(*layers)
        width *= (VGGISH_EXAMPLE_FRAMES // _DOWNSAMPLE) * (VGGISH_MEL_BANDS // _DOWNSAMPLE)
        layers = []
        for features in self.config.fc:
            layers += [nn.Linear(width, features), nn.ReLU()]
            width = features
        self.embeddings = nn.Sequential(*layers)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        size = (VGGISH_EXAMPLE_FRAMES, VGGISH_MEL_BANDS)
        if examples.shape[1:] not in (size, (1, *size)):
            raise ValueError(f"expected (B, 96, 64) or (B, 1, 96, 64) examples, got {tuple(examples.shape)}")
        if examples.ndim == 3:
            examples = examples.unsqueeze(1)
        maps = self.features(examples)  # (B, C, 6, 4)
        return self.embeddings(maps.permute(0, 2, 3, 1).flatten(1))  # NHWC, as the ported weights expect

    @classmethod
    def from_official(cls, path: str | PathLike, config: VGGishConfig | None = None) -> VGGish:
        """Load a torchvggish-layout state dict such as AVSBench's ``vggish-10086976.pth``.

        Raises :class:`AvsegError` naming the file if it is missing or
        unreadable, or if any key is missing, unexpected or of the wrong shape.
        """
        state = read_torch_weights(path, "VGGish weights")
        if not isinstance(state, dict):
            raise AvsegError(f"{path}: expected a VGGish state dict, got {type(state).__name__}")
        model = cls(config)
        problems = _mismatches(model.state_dict(), state)
        if problems:
            raise AvsegError(f"{path}: does not fit VGGish: {problems}")
        model.load_state_dict(state, strict=True)
        return model


def _mismatches(expected: dict[str, torch.Tensor], found: dict) -> str:
    """``"missing keys: ...; unexpected keys: ...; wrong shapes: ..."`` (a few of each), or ``""``."""

    def shape(value) -> str:
        return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__

    groups = {
        "missing keys": [key for key in expected if key not in found],
        "unexpected keys": [str(key) for key in found if key not in expected],
        "wrong shapes": [
            f"{key} {shape(found[key])} (expected {shape(tensor)})"
            for key, tensor in expected.items()
            if key in found and shape(found[key]) != shape(tensor)
        ],
    }
    parts = []
    for name, items in groups.items():
        if items:
            more = f" (+{len(items) - _KEYS_SHOWN} more)" if len(items) > _KEYS_SHOWN else ""
            parts.append(f"{name}: {', '.join(items[:_KEYS_SHOWN])}{more}")
    return "; ".join(parts)


class VGGishEncoder(nn.Module):
    """A frozen :class:`VGGish` that turns a waveform into one embedding per second.

    Seconds and examples are mapped 1:1, as AVSBench does: VGGish examples are
    0.96 s long and taken back to back from the start of the clip, and example
    ``k`` (audio ``[0.96k, 0.96(k+1))`` s) serves second ``k``, i.e. frame
    ``k``. The drift is 40 ms per second (0.36 s by the 10th second); we keep
    it so features match the ones AVSBench models were trained on. Clips too
    short for ``num_seconds`` examples repeat their last example, as AVSBench's
    S4/MS3 preprocessing does (see :func:`avseg.audio.vggish_examples`); the
    repeated example is embedded once and its embedding repeated.

    The network is put in eval mode with gradients off; it has no dropout or
    normalisation, so a parent's ``.train()`` does not change its output.
    """

    def __init__(self, network: VGGish):
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.network.config.dim

    @torch.no_grad()
    def embed(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(num_seconds, dim)`` float embeddings of a mono waveform in [-1, 1], on the network's device."""
        if num_seconds < 1:
            raise ValueError(f"num_seconds must be at least 1, got {num_seconds}")
        # Each distinct example goes through the network once and padding repeats its embedding, so the
        # padded seconds equal the last real one exactly (kernels may round a row differently by its
        # position in the batch).
        examples = vggish_examples(waveform, sample_rate)[:num_seconds]
        if len(examples) == 0:  # shorter than one example: one example of silence
            examples = vggish_examples(waveform, sample_rate, num_examples=1)
        weight = self.network.features[0].weight
        embeddings = self.network(torch.from_numpy(examples).to(weight.device, weight.dtype))
        return torch.cat([embeddings, embeddings[-1:].expand(num_seconds - len(embeddings), -1)])
