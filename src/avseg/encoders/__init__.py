"""Frozen pretrained encoders (audio, text, vision) that the segmentation models build on."""
