"""Self-Assessment Manikin (SAM) answers, the ER labels derived from them, and ``sam.tsv``.

After each stimulus the participant rates valence, arousal and dominance on the 9-point SAM
scales (1 = unpleasant / calm / controlled ... 9 = pleasant / excited / in control) and picks the
emotion they felt from the 7 categories; an optional free-text note may be added. Those raw answers
and the derived ER labels (DESIGN sec. 10) go into one ``sam.tsv`` row per trial.

``sam.tsv`` (tab-separated, UTF-8, ``\\n`` line ends, header row, no quoting) has the columns in
:data:`SAM_COLUMNS`. The ``note`` column is escaped so a row is always one line: backslash ->
``\\\\``, tab -> ``\\t``, newline -> ``\\n``, carriage return -> ``\\r``, double quote -> ``\\"``
(so that no field ever starts with a quote character and pandas/R read the file with default
settings), other control characters -> ``\\xHH``; :func:`read_sam` undoes it.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
import threading
import warnings
from pathlib import Path
from typing import IO, List, Optional, Union

from ..errors import ConfigError, SessionExistsError, SessionFormatError
from ..labels import ER7_CLASSES, sam_to_unit, to_er3, validate_category
from .ids import warn_if_identifying

__all__ = ["SamAnswer", "SamRow", "SamTable", "SAM_COLUMNS", "read_sam", "escape_note",
           "unescape_note", "MAX_NOTE_LENGTH"]

#: Column order of ``sam.tsv``; later tools (training, export) read these names.
SAM_COLUMNS = (
    "trial", "stimulus_id", "category",
    "sam_valence", "sam_arousal", "sam_dominance", "sam_emotion",
    "er7", "er3", "er_valence", "er_arousal",
    "answered_t_us", "note",
)

MAX_NOTE_LENGTH = 2000

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", '"': '\\"'}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"'}


def escape_note(text: str) -> str:
    """Escape free text for one TSV field (see the module docstring); other control characters
    become ``\\xHH``."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape_note(field: str) -> str:
    """Inverse of :func:`escape_note` (an unknown escape is kept literally)."""
    out = []
    i = 0
    while i < len(field):
        ch = field[i]
        nxt = field[i + 1] if i + 1 < len(field) else ""
        if ch == "\\" and nxt in _UNESCAPES:
            out.append(_UNESCAPES[nxt])
            i += 2
        elif ch == "\\" and nxt == "x" and re.fullmatch(r"[0-9a-f]{2}", field[i + 2:i + 4]):
            out.append(chr(int(field[i + 2:i + 4], 16)))
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _check_rating(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= 9:
        raise ConfigError(f"SAM {name} must be a whole number from 1 to 9, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SamAnswer:
    """One participant's SAM answer for one trial.

    Parameters
    ----------
    valence, arousal, dominance : int
        9-point SAM ratings, 1..9 (5 = middle).
    emotion : str
        The felt emotion, one of :data:`~emer_live.session.labels.ER7_CLASSES`.
    note : str
        Optional free text (at most :data:`MAX_NOTE_LENGTH` characters). Never put names or other
        identifying details here.
    """

    valence: int
    arousal: int
    dominance: int
    emotion: str
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("valence", "arousal", "dominance"):
            value = getattr(self, name)
            _check_rating(name, value)
            object.__setattr__(self, name, int(value))  # numpy ints -> int
        validate_category(self.emotion, what="SAM emotion")
        if not isinstance(self.note, str):
            raise ConfigError(f"SAM note must be text, got {type(self.note).__name__}")
        if len(self.note) > MAX_NOTE_LENGTH:
            raise ConfigError(
                f"SAM note has {len(self.note)} characters; keep it under {MAX_NOTE_LENGTH}"
            )
        if self.note and not getattr(_reading, "on", False):  # warn at entry, not at every read
            warn_if_identifying(self.note, "SAM note")

    @property
    def er7(self) -> str:
        """ER 7-class label: the emotion the participant chose."""
        return self.emotion

    @property
    def er7_index(self) -> int:
        """Index of :attr:`er7` in :data:`ER7_CLASSES`."""
        return ER7_CLASSES.index(self.emotion)

    @property
    def er3(self) -> str:
        """ER 3-class label (positive / negative / neutral)."""
        return to_er3(self.emotion)

    @property
    def er_valence(self) -> float:
        """SAM valence mapped to [-1, 1]: ``(x - 5) / 4``."""
        return sam_to_unit(self.valence)

    @property
    def er_arousal(self) -> float:
        """SAM arousal mapped to [-1, 1]: ``(x - 5) / 4``."""
        return sam_to_unit(self.arousal)


@dataclasses.dataclass(frozen=True)
class SamRow:
    """One row of ``sam.tsv``: the trial, its stimulus and the participant's answer."""

    trial: int
    stimulus_id: str
    category: str
    answer: SamAnswer
    answered_t_us: int

    def __post_init__(self) -> None:
        if isinstance(self.trial, bool) or not isinstance(self.trial, numbers.Integral) \
                or self.trial < 1:
            raise ConfigError(f"trial numbers start at 1, got {self.trial!r}")
        if not isinstance(self.stimulus_id, str) or not self.stimulus_id \
                or any(c in self.stimulus_id for c in "\t\r\n"):
            raise ConfigError(f"stimulus_id must be non-empty text without tabs or newlines, "
                              f"got {self.stimulus_id!r}")
        validate_category(self.category, what="stimulus category")
        if not isinstance(self.answer, SamAnswer):
            raise ConfigError(f"answer must be a SamAnswer, got {type(self.answer).__name__}")
        if isinstance(self.answered_t_us, bool) \
                or not isinstance(self.answered_t_us, numbers.Integral):
            raise ConfigError(f"answered_t_us must be integer microseconds on the session "
                              f"clock, got {self.answered_t_us!r}")
        object.__setattr__(self, "trial", int(self.trial))
        object.__setattr__(self, "answered_t_us", int(self.answered_t_us))

    def to_fields(self) -> List[str]:
        """The row as TSV fields in :data:`SAM_COLUMNS` order."""
        a = self.answer
        return [
            str(self.trial), self.stimulus_id, self.category,
            str(a.valence), str(a.arousal), str(a.dominance), a.emotion,
            a.er7, a.er3, repr(a.er_valence), repr(a.er_arousal),
            str(self.answered_t_us), escape_note(a.note),
        ]


class SamTable:
    """Append-only writer of ``sam.tsv``.

    Parameters
    ----------
    path : str or Path
        The file to create. An existing file is never overwritten: without ``resume`` it is
        refused (:class:`SessionExistsError`).
    resume : bool
        Append to an existing ``sam.tsv`` (e.g. continuing a session after a crash): its header
        must match :data:`SAM_COLUMNS`; a file ending in an incomplete row (a crash mid-write)
        is refused rather than altered.
    fsync : bool
        ``os.fsync`` after each row as well as flushing (a row per trial is cheap).

    Examples
    --------
    >>> with SamTable(folder / "sam.tsv") as table:               # doctest: +SKIP
    ...     table.append(trial=1, stimulus_id="hap_01", category="happiness",
    ...                  answer=SamAnswer(7, 6, 5, "happiness"), answered_t_us=61_250_000)
    """

    def __init__(self, path: Union[str, Path], *, resume: bool = False, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self.rows_written = 0
        self._fh: Optional[IO[str]] = None
        if resume and self.path.exists():
            self._fh = self._open_resume()
        else:
            try:
                self._fh = open(self.path, "x", encoding="utf-8", newline="")
            except FileExistsError:
                raise SessionExistsError(
                    f"{self.path} already exists; sam.tsv is append-only and never overwritten: "
                    f"start a new session folder (or resume this one)"
                ) from None
            except FileNotFoundError:
                raise SessionFormatError(
                    f"cannot create {self.path}: folder {self.path.parent} does not exist"
                ) from None
            self._write_line(list(SAM_COLUMNS))

    def _open_resume(self) -> IO[str]:
        with open(self.path, "r", encoding="utf-8", newline="") as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
        if tuple(header) != SAM_COLUMNS:
            raise SessionFormatError(
                f"{self.path}: header {header} does not match sam.tsv columns "
                f"{list(SAM_COLUMNS)}; refusing to append to a foreign file"
            )
        with open(self.path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 1, 0))
            last = fh.read(1)
        if size and last != b"\n":
            raise SessionFormatError(
                f"{self.path} ends with an incomplete row (the writer was interrupted); "
                f"repair the session before resuming it"
            )
        self.rows_written = len(read_sam(self.path))
        return open(self.path, "a", encoding="utf-8", newline="")

    def _write_line(self, fields: List[str]) -> None:
        assert self._fh is not None
        self._fh.write("\t".join(fields) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def append(self, *, trial: int, stimulus_id: str, category: str, answer: SamAnswer,
               answered_t_us: int) -> SamRow:
        """Validate and append one row; flushed (and fsynced) before returning.

        Returns
        -------
        SamRow
            The row as written.
        """
        if self._fh is None:
            raise ValueError(f"{self.path}: SamTable is closed")
        row = SamRow(trial=trial, stimulus_id=stimulus_id, category=category, answer=answer,
                     answered_t_us=answered_t_us)
        self._write_line(row.to_fields())
        self.rows_written += 1
        return row

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def closed(self) -> bool:
        return self._fh is None

    def __enter__(self) -> "SamTable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_reading = threading.local()


def _parse_row(fields: List[str], col: dict, where: str) -> SamRow:
    _reading.on = True
    try:
        return _parse_row_inner(fields, col, where)
    finally:
        _reading.on = False


def _parse_row_inner(fields: List[str], col: dict, where: str) -> SamRow:
    def get(name: str) -> str:
        return fields[col[name]]

    def as_int(name: str) -> int:
        try:
            return int(get(name))
        except ValueError:
            raise SessionFormatError(f"{where}: column {name} is not a whole number: "
                                     f"{get(name)!r}") from None

    note = unescape_note(get("note")) if "note" in col else ""
    try:
        answer = SamAnswer(valence=as_int("sam_valence"), arousal=as_int("sam_arousal"),
                           dominance=as_int("sam_dominance"), emotion=get("sam_emotion"),
                           note=note)
        row = SamRow(trial=as_int("trial"), stimulus_id=get("stimulus_id"),
                     category=get("category"), answer=answer,
                     answered_t_us=as_int("answered_t_us"))
    except ConfigError as exc:
        raise SessionFormatError(f"{where}: {exc}") from None
    # The derived labels are recomputed from the raw answers; a stored value that disagrees
    # means the file was edited by hand or written by a buggy tool.
    for name, expected in (("er7", answer.er7), ("er3", answer.er3)):
        if name in col and get(name) != expected:
            raise SessionFormatError(f"{where}: {name}={get(name)!r} does not follow from the "
                                     f"SAM answer (expected {expected!r})")
    for name, expected_f in (("er_valence", answer.er_valence), ("er_arousal", answer.er_arousal)):
        if name in col:
            try:
                ok = abs(float(get(name)) - expected_f) < 1e-9
            except ValueError:
                ok = False
            if not ok:
                raise SessionFormatError(f"{where}: {name}={get(name)!r} does not follow from "
                                         f"the SAM answer (expected {expected_f!r})")
    return row


def read_sam(path: Union[str, Path], *, as_dataframe: bool = False):
    """Read ``sam.tsv``.

    Parameters
    ----------
    path : str or Path
        The file (or a session folder containing ``sam.tsv``).
    as_dataframe : bool
        Return a :class:`pandas.DataFrame` with the :data:`SAM_COLUMNS` columns (notes
        unescaped) instead of a list of :class:`SamRow`.

    Returns
    -------
    list of SamRow or pandas.DataFrame

    Notes
    -----
    Extra columns (from a later format version) are ignored; the ``note`` column is optional.
    A last line without a line break (the writer was killed mid-row) is skipped with a warning
    when it cannot be parsed.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "sam.tsv"
    if not p.is_file():
        raise SessionFormatError(f"{p}: no such file (expected sam.tsv of a session)")
    text = p.read_text(encoding="utf-8")
    lines = text.split("\n")
    incomplete = lines[-1] != ""
    if not incomplete:
        lines = lines[:-1]
    if not lines:
        raise SessionFormatError(f"{p}: empty file, expected a header row {list(SAM_COLUMNS)}")
    header = lines[0].rstrip("\r").split("\t")
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in SAM_COLUMNS if c != "note" and c not in col]
    if missing:
        raise SessionFormatError(f"{p}: missing columns {missing}; is this a sam.tsv?")
    rows: List[SamRow] = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        last = lineno == len(lines)
        if not line:
            continue
        fields = line.split("\t")
        where = f"{p} line {lineno}"
        if len(fields) != len(header):
            if last and incomplete:
                warnings.warn(f"{where}: incomplete last row (writer interrupted?) skipped",
                              stacklevel=2)
                break
            raise SessionFormatError(f"{where}: {len(fields)} fields, header has {len(header)}")
        try:
            rows.append(_parse_row(fields, col, where))
        except SessionFormatError:
            if last and incomplete:
                warnings.warn(f"{where}: incomplete last row (writer interrupted?) skipped",
                              stacklevel=2)
                break
            raise
    if not as_dataframe:
        return rows
    import pandas as pd

    records = []
    for r in rows:
        a = r.answer
        records.append({
            "trial": r.trial, "stimulus_id": r.stimulus_id, "category": r.category,
            "sam_valence": a.valence, "sam_arousal": a.arousal, "sam_dominance": a.dominance,
            "sam_emotion": a.emotion, "er7": a.er7, "er3": a.er3, "er_valence": a.er_valence,
            "er_arousal": a.er_arousal, "answered_t_us": r.answered_t_us, "note": a.note,
        })
    return pd.DataFrame.from_records(records, columns=list(SAM_COLUMNS))
