"""The speaker table: speaker names <-> the rows of a model's speaker embedding.

Built from the manifest (``dump/manifest.tsv``: every speaker name, sorted, row ``i`` = the
``i``-th name) when a model has ``model.n_speakers > 0``, saved in every checkpoint as
``extra["speakers"]`` (a list of names) and read back at inference, where ``tts.py --speaker
NAME`` picks a row::

    table = SpeakerTable.from_manifest("dump/manifest.tsv")
    table.index("spk1")          # -> 1; an unknown name is a SpeakerError listing the known ones
    table.to_list()              # -> ["spk0", "spk1"], stored in the checkpoint
    SpeakerTable.from_checkpoint(ckpt.extra, ckpt.path)   # None for a model without speakers
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.manifest import read_manifest

EXTRA_KEY = "speakers"


class SpeakerError(ValueError):
    """An unknown speaker name, or a table that does not fit the model; the message says which."""


@dataclass(frozen=True)
class SpeakerTable:
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise SpeakerError(f"speaker table has duplicate names: {list(self.names)}")

    @classmethod
    def from_manifest(cls, path: str | Path) -> SpeakerTable:
        """Every speaker of the manifest, sorted by name."""
        return cls(tuple(sorted({u.speaker for u in read_manifest(path)})))

    @classmethod
    def from_checkpoint(cls, extra: dict, source: str | Path) -> SpeakerTable | None:
        """The table saved in a checkpoint's ``extra`` (None when it has none)."""
        names = extra.get(EXTRA_KEY)
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SpeakerError(f"{source}: extra['{EXTRA_KEY}'] must be a list of speaker names")
        return cls(tuple(names))

    def to_list(self) -> list[str]:
        return list(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The embedding row of ``name``; ``SpeakerError`` naming the known speakers if there is none."""
        try:
            return self.names.index(name)
        except ValueError:
            raise SpeakerError(f"unknown speaker {name!r}; known speakers: {', '.join(self.names)}") from None

    def check_fits(self, n_speakers: int, source: str | Path) -> None:
        """The model's ``n_speakers`` embedding rows must cover the table."""
        if len(self.names) > n_speakers:
            raise SpeakerError(f"{source}: {len(self.names)} speakers ({', '.join(self.names[:5])}"
                               f"{', ...' if len(self.names) > 5 else ''}) but model.n_speakers is {n_speakers}; "
                               f"set model.n_speakers to at least {len(self.names)}")


def run_speaker_table(n_speakers: int, manifest: str | Path, source: str | Path) -> SpeakerTable | None:
    """A training run's table: every speaker of ``manifest`` when the model has ``n_speakers > 0`` (else None);
    ``SpeakerError`` when the model's rows cannot hold them (``source``: the config, for the message)."""
    if n_speakers == 0:
        return None
    table = SpeakerTable.from_manifest(manifest)
    table.check_fits(n_speakers, source)
    return table


def init_state(state: dict, extra: dict, table: SpeakerTable | None, source: str | Path,
               key: str = "speaker_embedding.weight") -> tuple[dict, str | None]:
    """Weights of an ``--init`` checkpoint for a run with ``table``: its speaker embedding is left out when it
    has none or was trained with another table (the run's embedding then starts fresh). Returns the state
    and the one line to log about it (None when nothing was left out)."""
    if table is None:
        return state, None
    if key in state and SpeakerTable.from_checkpoint(extra, source) == table:
        return state, None
    state = {k: v for k, v in state.items() if k != key}
    return state, (f"{source} has no speaker embedding for this run's {len(table)} speakers "
                   f"({', '.join(table.names[:5])}): the speaker embedding starts fresh")


def check_resume(extra: dict, table: SpeakerTable | None, source: str | Path, manifest: str | Path) -> None:
    """``--resume`` needs the same table as the saved run (a ``SpeakerError`` otherwise)."""
    if SpeakerTable.from_checkpoint(extra, source) != table:
        raise SpeakerError(f"{source}: saved with another speaker table than {manifest} gives now; resume on "
                           "the same dump or start a new run with --init")


def extra_of(table: SpeakerTable | None) -> dict:
    """What a checkpoint's ``extra`` holds about speakers (nothing for a model without them)."""
    return {} if table is None else {EXTRA_KEY: table.to_list()}


def speaker_row(table: SpeakerTable | None, name: str | None, source: str | Path) -> int | None:
    """The row of ``name`` in a model's table for inference: None for a model without speakers; a
    ``SpeakerError`` for an unknown name, or for a model with speakers when no name is given."""
    if table is None:
        return None
    if name is None:
        raise SpeakerError(f"{source} was trained with speakers; pass --speaker NAME (known speakers: "
                           f"{', '.join(table.names)})")
    try:
        return table.index(name)
    except SpeakerError as err:
        raise SpeakerError(f"{source}: {err}") from None
