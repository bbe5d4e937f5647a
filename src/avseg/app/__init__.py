"""``avseg app``: a local web page to segment a video, look at the result and run the preference test.

* :mod:`avseg.engine.session` (shared with ``avseg segment``): segment one video with one model under one audio
  condition (original, muted, swapped), through the same library calls as
  ``avseg segment``; the agreement of two results.
* :mod:`avseg.app.inputs`: the checks on an upload and the synthetic example
  videos (the audio-replaced copy of a video is :func:`avseg.media.audio_condition_copy`).
* :mod:`avseg.app.server`: the Gradio page (needs ``pip install 'avseg[app]'``).
"""
