"""List-time checks (gen_filelist_s2.py, gen_filelist_s1.py): the one place where the list stages open
every file a training list will make a trainer open, headers only, so a missing or unreadable file is
a reported skip before training rather than a failure after it has started.

- wavs: ``soundfile.info`` (no decoding): missing, unreadable, or not mono at the expected rate;
- feature files (``dump/ssl/<id>.pt``, ``dump/bert/<id>.pt``): ``torch.load`` memory-mapped
  (``weights_only``), so only the header and tensor metadata are read: missing, unreadable, not an
  fp16 ``[D, T]`` tensor, or of another shape than the list needs.

Reasons read ``category: detail`` and name the file. ``write_pair`` writes the training and
validation lists of one run so that a kill never leaves one beside the other of an earlier run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from common.audio import AudioError, audio_info
from common.tensor_file import TensorFileError, load_fp16

_ZIP_MAGIC = b"PK\x03\x04"


def wav_check(path: Path, sample_rate: int) -> tuple[int, str | None]:
    """(frames, None) for a usable mono ``sample_rate`` wav, else (0, reason)."""
    try:
        info = audio_info(path)
    except AudioError as err:
        missing = err.reason == "file not found" or err.reason.startswith(("broken symlink", "symlink loop"))
        return 0, f"{'missing' if missing else 'unreadable'} wav: {err}"
    if info.sample_rate != sample_rate or info.channels != 1:
        return 0, (f"wrong wav format: {path} is {info.channels}-channel {info.sample_rate} Hz, expected mono "
                   f"{sample_rate} Hz (rerun resample.py --overwrite)")
    return info.frames, None


def features_shape(path: Path) -> tuple[tuple[int, ...] | None, str]:
    """(shape, '') of an fp16 ``[D, T]`` feature file read through its header, else (None, why)."""
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:  # torch.save writes a zip archive; mmap loading needs one
                return None, f"{path}: not a PyTorch tensor file (no zip header: truncated or another kind of file)"
    try:
        return tuple(load_fp16(path, mmap=True).shape), ""
    except TensorFileError as err:
        return None, str(err)


def write_pair(val_path: Path, write_train: Callable[[], None], write_val: Callable[[], None]) -> None:
    """Write a training list and its validation list as one output.

    The validation list is removed first and written last, so a run killed on the way leaves at worst
    a training list without a validation list (the trainers refuse that with a clear message, and
    rerunning the stage writes both), never a training list of this run beside a validation list of
    an earlier one (a changed seed would then put items in both).
    """
    val_path.unlink(missing_ok=True)
    write_train()
    write_val()
