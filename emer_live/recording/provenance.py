"""Where a session's data came from: a re-recording of another session keeps its participant.

``record --tracker replay:SRC ...`` (and any run whose devices replay a session) writes a copy
of SRC's gaze, video and audio. The copy is the same person's data, so its ``session.json``
carries SRC's ``participant`` - not ``record``'s default ``P00`` - and a ``derived_from`` link::

    "derived_from": {"session_id": "S20261201-100000", "path": "/abs/path/to/SRC",
                     "participant": "P07", "created_utc": "2026-12-01T10:00:00+00:00"}

``emer-live forget`` follows these links (and, for copies made before them, the replay devices'
``replay_of`` path), so deleting a participant deletes their copies too (docs/data-rights.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from . import format as fmt

__all__ = ["source_participant", "derived_meta"]


def _named(value) -> Optional[str]:
    """The participant a session.json field names: a non-empty string, else None (a list, a
    number or nothing is not a pseudonym; ``forget`` reports such sessions)."""
    return value if isinstance(value, str) and value.strip() == value and value else None


def source_participant(session_dir) -> Optional[str]:
    """The participant a session folder's session.json names (None when unreadable or not a string)."""
    try:
        meta = json.loads((Path(session_dir) / fmt.SESSION_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return _named(meta.get("participant")) if isinstance(meta, dict) else None


def derived_meta(source_dir, source_meta: dict) -> dict:
    """session.json fields for a recording made by replaying ``source_dir``: ``derived_from``
    and, when the source names a valid one, its ``participant``."""
    src = Path(source_dir).resolve()
    who = _named(source_meta.get("participant"))
    out = {"derived_from": {"session_id": source_meta.get("session_id"), "path": str(src), "participant": who,
                            "created_utc": source_meta.get("created_utc")}}
    if who is not None:
        out["participant"] = who
    return out
