"""Participant IDs: pseudonyms only (DESIGN sec. 13).

A participant ID becomes a folder name (``recordings/<participant>/...``) and is written into
``session.json``; it must never be a person's name. The rule is deliberately strict so that IDs are
also safe as file names on Windows, macOS and Linux and cannot escape the recordings folder.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Optional, Union

from ..errors import ConfigError

__all__ = ["PARTICIPANT_ID_RULE", "MAX_PARTICIPANT_ID_LENGTH", "validate_participant_id",
           "is_valid_participant_id", "session_stamp", "claim_session_dir", "looks_identifying",
           "warn_if_identifying", "IdentifyingTextWarning"]

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


def session_stamp(now: Optional[_dt.datetime] = None, *, prefix: str = "S") -> str:
    """The folder name's time part: ``S<UTC date>-<UTC time>`` to the second (``prefix="L"``:
    a live run's folder, the app's one folder rule)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime(f"{prefix}%Y%m%d-%H%M%S")


def claim_session_dir(root: Union[str, Path], participant: str, *, now: Optional[_dt.datetime] = None,
                      max_tries: int = 1000, group_readable: bool = False) -> Path:
    """Create and return a new, empty ``ROOT/<participant>/S<date>-<time>[-k]`` folder.

    The folder is *created* here (``mkdir`` without ``exist_ok``, atomic on every file system):
    two sessions that start in the same second - two processes, or two threads - get different
    ids (``-2``, ``-3``, ...), where choosing a name that does not exist yet and creating it later
    gave both the same name and refused the second. Folders it creates (the root, the
    participant's folder, the session) are private, 0700 (0750 with ``group_readable``), whatever
    the umask: their names are pseudonyms (docs/data-rights.md)."""
    from ..recording.perms import make_dirs, modes_for

    validate_participant_id(participant)
    modes = modes_for(group_readable)
    base = Path(root) / participant
    make_dirs(base, modes)
    stamp = session_stamp(now)
    for k in range(1, max_tries + 1):
        p = base / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            p.mkdir()
        except FileExistsError:
            continue
        os.chmod(p, modes.dir)
        return p
    raise ConfigError(f"{base}: {max_tries} sessions already started at {stamp}; wait a second and start again")


# ---------------------------------------------------------------------------- free text
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\d)\+?\d[\d ()/-]{6,}\d(?!\d)")
# Names are matched in any script: a word is letters of any alphabet (``[^\W\d_]``: "Ana María",
# "Łukasz", "Дмитрий"), joined by hyphens or apostrophes (Jean-Luc, O'Brien); a name word is
# capitalised - its first letter upper case, the rest lower case (str.isupper/islower know every
# cased script). Scripts without letter case (Chinese, Arabic, Hebrew, Devanagari, ...) have no
# capitals to go by: there only the introductions ("my name is X") and titles are caught.
_LETTERS = r"[^\W\d_]+"
_WORD = re.compile(_LETTERS + r"(?:[-'’]" + _LETTERS + r")*")
_INTRO = re.compile(r"\b(my name is|name:|i am|i'm|this is|called)\s+(" + _WORD.pattern + ")", re.IGNORECASE)
_TITLE = re.compile(r"\b(Mr|Mrs|Ms|Miss|Dr|Prof|Herr|Frau)\.?\s+(" + _WORD.pattern + ")")
# Capitalised words that are common in notes and not names (emotion words, days, the clip words).
_NOT_NAMES = {"I", "The", "A", "An", "SAM", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
              "Sunday", "January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December", "Happy", "Sad", "Fear", "Anger", "Disgust", "Surprise",
              "Neutral", "Happiness", "Sadness", "Very", "Not", "No", "Yes", "Trial", "Clip", "Video", "Tobii",
              "English", "German", "French", "Spanish", "OK"}


def _capitalised(word: str) -> bool:
    """A name-like word: 2+ letters, each hyphen/apostrophe part upper case first, then lower case."""
    if len(word) < 2:
        return False
    for part in re.split(r"[-'\u2019]", word):
        if not part[:1].isupper() or (len(part) > 1 and not part[1:].islower()):
            return False
    return True


def _caseless(word: str) -> bool:
    """Letters of a script without case (no capitals to judge a name by)."""
    return word.isalpha() and not word.isupper() and not word.islower()


def _name_word(word: str) -> bool:
    return _capitalised(word) and word not in _NOT_NAMES


def _name_pair(text: str) -> Optional[str]:
    """Two or three capitalised words in a row (a first and last name) where a sentence does not
    start (the text's start, or after . ! ?)."""
    words = list(_WORD.finditer(text))
    for a, b in zip(words, words[1:]):
        gap = text[a.end():b.start()]
        if not gap or gap.strip():
            continue                            # not separated by spaces alone
        before = text[:a.start()].rstrip()
        if not before or before[-1] in ".!?":
            continue                            # a sentence starts here: capitals prove nothing
        if _name_word(a.group()) and _name_word(b.group()):
            return f"{a.group()} {b.group()}"
    return None


def _only_name(text: str) -> bool:
    """The whole text is a first and last name (2-3 capitalised words, an optional full stop)."""
    t = text.strip().rstrip(".").strip()
    words = t.split()
    return (2 <= len(words) <= 3 and all(_WORD.fullmatch(w) and _name_word(w) for w in words))


def looks_identifying(text: object) -> Optional[str]:
    """Why ``text`` looks like it holds personal data (an e-mail address, a phone number, a
    person's name), or ``None``.

    A heuristic for free-text fields (SAM notes, operator notes): it warns, it does not
    refuse. Caught: e-mail addresses; phone numbers (7+ digits); "my name is X" / "I am X";
    a title and a name (Dr Weber); two capitalised words that do not start a sentence (talked to
    Anna Schmidt); a note that is nothing but a first and last name. Names are matched in any
    cased script ("Ana María", "Łukasz Wójcik", "Дмитрий Иванов"); in scripts without case only
    the introductions and titles. Missed: a single first name mid-sentence, names written in
    lower case.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    if _EMAIL.search(text):
        return "it contains an e-mail address"
    if _PHONE.search(text):
        return "it contains what looks like a phone number"
    m = _INTRO.search(text)
    if m and (_name_word(m.group(2)) or _caseless(m.group(2))):
        return f"it introduces a name ({m.group(0)!r})"
    m = _TITLE.search(text)
    if m and (_capitalised(m.group(2)) or _caseless(m.group(2))):
        return "it contains a title and a name"
    if _only_name(text):
        return "it looks like a person's name"
    pair = _name_pair(text)
    if pair:
        return f"it contains what looks like a name ({pair!r})"
    return None


class IdentifyingTextWarning(UserWarning):
    """A free-text field looks like it holds a name or contact details."""


def warn_if_identifying(text: object, what: str) -> Optional[str]:
    """Warn (:class:`IdentifyingTextWarning`, one line) when ``text`` looks identifying; returns
    the reason or ``None``. For every free-text field the operator or participant fills in."""
    why = looks_identifying(text)
    if why:
        import warnings

        warnings.warn(f"{what}: {why}; notes are stored with the recording - write no names or contact "
                      "details (participant IDs are pseudonyms)", IdentifyingTextWarning, stacklevel=3)
    return why
