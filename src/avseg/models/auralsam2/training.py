"""Training AuralSAM2 as the release does: SAM 2's multistep mask loss plus the audio-guided contrastive loss.

**Batches.** The release flattens a batch of clips into one sequence of frames and tracks it as one video,
the middle frame being the conditioning frame (``AVmodel.forward``: ``cond_frame=int(frames / 2)`` in
training); the AuralFuser's audio blocks and fusion also see the whole batch at once. We do the same
(avseg's loop then averages gradients over ``micro_batches`` / processes as for every model). The Ref-AVS
variant reads one expression per tracked video (the release trains it with one clip per GPU: its
``_encode_text(*prompts)`` takes one string), so each micro-batch must hold one clip there.

**Mask loss** (``loss/training/sam2_training_loss.py``, weights from ``sam2_training_config.yaml``): per frame with
a ground truth, on SAM 2's three masks at the input size (labels resized there with nearest, as the release's
transforms resize them): focal (alpha 0.25, gamma 2) x 20 + dice x 1 on the mask of lowest ``20 focal + dice``,
L1 between each predicted IoU and the mask's actual IoU (all three, ``supervise_all_iou``) x 1, all three on
frames with an object only, and the object score's BCE x 1; summed over frames (the release's ``core_loss``).

**Contrastive loss** (``loss/training/contrastive_learning.py``, temperature 0.1): per frame and fuser level, pixels
of the projected visual prompt (64x64) are sampled per class, up to 128 the prediction gets wrong ("hard") and
128 it gets right ("easy"; 64 and 64 for the Ref-AVS variant, its release's ``sample_limits``), topped up from the
other kind to twice that, and pulled towards the frame's projected audio
prompt of their class (background for a silent frame), pushed from the other class's pixels and audio. Three
release bugs are done right, as the code clearly intends: hard/easy compare the *thresholded* prediction with
the label (the release compares raw logits with 0/1 labels, so every pixel is "hard"); a sampled pixel's label
is its class (the release indexes the label map with positions inside the class's subset); the cap of 15240
samples keeps a random subset (the release truncates at a random length).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from avseg.config import ConfigError
from avseg.data.clip import Clip
from avseg.models.auralsam2.inputs import clip_inputs, expression_features
from avseg.models.auralsam2.model import AuralSAM2, ClipOutput
from avseg.models.clip_batches import ClipBatches

WEIGHTS = {"mask": 20.0, "dice": 1.0, "iou": 1.0, "class": 1.0}
"""``sam2_training_config.yaml``'s ``weight_dict``."""
TEMPERATURE, SAMPLES_PER_KIND, TOTAL_SAMPLES = 0.1, 128, 15240
"""``contrastive_learning`` in ``sam2_training_config.yaml``."""
REFAVS_SAMPLES_PER_KIND = 64
"""The Ref-AVS release's ``sample_limits`` (``ref-avs.code/configs/training/sam2_training_config.yaml``)."""


