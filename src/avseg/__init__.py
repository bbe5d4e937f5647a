"""avseg: audio-visual segmentation toolkit."""

from avseg.errors import AvsegError, ConfigError, DatasetError, MediaError

__version__ = "0.1.0"


def load_model(path):
    """Load a model strictly: a saved folder (``config.json`` + ``model.safetensors``), a name of
    :func:`available_models` or a hub repo id (``org/name[@revision]``), downloaded and converted on first use."""
    from avseg.models.registry import load_model as load

    return load(path)


def available_models() -> list[dict]:
    """Every model avseg knows, as data (name, method, description, trainable, by_name, presets, converter);
    ``avseg models`` prints it."""
    from avseg.models.architectures import available_models as listed

    return listed()


__all__ = ["AvsegError", "ConfigError", "DatasetError", "MediaError", "__version__", "available_models", "load_model"]
