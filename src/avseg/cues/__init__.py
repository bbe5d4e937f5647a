"""TeSO's text cues: what in each frame could be making a sound, named in words.

A captioner describes the frame (:mod:`~avseg.cues.captioner`), a frozen LLM
reasons about which of the things described could sound and lists at most four
(:mod:`~avseg.cues.llm`, with the instruction and the answer parser in
:mod:`~avseg.cues.prompt`), and :mod:`~avseg.cues.pipeline` does this for a
whole dataset, caching the answers per frame. The semantic encoder that turns
the cues into vectors is :mod:`avseg.encoders.text`.
"""

from avseg.cues.pipeline import generate_cues, load_cues, oracle_cues, write_oracle_cues

__all__ = ["generate_cues", "load_cues", "oracle_cues", "write_oracle_cues"]
