"""Zero-shot AVS with LAION CLAP and SAM 3 (model name ``zeroshot-sam3``).

No AVS training data is used, the field's central shortage. For each second
of audio and its frame:

1. **Gate.** A second whose level (:func:`avseg.silence.robust_level_db`) is
   at or below ``silence_gate_dbfs`` (-60 dBFS, the silence gate TeSO shares)
   is silent: nothing is prompted, the mask is empty, and neither CLAP nor
   SAM 3 runs. With the gate off (``silence_gate_dbfs: null``, or ``avseg
   evaluate --no-silence-gate``) every second is heard.
2. **Hear.** LAION CLAP (transformers ``ClapModel``, default
   ``laion/larger_clap_general``) embeds the second, resampled to the 48 kHz
   of its feature extractor, which repeat-pads short audio to CLAP's 10-s
   input. The embedding is scored against the vocabulary's texts
   ``"This is a sound of {sound}."`` (LAION-CLAP's zero-shot template) and
   turned into class probabilities with CLAP's own learned temperature,
   ``softmax(exp(logit_scale_a) * cosine)``: the calibration contrastive
   training gave it, not one fitted here.
3. **Choose.** Classes with probability at least ``min_probability`` (0.25: a
   class must take a quarter of the mass, so at most four ever can) become
   prompts, the ``max_prompts`` (3) most probable at most. A sound that
   matches nothing in the vocabulary well prompts nothing.
4. **Look.** SAM 3 (transformers ``Sam3Model``) is prompted with each chosen
   class's object name. The frame's vision features are computed once and
   shared by its prompts, which run as one batch. A query scores
   ``sigmoid(pred_logits) * sigmoid(presence_logits)``, as SAM 3's own
   post-processing does; the queries scoring above ``query_threshold`` (0.5)
   form the class's mask logits, their pixel-wise maximum (the union of the
   instances: sigmoid is monotone, so the max logit is the max probability).
5. **Combine.** The class maps are resized bilinearly from SAM 3's mask
   resolution to the label size. Binary logits are their maximum over the
   prompted classes: > 0 where some prompted class claims the pixel, and
   ``EMPTY_LOGIT`` (-100, certain background) where nothing was prompted or
   no query passed. For AVSS the output is per-class logits
   ``(T, 1 + V, H, W)``: background 0 and each prompted class its map, so the
   argmax is a class exactly where the binary logit is > 0 and the most
   confident class wins where masks overlap.

The thresholds are reasoned defaults, not tuned on AVSBench here; they are
settings (:class:`ZeroShotConfig`). SAM 3's preprocessing is reimplemented
without torchvision (:func:`sam3_pixel_values`).
"""

from avseg.models.zero_shot.clap_scorer import (
    SOUND_TEMPLATE,
    ClapScorer,
    tiny_clap_config,
    word_tokenizer,
)
from avseg.models.zero_shot.config import ZeroShotConfig, zero_shot_config
from avseg.models.zero_shot.sam3_prompter import (
    EMPTY_LOGIT,
    SAM3_IMAGE_SIZE,
    Sam3Prompter,
    sam3_pixel_values,
    tiny_sam3_config,
)
from avseg.models.zero_shot.segmenter import Heard, ZeroShotSegmenter
from avseg.models.zero_shot.system import (  # _load_model: AV2T-SAM's SAM 3 too
    MODEL_NAME,
    ZeroShotSystem,
    _load_model,
)
from avseg.models.zero_shot.vocabulary import (
    AVSS_CLASSES,
    AVSS_TEXT,
    S4_VOCABULARY,
    VOCABULARIES,
    Category,
    load_vocabulary,
)

__all__ = [
    "AVSS_CLASSES",
    "AVSS_TEXT",
    "EMPTY_LOGIT",
    "MODEL_NAME",
    "S4_VOCABULARY",
    "SAM3_IMAGE_SIZE",
    "SOUND_TEMPLATE",
    "VOCABULARIES",
    "Category",
    "ClapScorer",
    "Heard",
    "Sam3Prompter",
    "ZeroShotConfig",
    "ZeroShotSegmenter",
    "ZeroShotSystem",
    "load_vocabulary",
    "sam3_pixel_values",
    "tiny_clap_config",
    "tiny_sam3_config",
    "word_tokenizer",
    "zero_shot_config",
]
