"""Spectrogram panels and energy envelopes in one PNG (Pillow, which tensorboard already needs; no matplotlib).

    write_panels(path, [("recording", wav_a), ("resynthesis", wav_b)], sample_rate=32000, hop=640)

Every panel is the log-mel spectrogram of one waveform at the same time scale (one pixel
column per ``hop`` samples, low frequencies at the bottom), titled; a last panel draws the
dB energy envelopes (``common.learning.frame_energy_db``) of all of them over each other,
so syllables and pauses can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from common.fileio import atomic_write_bytes
from common.learning import frame_energy_db
from common.training import spectrogram_image
from modules.spectrogram import MelSpectrogram

COLOURS = ((230, 230, 230), (255, 170, 60), (90, 200, 255), (140, 255, 120), (255, 100, 200))
TITLE_H, ENVELOPE_H, MARGIN, MIN_WIDTH = 16, 120, 4, 560


def _mel(wav: np.ndarray, sample_rate: int, hop: int) -> np.ndarray:
    mel = MelSpectrogram(sample_rate, 4 * hop, hop, 4 * hop, 80)
    return mel(torch.from_numpy(np.asarray(wav, dtype=np.float32))[None])[0].numpy()  # [80, T]


def write_panels(path: str | Path, panels: Sequence[tuple[str, np.ndarray]], sample_rate: int, hop: int,
                 scale: int = 2) -> Path:
    """Write the panels (title, wav [N]) and the envelope panel to ``path`` (PNG, atomic); returns ``path``."""
    import io

    mels = [_mel(w, sample_rate, hop) for _, w in panels]
    width = max(max(m.shape[1] for m in mels) * scale + 2 * MARGIN, MIN_WIDTH)
    mel_h = mels[0].shape[0] * scale
    height = len(panels) * (TITLE_H + mel_h) + TITLE_H + ENVELOPE_H + MARGIN
    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    lo = min(float(m.min()) for m in mels)
    hi = max(float(m.max()) for m in mels)
    y = 0
    for i, ((title, _), m) in enumerate(zip(panels, mels)):
        draw.text((MARGIN, y + 2), title, fill=COLOURS[i % len(COLOURS)])
        y += TITLE_H
        pinned = np.concatenate([m, np.full((m.shape[0], 1), lo), np.full((m.shape[0], 1), hi)], axis=1)
        tile = Image.fromarray(spectrogram_image(pinned)[:, :-2]).resize((m.shape[1] * scale, mel_h), Image.NEAREST)
        img.paste(tile, (MARGIN, y))
        y += mel_h
    draw.text((MARGIN, y + 2), "frame energy (dB, 50 dB range), colours as the titles", fill=COLOURS[0])
    y += TITLE_H
    for i, (_, wav) in enumerate(panels):
        env = frame_energy_db(np.asarray(wav), hop)
        if len(env) < 2:
            continue
        top = env.max()
        points = [(MARGIN + t * scale, y + (top - e) / 50.0 * (ENVELOPE_H - 4)) for t, e in enumerate(env)]
        draw.line(points, fill=COLOURS[i % len(COLOURS)], width=1)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