def mask_loss(logits: torch.Tensor, iou: torch.Tensor, object_scores: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> dict[str, torch.Tensor]:
    """SAM 2's multistep loss summed over the annotated frames: ``logits (T, 3, S, S)`` at the input size,
    ``iou (T, 3)``, ``object_scores (T, 1)``, ``masks (T, S, S)`` 0/1."""
    logits, iou, object_scores, masks = logits[annotated], iou[annotated], object_scores[annotated], masks[annotated]
    targets = masks[:, None].expand_as(logits)
    probability = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    focal = ((0.25 * targets + 0.75 * (1 - targets)) * bce * (1 - p_t) ** 2).flatten(2).mean(-1)
    dice = 1 - (2 * (probability * targets).flatten(2).sum(-1) + 1) / (probability.flatten(2).sum(-1) + targets.flatten(2).sum(-1) + 1)
    predicted, truth = logits.flatten(2) > 0, targets.flatten(2) > 0
    actual = (predicted & truth).sum(-1).float() / (predicted | truth).sum(-1).float().clamp(min=1.0)
    iou_l1 = (iou - actual).abs().mean(-1)
    best = (focal * WEIGHTS["mask"] + dice * WEIGHTS["dice"]).argmin(-1)
    rows = torch.arange(len(best), device=best.device)
    present = masks.flatten(1).any(-1).float()
    losses = {
        "mask": (focal[rows, best] * present).sum(),
        "dice": (dice[rows, best] * present).sum(),
        "iou": (iou_l1 * present).sum(),
        "class": F.binary_cross_entropy_with_logits(object_scores[:, 0], present, reduction="sum"),
    }
    losses["total"] = sum(WEIGHTS[name] * value for name, value in losses.items())
    return losses


def contrastive_loss(
    visual: list[torch.Tensor], audio: list[torch.Tensor], masks: torch.Tensor, predictions: torch.Tensor, annotated: torch.Tensor,
    generator: torch.Generator, samples_per_kind: int = SAMPLES_PER_KIND,
) -> torch.Tensor:
    """The audio-guided contrastive loss (see the module docstring): ``visual`` per level ``(T, D, g, g)``, ``audio`` per
    level ``(T, D, 1)``, ``masks`` and ``predictions`` (logits) ``(T, g, g)`` at the fuser's grid."""
    anchors, anchor_labels, audios, audio_labels = [], [], [], []
    for frame in torch.nonzero(annotated).flatten().tolist():
        labels = masks[frame].flatten().long()
        right = (predictions[frame].flatten() > 0).long() == labels
        classes = torch.unique(labels)
        for level in range(len(visual)):
            pixels = visual[level][frame].flatten(1).T  # (g*g, D)
            sounding = [c for c in classes.tolist() if c != 0] or [0]
            for label in sounding:
                audios.append(audio[level][frame, :, 0])
                audio_labels.append(label)
            for label in classes.tolist():
                hard = torch.nonzero((labels == label) & ~right).flatten()
                easy = torch.nonzero((labels == label) & right).flatten()
                take_hard, take_easy = min(samples_per_kind, len(hard)), min(samples_per_kind, len(easy))
                if take_hard > take_easy:  # top up from the other kind, as the release
                    take_hard = min(len(hard), take_hard + 2 * samples_per_kind - take_hard - take_easy)
                else:
                    take_easy = min(len(easy), take_easy + 2 * samples_per_kind - take_hard - take_easy)
                for pool, count in ((hard, take_hard), (easy, take_easy)):
                    chosen = pool[torch.randperm(len(pool), generator=generator)[:count].to(pool.device)]
                    anchors.append(pixels[chosen])
                    anchor_labels += [label] * len(chosen)
    if not anchors:
        return masks.new_zeros(())
    anchors, audios = torch.cat(anchors), torch.stack(audios)
    anchor_labels = torch.tensor(anchor_labels, device=anchors.device)
    if len(anchors) > TOTAL_SAMPLES:
        keep = torch.randperm(len(anchors), generator=generator)[:TOTAL_SAMPLES].to(anchors.device)
        anchors, anchor_labels = anchors[keep], anchor_labels[keep]
    return info_nce(anchors, anchor_labels, audios, torch.tensor(audio_labels, device=anchors.device))


def info_nce(anchors: torch.Tensor, anchor_labels: torch.Tensor, audios: torch.Tensor, audio_labels: torch.Tensor) -> torch.Tensor:
    """The release's ``info_nce``: every pixel against every pixel and audio embedding; positives are the audio
    embeddings of its class (pixel-pixel positives of the same binary label are removed, ``manipulate_cover_mask``);
    negatives, everything of another class, are added to each positive's denominator."""
    contrasts = torch.cat([anchors, audios])
    labels = torch.cat([anchor_labels, audio_labels])
    positive = (anchor_labels[:, None] == labels[None]).float()
    logits = anchors @ contrasts.T / TEMPERATURE
    logits = logits - logits.max(1, keepdim=True).values.detach()
    negative = 1 - positive
    shifted = anchor_labels.float() + 1
    product = shifted[:, None] * shifted[None]
    pixels = len(anchors)
    positive[:, :pixels][(product == 1.0) | (product == 4.0)] = 0
    positive.fill_diagonal_(0.0)
    negatives = (logits.exp() * negative).sum(1, keepdim=True)
    log_probability = logits - torch.log(logits.exp() + negatives)
    pairs = positive.sum(1)
    pairs = torch.where(pairs < 1e-6, torch.ones_like(pairs), pairs)
    return -((positive * log_probability).sum(1) / pairs).mean()


class AuralSAM2Task(ClipBatches):
    """Training batches of clips for ``avseg train`` (see the module docstring)."""

    model: AuralSAM2

    def loss(self, clips: list[Clip], device: torch.device | str = "cpu", forward=None) -> dict[str, torch.Tensor]:
        model = self.model
        size = model.image_size
        parts = [clip_inputs(clip, size, device) for clip in clips]
        pixels, spectrograms = torch.cat([p["pixels"] for p in parts]), torch.cat([p["spectrograms"] for p in parts])
        masks = torch.cat([torch.from_numpy(clip.masks[clip.frame_valid] > 0).float() for clip in clips]).to(device)
        annotated = torch.cat([torch.from_numpy(clip.mask_valid[clip.frame_valid]) for clip in clips]).to(device)
        expression = None
        if model.config.referring:
            if len(clips) != 1:
                raise ConfigError(
                    f"train: the Ref-AVS AuralSAM2 tracks one clip and its expression per micro-batch, got {len(clips)}; set train.micro_batches to train.batch_clips"
                )
            expression = expression_features(model, clips[0])
        output: ClipOutput = (forward or model)(pixels, spectrograms, conditioning_frame=len(pixels) // 2, expression=expression)
        logits = F.interpolate(output.multimask_logits, (size, size), mode="bilinear", align_corners=False)
        full_masks = F.interpolate(masks[:, None], (size, size), mode="nearest")[:, 0]
        losses = mask_loss(logits, output.iou_scores, output.object_scores, full_masks, annotated)
        visual, audio = model.aural_fuser.project(output.visual_prompts, output.audio_prompts, output.visual_updates)
        grid = model.aural_fuser.grid
        best = output.multimask_logits[torch.arange(len(pixels), device=pixels.device), output.iou_scores.argmax(-1)]
        predictions = F.interpolate(best[:, None].detach(), (grid, grid), mode="bilinear", align_corners=False)[:, 0]
        grid_masks = F.interpolate(masks[:, None], (grid, grid), mode="nearest")[:, 0]
        generator = torch.Generator().manual_seed(int(self.seed) + int(annotated.sum()))
        per_kind = REFAVS_SAMPLES_PER_KIND if model.config.referring else SAMPLES_PER_KIND
        losses["contrastive"] = contrastive_loss(visual, audio, grid_masks, predictions, annotated, generator, per_kind)
        losses["total"] = losses["total"] + losses["contrastive"]
        return losses
