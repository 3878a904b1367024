"""Inference: trained S1 + S2 checkpoints -> speech (used by tts.py, s1_infer.py, s2_infer.py).

- ``loading``: checkpoints -> ready models (stage/symbol checks, S1/S2 compatibility).
- ``reference``: the reference wav -> usable window, prompt tokens, style spectrogram.
- ``text_input``: text -> sentence pieces with phoneme ids.
- ``engine``: ``TTSEngine`` — batched S1 generation of the pieces into a ``TokensFile``.
- ``decoder``: S2 decoding of pieces (batched), joining, resynthesis.
- ``tokens_file``: the ``.npz`` hand-off between s1_infer.py and s2_infer.py.
- ``cli``: argument groups and error handling shared by the three scripts.
"""
