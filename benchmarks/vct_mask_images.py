"""VCT's mask images: how far avseg's generated ones (its Semantic-SAM port by default, or the SAM 2 substitute) are
from the release's (COMBO's published Semantic-SAM mask images), and how much J moves when the model reads avseg's
instead.

    python benchmarks/vct_mask_images.py --data AVS_dataset/AVSBench_object/Single-source [--layout s4] [--model vct-s4]
        [--generator semantic-sam-l|facebook/sam2.1-hiera-large] [--split test] [--clips 50] [--device cuda]

Needs what cannot be downloaded on avseg's CI machine: AVSBench with COMBO's published mask images unpacked in COMBO's
layout (:func:`avseg.data.avsbench.mask_image_files`; hub YannQi/COMBO-AVS-checkpoints), the VCT weights (hub
nowherespyfly/VCT_AVS) and the generator's weights. For the first ``--clips`` clips of the split it reports:

- image agreement: the fraction of pixels whose colour (the region id painted in ADE colours) is the same in both
  mask images, and the mean over the published regions of the best IoU with a generated region (region colours are
  arbitrary ids, so the second is the one that says whether the same parts were found);
- regions per frame in each;
- J and F (S4/MS3; mIoU and F for AVSS) of the model with the published mask images and with the generated ones, and the
  difference: the cost of generating them, to be read beside the README's published numbers.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from _common import machine, table

from avseg.engine.data import reader_class
from avseg.engine.evaluate import evaluate_clips
from avseg.models.registry import load_model
from avseg.models.vct.inputs import mask_generator, published_mask_image_files
from avseg.models.vct.mask_images import read_published
from avseg.models.vct.system import VCTSegmenter


def regions(image: np.ndarray) -> list[np.ndarray]:
    """The regions of a mask image: one boolean map per distinct colour."""
    flat = image.reshape(-1, 3)
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    return [(inverse == k).reshape(image.shape[:2]) for k in range(len(colours))]


def best_iou(published: np.ndarray, substitute: np.ndarray) -> float:
    """Mean over the published image's regions of the best IoU with any region of the substitute's."""
    theirs, ours = regions(published), regions(substitute)
    scores = []
    for region in theirs:
        scores.append(max(float((region & other).sum() / max((region | other).sum(), 1)) for other in ours))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--layout", default="s4", choices=["s4", "ms3", "avss"])
    parser.add_argument("--model", default=None, help="a VCT name or folder (default: vct-LAYOUT)")
    parser.add_argument("--generator", default=None, help="the generator (default: the model's mask_generator, semantic-sam-l; or a SAM 2)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = load_model(args.model or f"vct-{args.layout}")
    if args.generator:
        model.config.mask_generator = args.generator
    reader = reader_class(args.layout)(args.data, split=args.split, sample_rate=16000)
    clips = [reader[i] for i in range(min(args.clips, len(reader)))]
    missing = [clip.id for clip in clips if published_mask_image_files(clip) is None]
    if missing:
        raise SystemExit(f"{len(missing)} clips have no published mask images (e.g. {missing[0]}); unpack COMBO's pre_SAM_mask folders first")
    generator = mask_generator(model.config.mask_generator, device=args.device)
    agreement, matched, published_regions, substitute_regions = [], [], [], []
    for clip in clips:
        real = clip.frames[clip.frame_valid]
        published = read_published(list(clip.meta["mask_image_files"][: len(real)]), model.image_size)
        for frame, theirs in zip(real, published):
            ours = generator.mask_image(frame, model.image_size)
            agreement.append(float((ours == theirs).all(-1).mean()))
            matched.append(best_iou(theirs, ours))
            published_regions.append(len(regions(theirs)))
            substitute_regions.append(len(regions(ours)))
    segmenter = VCTSegmenter(model, args.device)
    segmenter._generator = generator
    with_published = evaluate_clips(segmenter, clips, num_classes=reader.num_classes)
    stripped = [dataclasses.replace(clip, meta={k: v for k, v in clip.meta.items() if k != "mask_image_files"}) for clip in clips]
    with_substitute = evaluate_clips(segmenter, stripped, num_classes=reader.num_classes)
    metrics = [key for key, value in with_published.items() if isinstance(value, float)]
    print(machine())
    print(f"{len(clips)} clips of {args.layout} {args.split}; generated by: {model.config.mask_generator}")
    print(table(["measure", "value"], [
        ["pixels of equal colour", f"{np.mean(agreement):.3f}"],
        ["published regions' best IoU with a substitute region", f"{np.mean(matched):.3f}"],
        ["regions per frame, published", f"{np.mean(published_regions):.1f}"],
        ["regions per frame, substitute", f"{np.mean(substitute_regions):.1f}"],
    ]))
    print(table(["metric", "published mask images", "substitute", "difference"], [
        [key, f"{with_published[key]:.4f}", f"{with_substitute[key]:.4f}", f"{with_substitute[key] - with_published[key]:+.4f}"] for key in metrics
    ]))


if __name__ == "__main__":
    main()
