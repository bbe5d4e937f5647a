"""Semantic-SAM (Li et al., "Semantic-SAM: Segment and Recognize Anything at Any Granularity", 2023), the inference path
its automatic mask generator uses, on transformers' Swin and Deformable-DETR blocks; VCT's mask-image generator.
Loads the release's checkpoints (``avseg convert semantic-sam``)."""
