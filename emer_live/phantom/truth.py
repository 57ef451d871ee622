"""``truth.tsv``: what the phantom really felt, showed and did (synthetic sessions only).

One header row, then one row per event, in the order the events became final (sort by
``t_start_us`` when order matters). Columns (:data:`TRUTH_COLUMNS`); empty cells are "not
applicable":

=====================  ==============================================================================
kind                   ``trial`` (a stimulus trial), ``segment`` (a free-running segment between
                       trials), ``blink`` (both pupils lost), ``loss`` (tracking loss, see ``eye``),
                       ``fixation`` (an intended fixation; saccades are the gaps between them)
trial                  trial number, or -1 outside trials
segment                running number of the trial/segment the event began in (0, 1, ...)
t_start_us, t_end_us   session clock, microseconds; ``t_end_us`` exclusive
true_emotion           felt emotion (one of EMOTIONS7)                      [trial, segment]
displayed_expression   expression on the face                                [trial, segment]
masked                 1 when the face masks the felt emotion, else 0         [trial, segment]
valence, arousal       felt valence/arousal in [-1, 1]                        [trial, segment]
intensity              peak displayed-expression intensity 0..1 (x3 = FER scale 0..3)
category               the stimulus category given to ``begin_trial``         [trial]
stimulus_id            the stimulus id given to ``begin_trial``               [trial]
eye                    ``left`` | ``right`` | ``both``                        [loss]
x, y                   mean fixation target, display coordinates (ADCS 0..1)  [fixation]
=====================  ==============================================================================

The file is written append-only and flushed at least once a second while devices run; it is
never read by the recognizer (evaluation code reads it with :func:`read_truth` or pandas).
"""

from __future__ import annotations

import csv
import os
import time
from typing import Dict, List, Optional

from ..errors import SessionExistsError, SessionFormatError, EmerError

__all__ = ["TRUTH_COLUMNS", "TruthWriter", "read_truth"]

TRUTH_COLUMNS = (
    "kind", "trial", "segment", "t_start_us", "t_end_us", "true_emotion", "displayed_expression",
    "masked", "valence", "arousal", "intensity", "category", "stimulus_id", "eye", "x", "y",
)
_INT = {"trial", "segment", "t_start_us", "t_end_us", "masked"}
_FLOAT = {"valence", "arousal", "intensity", "x", "y"}


def _fmt(key: str, value) -> str:
    if value is None:
        return ""
    if key in _FLOAT:
        return f"{float(value):.4f}"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class TruthWriter:
    """Append rows to a new ``truth.tsv``; refuses to touch an existing file.

    Parameters
    ----------
    path : str or os.PathLike
        File to create. Its folder must exist.
    flush_interval_s : float
        :meth:`write` flushes when at least this long passed since the previous flush.
    """

    def __init__(self, path, *, flush_interval_s: float = 0.5) -> None:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise EmerError(f"truth file {path}: folder {folder} does not exist; create the session folder first")
        try:
            self._fh = open(path, "x", encoding="utf-8", newline="")
        except FileExistsError:
            raise SessionExistsError(
                f"truth file {path} already exists; the phantom never overwrites truth - use a new session folder"
            ) from None
        self.path = path
        self.flush_interval_s = float(flush_interval_s)
        self._fh.write("\t".join(TRUTH_COLUMNS) + "\n")
        self._fh.flush()
        self._last_flush = time.monotonic()
        self.rows_written = 0

    def write(self, rows: List[Dict], *, force_flush: bool = False) -> None:
        """Append ``rows`` (dicts keyed by :data:`TRUTH_COLUMNS`; missing keys are empty)."""
        if self._fh is None:
            raise EmerError(f"truth file {self.path} is closed")
        if rows:
            self._fh.write("".join("\t".join(_fmt(k, r.get(k)) for k in TRUTH_COLUMNS) + "\n" for r in rows))
            self.rows_written += len(rows)
        now = time.monotonic()
        if force_flush or now - self._last_flush >= self.flush_interval_s:
            self._fh.flush()
            self._last_flush = now

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None

    @property
    def closed(self) -> bool:
        return self._fh is None


def read_truth(path, *, kind: Optional[str] = None) -> List[Dict]:
    """Read a ``truth.tsv`` into a list of row dicts with typed values (empty cells -> None).

    Parameters
    ----------
    path : str or os.PathLike
    kind : str, optional
        Keep only rows of this kind (``trial``, ``segment``, ``blink``, ``loss``, ``fixation``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"truth file {path} does not exist")
    out: List[Dict] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(header) != TRUTH_COLUMNS:
            raise SessionFormatError(f"truth file {path}: unexpected header {header!r}")
        for line_no, cells in enumerate(reader, start=2):
            if len(cells) != len(TRUTH_COLUMNS):
                if len(cells) == 0:
                    continue
                raise SessionFormatError(f"truth file {path}, line {line_no}: {len(cells)} cells, expected "
                                         f"{len(TRUTH_COLUMNS)} (truncated by a crash?)")
            row = {}
            for key, cell in zip(TRUTH_COLUMNS, cells):
                if cell == "":
                    row[key] = None
                elif key in _INT:
                    row[key] = int(cell)
                elif key in _FLOAT:
                    row[key] = float(cell)
                else:
                    row[key] = cell
            if kind is None or row["kind"] == kind:
                out.append(row)
    return out
