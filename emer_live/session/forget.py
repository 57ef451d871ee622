"""Participant data rights: remove what emer_live wrote about one pseudonym under a folder.

``emer-live forget P07 --root recordings`` removes, under the root (docs/data-rights.md):

* **sessions** - every session folder (``session.json`` of format ``emer_live.session``) that is
  the participant's: its ``participant`` is P07; it is a copy of one (``derived_from``, or an
  older copy's replay devices' ``replay_of``); or it lies under ``ROOT/P07/`` with a damaged
  ``session.json``. A session folder is emer_live's own and goes whole.
* **emer_live's own files and folders outside sessions** that are the participant's: named
  after them (``ROOT/P07/``, ``P07_<session>_<hash>/`` window caches) or mentioning them in
  their contents, *and* recognised by their own format: a JSON object whose ``format`` is
  ``emer_live.*`` (evaluation reports, face-crop caches, with the files they list), a torch
  archive whose pickle carries an ``emer_live.*`` format (checkpoints, FER models, training
  state), a ``.npz`` of window arrays (``t_end_us``/``eye_ref``), a table whose header is one
  emer_live writes, a JSON-lines prediction log, a window-cache folder
  (``<name>_<10 hex>/`` holding only ``windows_*``/``reference_*`` caches; also found from a
  removed session's path when its name does not name the participant).

Everything else that mentions the pseudonym - a lab's ``participants_key.csv``, notes covering
several participants, a scan named ``P07_consent.pdf``, a link someone made - is **not
emer_live's**: it is listed (``LAB``) for the lab to handle and never touched. Files inside
*another* participant's session that mention the pseudonym are listed for review (``REVIEW``).

Symbolic links: a link to a folder is followed when its target is inside the root, or when the
link is named after the participant or points at a session folder - the plan names every link
it follows out of the root (``LINK``); other links out of the root are not followed and are
named too. A session folder whose ``participant`` field is not a pseudonym string (``["P07"]``,
``7``) is reported (``INVALID``); it is removed only where the value still names this
participant as a whole token or the folder lies under ``ROOT/P07/``.

A session whose writer holds its lock (``recording.lock``, a recording in progress) makes
``forget`` refuse, removing nothing; a stale lock (the writer crashed) is named and goes with
its session.

Order: the plan is made and shown; after confirmation the audit line (``stage planned``) is
written to ``ROOT/forget_audit.tsv`` *before* anything is removed - if it cannot be written,
nothing is removed - and a second line (``stage done``) after. Every failure ends in one line
and an exit code (5: something could not be written, removed or read).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .. import __version__
from ..errors import ConfigError, EmerError, SessionLockedError
from ..recording.lock import LockInfo, read_lock
from .ids import is_valid_participant_id, validate_participant_id

__all__ = ["ForgetPlan", "ForgetError", "plan_forget", "execute_forget", "pseudonym_hash", "AUDIT_FILE",
           "AUDIT_COLUMNS", "EMER_LIVE_TABLE_HEADERS"]

AUDIT_FILE = "forget_audit.tsv"
AUDIT_COLUMNS = ("utc_date", "participant_sha256_16", "sessions_removed", "files_removed", "bytes_removed",
                 "left_for_review", "failed", "software", "stage", "left_for_lab", "utc_time")
_SESSION_FORMAT = "emer_live.session"
# Media inside a session of someone else: never searched (large, and a pseudonym in JPEG or PCM
# bytes would be chance).
_MEDIA_SUFFIXES = {".mjpeg", ".wav", ".mp4", ".avi", ".mkv", ".npy", ".png", ".jpg", ".jpeg"}
_CHUNK = 1 << 20
_JSON_LIMIT = 64 << 20      # a JSON file larger than this is not parsed to be recognised

#: The first columns of every table emer_live writes outside a session folder or inside one:
#: a text table whose header starts with one of these is emer_live's own (tests check them
#: against the writers' constants).
EMER_LIVE_TABLE_HEADERS = (
    ("fold", "participant", "session", "kind", "trial", "t_end_us"),           # evaluate predictions.tsv
    ("kind", "t_start_us", "t_end_us", "trial", "checkpoint", "er_top"),       # live predictions.tsv
    ("trial", "stimulus_id", "category", "status", "onset_us", "offset_us"),   # replay trial table export
    ("trial", "stimulus_id", "category", "sam_valence", "sam_arousal"),        # sam.tsv
    ("kind", "trial", "segment", "t_start_us", "t_end_us", "true_emotion"),    # truth.tsv
    ("frame", "t_us", "camera_frame_index", "found", "method"),                # face-crop cache index
    ("t_us", "kind", "trial", "detail"),                                       # events.tsv
    ("frame", "t_us", "camera_frame_index", "offset", "size"),                 # face_frames.tsv
    ("block", "t_us", "n_samples", "sample_offset"),                           # audio_blocks.tsv
    ("t_us", "device_time_stamp", "system_time_stamp"),                        # gaze / eye openness
    ("t_us", "system_request_time_stamp", "device_time_stamp"),                # time_sync.tsv
)
_PREDICTION_KEYS = {"kind", "t_start_us", "t_end_us", "er7", "checkpoint"}    # a live --out JSON line
_CACHE_DIR = re.compile(r".+_[0-9a-f]{10}")
_CACHE_FILE = re.compile(r"\.?(windows|reference)_.+\.npz")


class ForgetError(EmerError):
    """Something could not be written, removed or read; the message says what, and what was done."""

    exit_code = 5


def pseudonym_hash(participant: str) -> str:
    """First 16 hex digits of sha256("emer_live.forget:" + pseudonym): in the audit file instead of
    the pseudonym (see the module notes for what it does and does not hide)."""
    return hashlib.sha256(f"emer_live.forget:{participant}".encode()).hexdigest()[:16]


@dataclass
class ForgetPlan:
    """What ``forget`` would do under ``root``. Paths are as found under the root (through
    links); :attr:`real` maps each one to remove to its resolved location."""

    root: Path
    participant: str
    sessions: List[Tuple[Path, str]] = field(default_factory=list)   # session folders removed whole
    folders: List[Tuple[Path, str]] = field(default_factory=list)    # emer_live folders removed whole
    files: List[Tuple[Path, str]] = field(default_factory=list)      # emer_live files removed
    lab: List[Tuple[Path, str]] = field(default_factory=list)        # not emer_live's: listed, untouched
    review: List[Tuple[Path, str]] = field(default_factory=list)     # mentions in others' sessions
    invalid: List[Tuple[Path, str]] = field(default_factory=list)    # sessions whose owner is unclear
    links: List[Tuple[Path, str]] = field(default_factory=list)      # links followed / not followed
    followed: List[Tuple[Path, Path]] = field(default_factory=list)  # (link, target) followed out of the root
    own_links: List[Tuple[Path, Path]] = field(default_factory=list)  # (link, target): removed once it dangles
    locked: List[Tuple[Path, LockInfo]] = field(default_factory=list)
    stale: List[Tuple[Path, LockInfo]] = field(default_factory=list)
    unreadable: List[Tuple[Path, str]] = field(default_factory=list)
    real: Dict[Path, Path] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.sessions or self.files or self.folders)

    def removals(self) -> List[Tuple[Path, bool]]:
        """(path as found, whole folder?) of everything to remove."""
        return [(p, True) for p, _ in self.sessions] + [(p, True) for p, _ in self.folders] + \
            [(p, False) for p, _ in self.files]

    def _rel(self, p: Path) -> str:
        return os.path.relpath(p, self.root)

    def lines(self) -> List[str]:
        rel = self._rel
        out = [f"session  {rel(p)}/  ({_count_files(self.real.get(p, p))} files; {why})" for p, why in self.sessions]
        out += [f"folder   {rel(p)}/  ({_count_files(self.real.get(p, p))} files; {why})" for p, why in self.folders]
        out += [f"file     {rel(p)}  ({why})" for p, why in self.files]
        out += [f"LOCKED   {rel(p)}/  ({info.describe()})" for p, info in self.locked]
        out += [f"LOCK     {rel(p)}/  ({info.describe()}; removed with the session)" for p, info in self.stale]
        out += [f"LINK     {rel(p)}  ({why})" for p, why in self.links]
        out += [f"INVALID  {rel(p)}/  ({why})" for p, why in self.invalid]
        out += [f"LAB      {rel(p)}  ({why})" for p, why in self.lab]
        out += [f"REVIEW   {rel(p)}  ({why}; not removed)" for p, why in self.review]
        out += [f"UNREADABLE {rel(p)}  ({why}; not searched)" for p, why in self.unreadable]
        return out


def _count_files(folder: Path) -> int:
    n = 0
    for _dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        n += len(filenames) + sum(1 for d in dirnames if os.path.islink(os.path.join(_dirpath, d)))
    return n


_ENCODINGS = ("utf-8", "utf-16-le", "utf-32-le")  # numpy string arrays ('<U') are UTF-32


def _token_re(participant: str) -> "re.Pattern[bytes]":
    """The pseudonym as a whole token, in UTF-8 and in the wide encodings numpy arrays and Windows
    tools use: P07 must not match P070 or AP07; '_' and '-' separate (P07_S2026... cache names)."""
    alts = []
    for enc in _ENCODINGS:
        word = b"|".join(re.escape(c.encode(enc)) for c in
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        alts.append(b"(?<!" + word + b")" + re.escape(participant.encode(enc)) + b"(?!" + word + b")")
    return re.compile(b"|".join(alts))


def _stream_mentions(f: IO[bytes], pat: "re.Pattern[bytes]", keep: int) -> bool:
    tail = b""
    while True:
        block = f.read(_CHUNK)
        if not block:
            return False
        buf = tail + block
        if pat.search(buf):
            return True
        tail = buf[-keep:]


def _npy_header_dtype(f):
    import numpy as np  # numpy is a dependency; imported here because only arrays need it

    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    return read_header(f)[2]


def _npy_mentions(open_member: Callable[[], IO[bytes]], pat: "re.Pattern[bytes]") -> bool:
    """A .npy array: only string arrays can name anyone; their elements are packed without
    separators (UTF-32 in '<U' arrays), so the token is looked for element by element. Numeric
    arrays are not searched: random float bytes would spell a short pseudonym by chance."""
    import numpy as np

    with open_member() as m:
        try:
            dtype = _npy_header_dtype(m)
        except (ValueError, OSError, SyntaxError):
            return False
        if dtype.kind not in "US" or dtype.hasobject:
            return False
    with open_member() as m:
        arr = np.load(m, allow_pickle=False)
    for item in np.ravel(arr):
        text = item if isinstance(item, str) else bytes(item).decode("utf-8", "replace")
        if pat.search(text.encode("utf-8")):
            return True
    return False


def _pickle_mentions(f: IO[bytes], pat: "re.Pattern[bytes]") -> bool:
    """The strings in a pickle (a torch checkpoint's data.pkl holds its provenance), read with
    pickletools - nothing is unpickled, no code runs."""
    import pickletools

    try:
        for _op, arg, _pos in pickletools.genops(f):
            if isinstance(arg, str):
                if pat.search(arg.encode("utf-8", "replace")):
                    return True
            elif isinstance(arg, (bytes, bytearray)) and pat.search(bytes(arg)):
                return True
    except Exception:  # noqa: BLE001 - a damaged pickle: whatever was read before stands
        return False
    return False


_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_TORCH_STORAGE = re.compile(r"(^|/)data/\d+$")


def _is_text(head: bytes) -> bool:
    """Text (UTF-8, or UTF-16/32 with a byte-order mark) rather than binary: binary bytes are
    not searched, since random bytes spell a short pseudonym by chance."""
    return head.startswith(_TEXT_BOMS) or b"\x00" not in head


def _file_mentions(path: Path, pat: "re.Pattern[bytes]", keep: int) -> bool:
    """Whether the file's text mentions the pseudonym. Text files are searched whole; zip archives
    (.npz, torch .pt) member by member (string arrays element by element, pickles by their strings,
    tensor storage not at all); .npy string arrays and pickles likewise; other binary files only
    by name."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    name = info.filename
                    if pat.search(name.encode("utf-8", "replace")):
                        return True
                    if _TORCH_STORAGE.search(name) or info.is_dir():
                        continue
                    if name.endswith(".npy"):
                        if _npy_mentions(lambda info=info: z.open(info), pat):
                            return True
                    elif name.endswith(".pkl"):
                        with z.open(info) as m:
                            if _pickle_mentions(m, pat):
                                return True
                    else:
                        with z.open(info) as m:
                            if _is_text(m.read(8192)):
                                with z.open(info) as m2:
                                    if _stream_mentions(m2, pat, keep):
                                        return True
            return False
        if path.suffix == ".npy":
            return _npy_mentions(lambda: open(path, "rb"), pat)
        if path.suffix in (".pkl", ".pickle"):
            with open(path, "rb") as f:
                return _pickle_mentions(f, pat)
        with open(path, "rb") as f:
            if not _is_text(f.read(8192)):
                return False
            f.seek(0)
            return _stream_mentions(f, pat, keep)
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        return False  # unreadable: the name check still applies


# ---------------------------------------------------------------------------- emer_live's own formats
def _pickle_has_format(f: IO[bytes]) -> bool:
    """A pickle (a torch archive's data.pkl) that carries an ``emer_live.*`` format string,
    read with pickletools - nothing is unpickled."""
    import pickletools

    try:
        for _op, arg, _pos in pickletools.genops(f):
            if isinstance(arg, str) and arg.startswith("emer_live."):
                return True
    except Exception:  # noqa: BLE001 - a damaged pickle: not recognised
        return False
    return False


def _first_line(path: Path) -> Optional[str]:
    with open(path, "rb") as f:
        head = f.read(65536)
    if not _is_text(head):
        return None
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None


def emer_live_kind(path) -> Optional[str]:
    """What emer_live file ``path`` is, recognised by its own format; None when it is not one
    of emer_live's (a lab's file). See the module notes for the formats."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                pkl = [n for n in names if n.endswith("data.pkl")]
                for n in pkl:
                    with z.open(n) as m:
                        if _pickle_has_format(m):
                            return "emer_live model/checkpoint"
                stems = {n.rsplit("/", 1)[-1] for n in names}
                if {"t_end_us.npy", "eye_ref.npy"} & stems:
                    return "emer_live window arrays"
            return None
        line = _first_line(path)
        if line is None:
            return None
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
                if path.stat().st_size <= _JSON_LIMIT:
                    try:
                        obj = json.loads(path.read_text(encoding="utf-8-sig"))
                    except (ValueError, UnicodeDecodeError):
                        obj = None
            if isinstance(obj, dict):
                fmt = obj.get("format")
                if isinstance(fmt, str) and fmt.startswith("emer_live."):
                    return f"emer_live {fmt[len('emer_live.'):]} file"
                if _PREDICTION_KEYS <= set(obj):
                    return "emer_live prediction log"
            return None
        cols = tuple(line.split("\t"))
        if any(cols[:len(h)] == h for h in EMER_LIVE_TABLE_HEADERS):
            return "emer_live table"
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        return None
    return None


def _companions(path: Path) -> List[Path]:
    """Files an emer_live JSON names as its own (an evaluation's confusion PNGs, a face-crop
    cache's arrays and index), in its folder."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    if not isinstance(obj, dict):
        return []
    names = []
    for v in obj.get("confusion_png") or []:
        names.append(str(v))
    crops = obj.get("crops")
    if isinstance(crops, dict) and crops.get("file"):
        names.append(str(crops["file"]))
    if isinstance(obj.get("index"), str):
        names.append(obj["index"])
    out = []
    for n in names:
        p = Path(n) if os.path.isabs(n) else path.parent / n
        if p.parent.resolve() == path.parent.resolve() and p.is_file() and not p.is_symlink():
            out.append(path.parent / p.name)
    return out


def _is_cache_folder(folder: Path) -> bool:
    """A window-cache folder (``--cache-dir``: ``<parent>_<session>_<10 hex>/`` holding only
    ``windows_*``/``reference_*`` caches)."""
    if not _CACHE_DIR.fullmatch(folder.name):
        return False
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return bool(entries) and all(e.is_file(follow_symlinks=False) and _CACHE_FILE.fullmatch(e.name) for e in entries)


def _cache_folder_name(session: Path) -> str:
    """The ``--cache-dir`` folder name of a session (emer_live.training.dataset's naming)."""
    sid = hashlib.sha1(str(session.resolve()).encode()).hexdigest()[:10]
    return f"{session.parent.name}_{session.name}_{sid}"


# ---------------------------------------------------------------------------- sessions
_UNREADABLE = object()


@dataclass
class _Session:
    real: Path
    shown: Path
    field: object                   # the participant value, _UNREADABLE, or None (missing)
    session_id: object = None
    created_utc: object = None
    derived: Optional[dict] = None
    replay_of: Tuple[str, ...] = ()
    mine: Optional[str] = None      # why it is the participant's
    invalid: Optional[str] = None   # why its owner is unclear


def _read_session(real: Path, shown: Path) -> _Session:
    try:
        meta = json.loads((real / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return _Session(real, shown, _UNREADABLE)
    if not isinstance(meta, dict) or meta.get("format") != _SESSION_FORMAT:
        return _Session(real, shown, _UNREADABLE)
    replay_of = []
    devices = meta.get("devices")
    for d in (devices.values() if isinstance(devices, dict) else []):
        if isinstance(d, dict) and isinstance(d.get("replay_of"), str):
            replay_of.append(d["replay_of"])
    derived = meta.get("derived_from") if isinstance(meta.get("derived_from"), dict) else None
    return _Session(real, shown, meta.get("participant"), meta.get("session_id"), meta.get("created_utc"),
                    derived, tuple(replay_of))


def _resolved(path_text: str, base: Path) -> Optional[Path]:
    try:
        p = Path(path_text)
        return (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _decide_sessions(sessions: List[_Session], participant: str, pat, own_reals: List[Path]) -> None:
    """Mark each session the participant's (``mine``) or of unclear owner (``invalid``)."""
    def inside_own(real: Path) -> bool:
        return any(o == real or o in real.parents for o in own_reals)

    for s in sessions:
        f = s.field
        if f == participant:
            s.mine = "the participant's session"
        elif f is _UNREADABLE:
            if inside_own(s.real):
                s.mine = f"session.json cannot be read, and it lies in the folder of {participant}"
            else:
                s.invalid = "session.json cannot be read: whose session it is cannot be told - repair it and run forget again"
        elif f is not None and not is_valid_participant_id(f):
            shown = json.dumps(f, ensure_ascii=False)[:60]
            if inside_own(s.real):
                s.mine = f"participant field {shown} is not a pseudonym; it lies in the folder of {participant}"
            elif pat.search(shown.encode("utf-8")):
                s.mine = f"participant field {shown} is not a pseudonym string, but names {participant}"
            else:
                s.invalid = (f"participant field {shown} is not a pseudonym string: whose session it is cannot be "
                             "told - write the session's pseudonym there as a string and run forget again")
    # copies: derived_from (participant, path or id) and older copies' replay_of, followed to the end
    changed = True
    while changed:
        changed = False
        mine = [s for s in sessions if s.mine]
        mine_reals = {s.real for s in mine}
        mine_ids = {(s.session_id, s.created_utc) for s in mine if s.session_id}
        for s in sessions:
            if s.mine:
                continue
            why = None
            d = s.derived or {}
            if d.get("participant") == participant:
                why = f"re-recorded from a session of {participant} (derived_from)"
            elif isinstance(d.get("path"), str) and _resolved(d["path"], s.real) in mine_reals:
                why = "re-recorded from a session removed here (derived_from)"
            elif d.get("session_id") and (d.get("session_id"), d.get("created_utc")) in mine_ids:
                why = "re-recorded from a session removed here (derived_from session id)"
            elif any(_resolved(r, s.real) in mine_reals for r in s.replay_of):
                why = "re-recorded from a session removed here (its replay devices' replay_of)"
            if why:
                s.mine, s.invalid, changed = why, None, True


# ---------------------------------------------------------------------------- the plan
def plan_forget(root, participant: str) -> ForgetPlan:
    """Find what under ``root`` belongs to or mentions ``participant`` and what to do with it.

    Raises
    ------
    ConfigError
        An invalid pseudonym, or a root that is not a folder (or is the participant's own).
    ForgetError
        The root itself cannot be read.
    """
    validate_participant_id(participant)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--root {root}: not a folder; give the recordings folder that holds the sessions")
    root = root.resolve()
    pat = _token_re(participant)
    # the audit line is written into the root, and the root is never removed: a root that is (or
    # is inside) the participant's own folder or one of their sessions would keep their name
    if any(pat.search(part.encode()) for part in root.parts) or \
            (root / "session.json").is_file() and _read_session(root, root).field == participant:
        raise ConfigError(f"--root {root}: is the participant's own folder or session (or inside it); give the "
                          "recordings folder above it, e.g. --root recordings")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ForgetError(f"--root {root}: cannot be read (permission denied); nothing was removed - run forget as "
                          "a user who may read and write the recordings folder")
    plan = ForgetPlan(root=root, participant=participant)
    keep = 4 * (len(participant) + 2)

    # 1. the trees to search: the root, and the folder links that are followed (cycles visited once)
    trees: List[Tuple[Path, Path]] = [(root, root)]          # (real base, shown base)
    own = root / participant          # the participant's folder (ROOT/P07, perhaps a link)
    own_reals: List[Path] = [own.resolve()] if own.is_dir() else []
    visited: Set[Path] = set()
    sessions: List[_Session] = []
    file_links: List[Tuple[Path, Path]] = []                   # (shown, real) of links to files
    walked: List[Tuple[Path, Path, List[str]]] = []            # (real dir, shown dir, file names)
    k = 0
    while k < len(trees):
        base_real, base_shown = trees[k]
        k += 1
        if base_real in visited:
            continue
        errors: List[OSError] = []
        for dirpath, dirnames, filenames in os.walk(base_real, followlinks=False, onerror=errors.append):
            d = Path(dirpath)
            if d in visited:
                dirnames[:] = []
                continue
            visited.add(d)
            shown = base_shown / d.relative_to(base_real)
            if "session.json" in filenames and not os.path.islink(d / "session.json"):
                s = _read_session(d, shown)
                sessions.append(s)
                dirnames[:] = []            # a session folder is decided whole
                continue
            for name in list(dirnames):
                link = d / name
                if not os.path.islink(link):
                    continue
                dirnames.remove(name)
                target = Path(os.path.realpath(link))
                named = bool(pat.search(name.encode()))
                if named and target.is_dir():
                    own_reals.append(target)
                    plan.own_links.append((d / name, target))
                inside = target == root or root in target.parents
                if inside:
                    if named:
                        plan.links.append((shown / name, f"link to {os.path.relpath(target, root)} inside the root: "
                                                         "searched there as the participant's folder"))
                    continue                 # searched where it is
                if named or (target / "session.json").is_file():
                    trees.append((target, shown / name))
                    plan.followed.append((shown / name, target))
                    plan.links.append((shown / name, f"link to {target}, outside the root: followed - what is "
                                                     "listed under it is removed there"))
                else:
                    plan.links.append((shown / name, f"link to {target}, outside the root: not followed - run "
                                                     "forget with --root on it if it holds participant data"))
            for name in filenames:
                p = d / name
                if os.path.islink(p):
                    file_links.append((shown / name, p))
            walked.append((d, shown, [n for n in filenames if not os.path.islink(d / n)]))
        for exc in errors:
            where = Path(exc.filename) if exc.filename else base_real
            inside = where == base_real or base_real in where.parents
            plan.unreadable.append((base_shown / where.relative_to(base_real) if inside else where,
                                    exc.strerror or str(exc)))

    # 2. whose sessions
    _decide_sessions(sessions, participant, pat, own_reals)
    mine = [s for s in sessions if s.mine]
    for s in sessions:
        if s.mine:
            plan.sessions.append((s.shown, s.mine))
            plan.real[s.shown] = s.real
            lock = read_lock(s.real)
            if lock is not None:
                (plan.stale if lock.stale else plan.locked).append((s.shown, lock))
        elif s.invalid:
            plan.invalid.append((s.shown, s.invalid))
    cache_names = {_cache_folder_name(s.real) for s in mine} | {_cache_folder_name(s.shown) for s in mine}
    others = [s for s in sessions if not s.mine]

    # 3. files inside other participants' sessions that mention this one: for a person to review
    for other in others:
        for dirpath, _dirnames, filenames in os.walk(other.real, followlinks=False):
            for name in filenames:
                p = Path(dirpath) / name
                if p.suffix.lower() in _MEDIA_SUFFIXES or os.path.islink(p):
                    continue
                if pat.search(name.encode()) or _file_mentions(p, pat, keep):
                    plan.review.append((other.shown / p.relative_to(other.real),
                                        f"in the session {os.path.relpath(other.shown, root)} of another participant"))

    # 4. everything outside sessions: emer_live's own is removed, the rest listed for the lab
    taken: List[Path] = []
    for d, shown, filenames in walked:
        if any(t == d or t in d.parents for t in taken):
            continue
        in_own_folder = any(o == d or o in d.parents for o in own_reals)
        named_path = any(pat.search(part.encode()) for part in shown.relative_to(root).parts) \
            if root == shown or root in shown.parents else False
        named_ctx = in_own_folder or named_path
        try:
            subdirs = [e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        except OSError:
            subdirs = []
        for name in subdirs:
            sub = d / name
            if _is_cache_folder(sub) and (pat.search(name.encode()) or named_ctx or name in cache_names):
                why = "window cache of a removed session" if name in cache_names else \
                    "window cache named after the participant"
                plan.folders.append((shown / name, why))
                plan.real[shown / name] = sub
                taken.append(sub)
        companions: List[Tuple[Path, Path]] = []
        for name in filenames:
            p = d / name
            if d == root and name == AUDIT_FILE:
                continue
            named = bool(pat.search(name.encode()))
            if named:
                why = "file name names the participant"
            elif named_ctx:
                why = "in the participant's folder"
            elif _file_mentions(p, pat, keep):
                why = "mentions the participant"
            else:
                continue
            kind = emer_live_kind(p)
            if kind is None:
                plan.lab.append((shown / name, f"{why}; not written by emer_live - never touched: the lab handles it"))
                continue
            plan.files.append((shown / name, f"{kind}; {why}"))
            plan.real[shown / name] = p
            if p.suffix == ".json":
                companions += [(shown / c.name, c) for c in _companions(p)]
        listed = {q for q, _ in plan.files}
        for cshown, creal in companions:
            if cshown not in listed:
                plan.lab = [(q, w) for q, w in plan.lab if q != cshown]
                plan.files.append((cshown, "listed by an emer_live file removed here"))
                plan.real[cshown] = creal
                listed.add(cshown)
    for shown, real in file_links:
        target = Path(os.path.realpath(real))
        into_theirs = any(s.real == target or s.real in target.parents for s in mine) or \
            any(o == target or o in target.parents for o in own_reals)   # their session or folder
        if pat.search(shown.name.encode()) or into_theirs or (target.is_file() and _file_mentions(target, pat, keep)):
            plan.lab.append((shown, f"a link to {target}; emer_live makes no links - never touched: the lab handles it"))
    plan.sessions.sort()
    for lst in (plan.folders, plan.files, plan.lab, plan.review, plan.invalid, plan.links, plan.unreadable):
        lst.sort(key=lambda t: str(t[0]))
    return plan


# ---------------------------------------------------------------------------- removing
def _size(path: Path) -> Tuple[int, int]:
    """(files, bytes) under ``path`` (a file, link or folder), links not followed."""
    if path.is_symlink() or not path.is_dir():
        try:
            return 1, path.lstat().st_size
        except OSError:
            return 1, 0
    n = b = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + [x for x in dirnames if os.path.islink(os.path.join(dirpath, x))]:
            n += 1
            try:
                b += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return n, b


def _rmtree(path: Path, failed: List[str]) -> None:
    """Remove a folder; what cannot be removed is collected, the rest still goes."""
    def note(_func, p, exc_info):
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        failed.append(f"{p}: {getattr(exc, 'strerror', None) or exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda f, p, e: note(f, p, e))
    else:  # pragma: no cover - Python 3.10/3.11
        shutil.rmtree(path, onerror=note)


def _audit_record(plan: ForgetPlan, stage: str, sessions: int, files: int, nbytes: int, failed: int) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc)
    return {"utc_date": now.strftime("%Y-%m-%d"), "utc_time": now.strftime("%H:%M:%S"),
            "participant_sha256_16": pseudonym_hash(plan.participant), "sessions_removed": sessions,
            "files_removed": files, "bytes_removed": nbytes, "left_for_review": len(plan.review),
            "left_for_lab": len(plan.lab), "failed": failed, "software": f"emer_live {__version__}", "stage": stage}


def execute_forget(plan: ForgetPlan, *, log: Callable[[str], None] = print) -> dict:
    """Write the audit line, then remove what ``plan`` lists, prune folders left empty, and write
    the closing audit line. Returns the closing record.

    Raises
    ------
    SessionLockedError
        A session to remove is being recorded (nothing is removed).
    ForgetError
        The audit line cannot be written (nothing is removed), or something could not be removed
        or read (the rest was, and the audit says how many failed).
    """
    if plan.locked:
        p, info = plan.locked[0]
        raise SessionLockedError(f"{p}: in use ({info.describe()}); forget refused, nothing was removed - stop the "
                                 "recording and run forget again")
    sizes = {p: _size(plan.real.get(p, p)) for p, _ in plan.removals()}
    planned = _audit_record(plan, "planned", len(plan.sessions), sum(n for n, _ in sizes.values()),
                            sum(b for _, b in sizes.values()), 0)
    try:
        _append_audit(plan.root, planned)
    except OSError as exc:
        raise ForgetError(f"cannot write the audit line to {plan.root / AUDIT_FILE} ({exc.strerror or exc}); "
                          "nothing was removed - forget writes it before removing anything: make the recordings "
                          "folder writable for this user and run forget again") from None
    failed: List[str] = []
    n_files = n_bytes = 0
    for shown, whole in plan.removals():
        path = plan.real.get(shown, shown)
        if not os.path.lexists(path):
            continue
        before = len(failed)
        try:
            if whole and not path.is_symlink():
                _rmtree(path, failed)
            else:
                path.unlink()
        except OSError as exc:
            failed.append(f"{shown}: {exc.strerror or exc}")
        if len(failed) == before:
            n_files += sizes[shown][0]
            n_bytes += sizes[shown][1]
        _prune_empty(path.parent, _prune_stop(path, plan))
    for link, target in plan.followed + plan.own_links:
        if not os.path.exists(target) and os.path.islink(link):
            try:
                link.unlink()          # its target is gone now: the link would name nothing
            except OSError as exc:
                failed.append(f"{link}: {exc.strerror or exc}")
    record = _audit_record(plan, "done", len(plan.sessions), n_files, n_bytes, len(failed))
    try:
        _append_audit(plan.root, record)
    except OSError as exc:
        raise ForgetError(f"removed {len(plan.sessions)} session(s) and {n_files} file(s), but the closing audit line "
                          f"could not be written to {plan.root / AUDIT_FILE} ({exc.strerror or exc}); the line "
                          "written before removing stands") from None
    if failed:
        raise ForgetError(f"could not remove {len(failed)} path(s), e.g. {failed[0]}; the rest were removed and "
                          f"{plan.root / AUDIT_FILE} says so - fix the permissions and run `emer-live forget` again")
    return record


def _prune_stop(path: Path, plan: ForgetPlan) -> Path:
    """Where pruning empty folders stops: the root, or a followed link's target (itself pruned)."""
    for _link, target in plan.followed:
        if target in path.parents:
            return target.parent
    return plan.root


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


def _append_audit(root: Path, record: dict) -> None:
    path = root / AUDIT_FILE
    header = "\t".join(AUDIT_COLUMNS)
    first = None
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        if first != header:
            # a new file, or one an older version began with fewer columns: a header for what follows
            f.write(header + "\n")
        f.write("\t".join(str(record[c]) for c in AUDIT_COLUMNS) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- command line
def register(subparsers) -> None:
    """Add the ``forget`` sub-command."""
    p = subparsers.add_parser(
        "forget", help="remove every session, cache, export and derived file of one participant",
        description="Participant data rights: remove every session of one pseudonym under DIR (copies re-recorded "
                    "from them too), and the files emer_live wrote there that name or mention it (window caches, "
                    "evaluation outputs, predictions, exports, checkpoints trained on the participant). Files "
                    "emer_live did not write (a lab's key or notes) are listed, never touched. Asks for the "
                    "pseudonym again on stdin unless --yes; writes an audit line without personal data to "
                    "DIR/forget_audit.tsv before removing anything. Refuses a session being recorded. Run it on "
                    "every folder where the lab keeps data (recordings, caches, model folders).")
    p.add_argument("participant", metavar="PARTICIPANT", help="the pseudonym, e.g. P07")
    p.add_argument("--root", required=True, metavar="DIR", help="the folder to search (e.g. recordings)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    p.set_defaults(func=_cmd)


def _incomplete(plan: ForgetPlan) -> Optional[str]:
    """Why the request cannot be called done even when every removal succeeded."""
    parts = []
    if plan.invalid:
        parts.append(f"{len(plan.invalid)} session(s) with an unclear participant were left (INVALID above)")
    if plan.unreadable:
        parts.append(f"{len(plan.unreadable)} folder(s) could not be searched (UNREADABLE above)")
    return "; ".join(parts) or None


def _cmd(args, stdin: Optional[IO[str]] = None) -> int:
    plan = plan_forget(args.root, args.participant)
    for ln in plan.lines():
        print(ln)
    n_rm = len(plan.sessions) + len(plan.folders) + len(plan.files)
    lab = (f"; {len(plan.lab)} file(s) not written by emer_live mention the pseudonym (LAB above): the lab must "
           "handle them" if plan.lab else "")
    incomplete = _incomplete(plan)
    if args.dry_run:
        print(f"dry run: {n_rm} item(s) would be removed{lab}; nothing was changed"
              + ("; forget would refuse: a session is being recorded (LOCKED above)" if plan.locked else "")
              + (f"; {incomplete}" if incomplete else ""))
        return 0
    if plan.locked:
        p, info = plan.locked[0]
        raise SessionLockedError(f"{p}: in use ({info.describe()}); forget refused, nothing was removed - stop the "
                                 "recording and run forget again")
    if plan.empty:
        print(f"nothing emer_live wrote under {plan.root} belongs to or mentions {args.participant}"
              + (f"; {len(plan.review)} file(s) to review" if plan.review else "") + lab)
        if incomplete:
            raise ForgetError(f"{incomplete}; nothing was removed - check them and run forget again")
        return 0
    if not args.yes:
        stdin = stdin if stdin is not None else sys.stdin
        if stdin is None or (hasattr(stdin, "closed") and stdin.closed):
            answer = ""
        else:
            print(f"remove these {n_rm} item(s) for good? type the pseudonym again to confirm: ", end="",
                  file=sys.stderr, flush=True)
            try:
                answer = stdin.readline()
            except (OSError, ValueError):
                answer = ""
        if answer == "":
            print(file=sys.stderr)
            raise ConfigError("forget: no confirmation on stdin; nothing was removed - type the pseudonym when "
                              "asked, or pass --yes (after checking --dry-run)")
        if answer.strip() != args.participant:
            print("emer-live: not confirmed (the pseudonym typed did not match); nothing was removed",
                  file=sys.stderr)
            return 1
    rec = execute_forget(plan)
    print(f"removed {rec['sessions_removed']} session(s), {rec['files_removed']} file(s), "
          f"{rec['bytes_removed'] / 1e6:.1f} MB; audit line in {plan.root / AUDIT_FILE}"
          + (f"; {len(plan.review)} file(s) in other participants' sessions mention the pseudonym - review them"
             if plan.review else "") + lab)
    if incomplete:
        raise ForgetError(f"{incomplete}; check them and run forget again")
    return 0


def iter_plan_paths(plan: ForgetPlan) -> Iterable[Path]:
    """Every path the plan removes, as found under the root (tests, and tools that show them)."""
    for p, _whole in plan.removals():
        yield p
