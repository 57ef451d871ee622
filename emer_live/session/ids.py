"""Participant IDs: pseudonyms only (DESIGN sec. 13).

A participant ID becomes a folder name (``recordings/<participant>/...``) and is written into
``session.json``; it must never be a person's name. The rule is deliberately strict so that IDs are
also safe as file names on Windows, macOS and Linux and cannot escape the recordings folder.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Optional, Union

from ..errors import ConfigError

__all__ = ["PARTICIPANT_ID_RULE", "MAX_PARTICIPANT_ID_LENGTH", "validate_participant_id",
           "is_valid_participant_id", "session_stamp", "claim_session_dir"]

MAX_PARTICIPANT_ID_LENGTH = 32

#: The rule, as stated in every refusal.
PARTICIPANT_ID_RULE = (
    "participant IDs are pseudonyms like P01, never names: 1-32 ASCII letters, digits, '-' or "
    "'_', starting with a letter or digit (no spaces, dots, path separators or accented letters)"
)

_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", re.ASCII)
# Device names Windows refuses as file or folder names, whatever the case.
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} \
    | {f"LPT{i}" for i in range(1, 10)}


def _reason(pid: str) -> str:
    if pid == "":
        return "it is empty"
    if len(pid) > MAX_PARTICIPANT_ID_LENGTH:
        return f"it has {len(pid)} characters"
    for ch in pid:
        if ch.isspace():
            return "it contains whitespace"
        if ch in "/\\":
            return f"it contains the path separator {ch!r}"
        if ord(ch) > 127:
            return f"it contains the non-ASCII character {ch!r}"
        if not (ch.isalnum() or ch in "-_"):
            return f"it contains {ch!r}"
    if not pid[0].isalnum():
        return f"it starts with {pid[0]!r}"
    if pid.upper() in _WINDOWS_RESERVED:
        return f"{pid!r} is a reserved device name on Windows"
    return "it does not match the rule"  # pragma: no cover - every failing case is named above


def validate_participant_id(pid: object) -> str:
    """Return ``pid`` if it is a valid participant pseudonym, else raise :class:`ConfigError`.

    Parameters
    ----------
    pid : str
        The candidate ID, e.g. ``"P01"``.

    Returns
    -------
    str
        ``pid`` unchanged (no silent stripping or case folding).

    Raises
    ------
    ConfigError
        With :data:`PARTICIPANT_ID_RULE` and the specific reason.

    Notes
    -----
    Valid: 1-32 characters from ``A-Z a-z 0-9 - _``, the first a letter or digit, and not a
    Windows device name (``CON``, ``NUL``, ``COM1``, ...).
    """
    if not isinstance(pid, str):
        raise ConfigError(f"{PARTICIPANT_ID_RULE}; got {pid!r} (not a string)")
    if _VALID.fullmatch(pid) and pid.upper() not in _WINDOWS_RESERVED:
        return pid
    raise ConfigError(f"{PARTICIPANT_ID_RULE}; got {pid!r}: {_reason(pid)}")


def is_valid_participant_id(pid: object) -> bool:
    """``True`` when :func:`validate_participant_id` would accept ``pid``."""
    try:
        validate_participant_id(pid)
    except ConfigError:
        return False
    return True


def session_stamp(now: Optional[_dt.datetime] = None) -> str:
    """The session id's time part: ``S<UTC date>-<UTC time>`` to the second."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("S%Y%m%d-%H%M%S")


def claim_session_dir(root: Union[str, Path], participant: str, *, now: Optional[_dt.datetime] = None,
                      max_tries: int = 1000) -> Path:
    """Create and return a new, empty ``ROOT/<participant>/S<date>-<time>[-k]`` folder.

    The folder is *created* here (``mkdir`` without ``exist_ok``, atomic on every file system):
    two sessions that start in the same second - two processes, or two threads - get different
    ids (``-2``, ``-3``, ...), where choosing a name that does not exist yet and creating it later
    gave both the same name and refused the second."""
    validate_participant_id(participant)
    base = Path(root) / participant
    base.mkdir(parents=True, exist_ok=True)
    stamp = session_stamp(now)
    for k in range(1, max_tries + 1):
        p = base / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            p.mkdir()
        except FileExistsError:
            continue
        return p
    raise ConfigError(f"{base}: {max_tries} sessions already started at {stamp}; wait a second and start again")
