"""avseg: audio-visual segmentation toolkit."""

from avseg.errors import AvsegError, ConfigError, DatasetError, MediaError

__version__ = "0.1.0"


def load_model(path):
    """Load a saved model folder (``config.json`` + ``model.safetensors``) strictly."""
    from avseg.models.registry import load_model as load

    return load(path)


__all__ = ["AvsegError", "ConfigError", "DatasetError", "MediaError", "__version__", "load_model"]
