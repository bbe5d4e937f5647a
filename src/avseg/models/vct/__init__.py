"""VCT: the Vision-Centric Transformer for audio-visual segmentation (Huang et al., CVPR 2025), on transformers' Swin
and Mask2Former blocks; loads the release's checkpoints (``avseg convert vct``)."""
