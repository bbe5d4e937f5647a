"""TeSO (ECCV 2024): text cues, SeDAM and PMQS over a frozen, adapted Mask2Former."""

from avseg.models.teso.model import TeSO, TeSOConfig, TeSOOutput

__all__ = ["TeSO", "TeSOConfig", "TeSOOutput"]
