"""AV2T-SAM: audio-visual segmentation with audio-derived pseudo text tokens in EVF-SAM2."""
