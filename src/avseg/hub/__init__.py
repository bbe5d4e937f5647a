"""Pretrained models by name: the pretrained table, hub downloads with a conversion cache, and publishing.

:mod:`~avseg.hub.pretrained` lists the named pretrained models, :mod:`~avseg.hub.resolve` turns a name, a hub
repo id or a folder into a local model folder, :mod:`~avseg.hub.download` fetches hub files and
plain URLs (the VGGish weights), :mod:`~avseg.hub.push` uploads a model folder with its model card;
:mod:`~avseg.hub.locations`, below them all, says where the caches are.
"""

from avseg.hub.download import vggish_weights
from avseg.hub.locations import avseg_cache_dir
from avseg.hub.pretrained import PretrainedModel, format_models_table, pretrained_models
from avseg.hub.resolve import resolve_model

__all__ = ["PretrainedModel", "avseg_cache_dir", "format_models_table", "pretrained_models", "resolve_model", "vggish_weights"]
