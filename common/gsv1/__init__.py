"""GPT-SoVITS v1 files (``s2G488k.pth``, ``s2D488k.pth``, the 24-layer S1 ``.ckpt``, exports).

- ``keys``: state-dict renames between v1 names and ours, both ways, checked exactly;
- ``configs``: our S1/S2 configs derived from a v1 file (its config and its weight shapes),
  and the v1 config dicts written for our models;
- ``files``: what a loaded file is (by content), v1 file -> our ``Checkpoint`` and back.

Reading goes through ``common.safe_load`` (weights only, never pickled code).
"""
