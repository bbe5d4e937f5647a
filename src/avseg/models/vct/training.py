"""VCT's training losses, as the release (``criterion.py``, ``criterion_s4_pac.py``, ``criterion_ss_pac.py``; weights
from ``COMBO_SWINB.yaml``), and its task for ``avseg train``.

Per annotated frame, the targets are Mask2Former's semantic ones: one mask per class present in the label map, the
background (class 0) included (the release's dataset mappers take ``np.unique`` of the map, 255 ignored).

- **Matched losses** (transformers' ``Mask2FormerLoss``, Mask2Former's criterion): Hungarian matching on class and
  point-sampled mask costs, then cross-entropy x 2 (no-object weight 0.1), sigmoid BCE x 5 and dice x 5 on 12,544
  importance-sampled points (oversampling 3, importance 0.75), for the output and each of the 9 earlier predictions.
- **Prototype-audio loss** x 1 (S4 and AVSS; MS3 has no prototypes, ``PROTO_WEIGHT: 0``): ``BCE_with_logits(exp(logit_scale)
  * <audio, prototype_k>, y_k)`` over the prototypes, with the embeddings of :class:`~avseg.models.vct.decoder.DecoderOutput`.
  S4: ``y`` is the one-hot of the clip's category among the release's 23 (:data:`S4_CATEGORIES`, its order);
  AVSS: ``y_k = 1`` for each class present in the frame's label map.

Only annotated frames are supervised (S4 train: its first frame, as the release's ``indices_first_frame``).

``data.augmentation: mask2former`` (the recipes) augments each training clip as the release's dataset mappers do
(:mod:`avseg.data.augmentation`): frames, label maps and mask images together, colour per image; the padding is
ignored by the losses (label 255). The random values come from the trainer's per-step seed, so a resumed run and a run
over several processes draw the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from avseg.data.augmentation import augment_clip
from avseg.data.clip import Clip
from avseg.errors import ConfigError
from avseg.models.clip_batches import ClipBatches
from avseg.models.vct.inputs import clip_images, mask_generator, model_inputs
from avseg.models.vct.model import VCT, VCTOutput

CLASS_WEIGHT, MASK_WEIGHT, DICE_WEIGHT, PROTO_WEIGHT, NO_OBJECT_WEIGHT = 2.0, 5.0, 5.0, 1.0, 0.1
TRAIN_NUM_POINTS, OVERSAMPLE_RATIO, IMPORTANCE_SAMPLE_RATIO = 12544, 3.0, 0.75
IGNORE = 255

S4_CATEGORIES = (
    "helicopter", "mynah_bird_singing", "typing_on_computer_keyboard", "playing_violin", "playing_glockenspiel",
    "playing_piano", "lions_roaring", "baby_laughter", "male_speech", "lawn_mowing", "playing_ukulele", "playing_tabla",
    "driving_buses", "cap_gun_shooting", "chainsawing_trees", "playing_acoustic_guitar", "cat_meowing", "female_singing",
    "ambulance_siren", "dog_barking", "horse_clip-clop", "coyote_howling", "race_car",
)  # fmt: skip
"""AVSBench S4's categories in the order of the release's ``register_avss4_sem.py`` (prototype k is category k)."""


def mask2former_loss(num_classes: int, num_points: int = TRAIN_NUM_POINTS) -> Mask2FormerLoss:
    config = Mask2FormerConfig(
        num_labels=num_classes,
        class_weight=CLASS_WEIGHT,
        mask_weight=MASK_WEIGHT,
        dice_weight=DICE_WEIGHT,
        no_object_weight=NO_OBJECT_WEIGHT,
        train_num_points=num_points,
        oversample_ratio=OVERSAMPLE_RATIO,
        importance_sample_ratio=IMPORTANCE_SAMPLE_RATIO,
    )
    return Mask2FormerLoss(config, weight_dict={})


def semantic_targets(labels: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(N, H, W)`` label maps -> per frame the classes present (255 ignored) and their binary masks."""
    classes, masks = [], []
    for frame in labels:
        present = torch.unique(frame)
        present = present[present != IGNORE]
        classes.append(present.long())
        masks.append(torch.stack([frame == c for c in present]).float() if len(present) else frame.new_zeros((0, *frame.shape), dtype=torch.float))
    return classes, masks


