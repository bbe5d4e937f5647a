"""avseg: audio-visual segmentation toolkit."""

from avseg.errors import AvsegError, ConfigError, DatasetError, MediaError

__version__ = "0.1.0"

__all__ = ["AvsegError", "ConfigError", "DatasetError", "MediaError", "__version__"]
