"""A growable structured-array table (append one row at a time, view the filled part)."""

from __future__ import annotations

import numpy as np


class Table:
    def __init__(self, dtype, capacity: int = 256) -> None:
        self.dtype = np.dtype(dtype)
        self._data = np.zeros(capacity, self.dtype)
        self.n = 0

    def append(self, *values) -> None:
        if self.n == len(self._data):
            grown = np.zeros(2 * len(self._data), self.dtype)
            grown[: self.n] = self._data
            self._data = grown
        self._data[self.n] = values
        self.n += 1

    @property
    def rows(self) -> np.ndarray:
        """View of the filled rows (valid until the next append grows the table)."""
        return self._data[: self.n]

    def truncate_from(self, t0: int) -> None:
        """Drop the rows whose ``t0`` column is >= ``t0`` (rows are ordered by ``t0``)."""
        self.n = int(np.searchsorted(self._data["t0"][: self.n], t0, side="left"))

    def last(self):
        return self._data[self.n - 1] if self.n else None

    def __len__(self) -> int:
        return self.n


# Oculomotor events (fixations and saccades, back to back). Positions are display-plane mm from
# the display's top-left corner (u to the right, v down), like ADCS but in millimetres.
FIXATION, SACCADE = 0, 1
OCULAR_DTYPE = np.dtype([("t0", np.int64), ("t1", np.int64), ("kind", np.int8), ("u0", np.float64),
                         ("v0", np.float64), ("u1", np.float64), ("v1", np.float64), ("seg", np.int32)])
# Blinks (both pupils lost) and tracking-loss episodes; neither overlaps its own kind.
BLINK_DTYPE = np.dtype([("t0", np.int64), ("t1", np.int64), ("seg", np.int32)])
LOSS_LEFT, LOSS_RIGHT, LOSS_BOTH = 0, 1, 2
LOSS_DTYPE = np.dtype([("t0", np.int64), ("t1", np.int64), ("eye", np.int8), ("seg", np.int32)])