def prototype_loss(output: VCTOutput, logit_scale: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``BCE_with_logits(exp(logit_scale) * <audio, prototypes>, targets)`` on the frames ``rows``."""
    similarity = logit_scale.exp() * torch.einsum("nc,nkc->nk", output.audio_embedding[rows], output.prototype_embedding[rows])
    return F.binary_cross_entropy_with_logits(similarity, targets)


def vct_losses(model: VCT, output: VCTOutput, labels: torch.Tensor, annotated: torch.Tensor, categories: torch.Tensor | None = None, criterion: Mask2FormerLoss | None = None) -> dict[str, torch.Tensor]:
    """The release's weighted losses on the ``annotated`` frames of ``labels`` (``(N, S, S)`` class maps at the input
    size); ``categories``: S4's 0-based category per frame (its prototype targets). ``total`` is their sum."""
    criterion = criterion or mask2former_loss(model.num_classes)
    rows = annotated.nonzero().flatten()
    classes, masks = semantic_targets(labels[rows])
    predictions = [
        {"masks_queries_logits": m[rows], "class_queries_logits": c[rows]} for c, m in zip(output.class_logits[:-1], output.mask_logits[:-1])
    ]
    raw = criterion(output.mask_logits[-1][rows], output.class_logits[-1][rows], masks, classes, predictions)
    weights = {"loss_cross_entropy": CLASS_WEIGHT, "loss_mask": MASK_WEIGHT, "loss_dice": DICE_WEIGHT}
    losses = {"class": 0.0, "mask": 0.0, "dice": 0.0}
    for key, value in raw.items():
        base = next(name for name in weights if key == name or key.startswith(name + "_"))
        losses[{"loss_cross_entropy": "class", "loss_mask": "mask", "loss_dice": "dice"}[base]] += weights[base] * value
    if output.prototype_embedding is not None:
        prototypes = output.prototype_embedding.shape[1]
        if categories is not None:
            targets = F.one_hot(categories[rows], prototypes).float()
        else:
            targets = torch.zeros(len(rows), prototypes, device=labels.device)
            for row, present in enumerate(classes):
                targets[row, present[present < prototypes]] = 1.0
        losses["prototype"] = PROTO_WEIGHT * prototype_loss(output, model.decoder.logit_scale, targets, rows)
    losses["total"] = sum(losses.values())
    return losses


def frame_labels(clip: Clip, size: int) -> torch.Tensor:
    """The clip's real frames' label maps at ``size``, class indices (binary masks: 0/1): nearest with pixel centres
    aligned (``nearest-exact``, PIL's ``NEAREST``, as the release's ``resize_img``), so labels stay on the frames,
    which PIL resizes centre-aligned too (torch's ``nearest`` is offset by half a pixel)."""
    masks = torch.from_numpy(clip.masks[clip.frame_valid].astype(np.int64))
    return F.interpolate(masks[:, None].float(), (size, size), mode="nearest-exact")[:, 0].long()


class VCTTask(ClipBatches):
    """Training batches of clips for ``avseg train``: every real frame through the model, annotated frames supervised."""

    model: VCT

    def __init__(
        self, model: VCT, clips: Sequence[Clip], batch_clips: int = 1, seed: int = 0, augmentation: str = "none", augment_from_short_side: bool = False
    ):
        """``augment_from_short_side``: augment each clip from the square of its frames' short side instead of the
        model's size, as the release does for AVSS's training split (``generate_data_384`` copies only val and test to
        384; the AVSS mapper squares each raw frame, label and mask image to its short side, ``resize_img``); S4 and
        MS3 train on 384 copies, as here by default."""
        super().__init__(model, clips, batch_clips, seed)
        self.augmentation = augmentation
        self.augment_from_short_side = augment_from_short_side
        self.criterion = mask2former_loss(model.num_classes)
        self._generator = None
        self.categories = self.category_indices() if model.config.num_prototypes and model.num_classes == 2 else None

    def category_indices(self) -> dict[str, int]:
        """S4's prototype targets: the release's 23 categories for a model of 23 prototypes; another number of prototypes
        (the tiny preset) takes the training clips' categories in sorted order."""
        names = sorted({str(clip.meta.get("category")) for clip in self.clips})
        prototypes = self.model.config.num_prototypes
        if prototypes == len(S4_CATEGORIES):
            unknown = [name for name in names if name not in S4_CATEGORIES]
            if unknown:
                raise ConfigError(f"train: S4 categories not among the release's 23 ({', '.join(unknown[:3])}); VCT's prototypes are those 23")
            return {name: index for index, name in enumerate(S4_CATEGORIES)}
        if len(names) > prototypes:
            raise ConfigError(f"train: {len(names)} categories in the data but the model has {prototypes} prototypes")
        return {name: index for index, name in enumerate(names)}

    def generator(self, device: torch.device | str = "cpu"):
        """The mask-image generator, loaded on first use on the training device (on a CPU beside a GPU run it would
        make every clip without published mask images wait for it)."""
        if self._generator is None:
            self._generator = mask_generator(self.model.config.mask_generator, device=device)
        return self._generator

    def loss(self, clips: list[Clip], device: torch.device | str = "cpu", forward=None) -> dict[str, torch.Tensor]:
        model = self.model
        size = model.image_size
        if any(clip.masks is None for clip in clips):
            raise ConfigError("train: VCT trains on annotated clips (a clip without masks)")
        rng = np.random.default_rng(int(torch.randint(2**62, ()))) if self.augmentation == "mask2former" else None
        parts, maps = [], []
        for clip in clips:
            source = min(clip.frames.shape[1:3]) if rng is not None and self.augment_from_short_side else size
            frames, images, _ = clip_images(clip, source, lambda: self.generator(device))
            labels = frame_labels(clip, source)
            if rng is not None:
                frames, augmented, images = augment_clip(frames, labels.numpy(), images, size, rng)
                labels = torch.from_numpy(augmented)
            parts.append(model_inputs(clip, frames, images, device))
            maps.append(labels)
        batch = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        labels = torch.cat(maps).to(device)
        annotated = torch.cat([torch.from_numpy(clip.mask_valid[clip.frame_valid]) for clip in clips]).to(device)
        categories = None
        if self.categories is not None:  # S4: the clip's category is the prototype target
            names = [str(clip.meta.get("category")) for clip in clips for _ in range(int(clip.frame_valid.sum()))]
            categories = torch.tensor([self.categories[name] for name in names], device=device)
        output = (forward or model)(**batch)
        return vct_losses(model, output, labels, annotated, categories, self.criterion)
