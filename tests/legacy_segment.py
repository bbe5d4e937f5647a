"""The per-second ``avseg segment`` as it was before dense output (commit 6a35afc, engine/segment.py), kept as
the reference ``--rate 1`` must reproduce byte for byte: AVSBench sampling, audio second [l, l+1), one decode
pass for the masks and a second one for the overlay, which holds each second's mask over the second. The overlay
draws its masks with today's :func:`avseg.viz.draw_mask` (it tinted them red then): the masks and summary are the
old code's, the overlay the old frames and timing with the drawing ``avseg segment`` uses now."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from avseg.data.clip import Clip
from avseg.engine.segment import _foreground_probability, _predict
from avseg.media import VideoWriter, iter_audio, iter_frames, probe
from avseg.viz import draw_mask


def legacy_segment(segmenter, video: Path, out: Path, sample_rate: int, model_name: str, window: int = 5, threshold: float = 0.5) -> Path:
    info = probe(video)
    out.mkdir(parents=True)
    masks_dir = out / "masks"
    masks_dir.mkdir()
    audio = iter_audio(video, sample_rate, window)
    rows = []
    samples = list(iter_frames(video, "avsbench"))
    for start in range(0, len(samples), window):
        batch = samples[start : start + window]
        clip = Clip(frames=np.stack([s.image for s in batch]), waveform=next(audio, np.zeros(0, dtype=np.float32)), sample_rate=sample_rate, meta={"id": video.stem})
        logits, details = _predict(segmenter, clip)
        for sample, probability, detail in zip(batch, _foreground_probability(logits), details):
            mask = probability > threshold
            Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(masks_dir / f"{len(rows):05d}.png")
            rows.append({"time": sample.time, "mask_area": float(mask.float().mean()), "sounding_score": float(probability.max()), **detail})
    writer = VideoWriter(out / "overlay.mp4", info.fps, info.width, info.height, audio_from=video if info.has_audio else None)
    current, mask = -1, None
    with writer:
        for frame in iter_frames(video, "all"):
            second = min(int(frame.time), len(rows) - 1)
            if second != current:
                current, mask = second, np.asarray(Image.open(masks_dir / f"{second:05d}.png")) > 0
            writer.write_frame(draw_mask(frame.image, mask))
    summary = {"model": model_name, "video": str(video), "sampling": "avsbench, one frame per second", "frames": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    return out

