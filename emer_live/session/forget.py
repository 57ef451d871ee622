"""Participant data rights: remove everything one pseudonym left under a recordings root.

``emer-live forget P07 --root recordings`` finds, under the root:

* **sessions** - every folder whose ``session.json`` names the participant, and every folder
  under ``ROOT/P07/`` (the layout ``session`` and ``collect-synthetic`` write), whole;
* **derived files** - anything else whose *name* or *contents* mention the pseudonym as a whole
  token: window caches kept with ``--cache-dir`` (``P07_<session>_<hash>/``), evaluation
  outputs (``evaluation.json``, per-sample ``predictions.tsv``), exports, JSON-lines predictions,
  checkpoints whose provenance lists the participant. *Contents* means text: text files whole
  (UTF-8, or UTF-16/32 with a byte-order mark), zip archives (``.npz``, torch ``.pt``) member
  by member - string arrays element by element, pickles by their strings (read with
  pickletools, nothing is unpickled) - and never raw binary data (tensor storage, numeric arrays,
  images, media): random bytes spell a three-letter pseudonym by chance (a trained EMERT's
  weights did, in a test). Binary files are judged by their names.

A derived file that mentions several participants is removed whole: it was computed from the
participant's data, and cutting rows out of it would leave a result that no longer matches its
own inputs. Files inside *another* participant's session that mention the pseudonym (a note
naming them) are not removed; they are listed for a person to review.

Symbolic links are never followed: a link is removed as a link, its target is left alone.

Nothing is removed without confirmation (the pseudonym typed again on stdin, or ``--yes``);
``--dry-run`` lists what would go. Each completed removal appends one line to
``ROOT/forget_audit.tsv``: the UTC date, a hash of the pseudonym (not the pseudonym), the counts
of sessions, files and bytes removed, and what was left for review. The hash lets a lab show that
a given request was carried out; it does not hide *which* short pseudonym it was from someone who
tries them all - the pseudonym is not the person, and the key linking the two is the lab's.
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
from typing import IO, Callable, Iterable, List, Optional, Tuple

from .. import __version__
from ..errors import ConfigError, EmerError
from .ids import validate_participant_id

__all__ = ["ForgetPlan", "plan_forget", "execute_forget", "pseudonym_hash", "AUDIT_FILE", "AUDIT_COLUMNS"]

AUDIT_FILE = "forget_audit.tsv"
AUDIT_COLUMNS = ("utc_date", "participant_sha256_16", "sessions_removed", "files_removed", "bytes_removed",
                 "left_for_review", "failed", "software")
_SESSION_FORMAT = "emer_live.session"
# Media inside a session of someone else: never searched (large, and a pseudonym in JPEG or PCM
# bytes would be chance).
_MEDIA_SUFFIXES = {".mjpeg", ".wav", ".mp4", ".avi", ".mkv", ".npy", ".png", ".jpg", ".jpeg"}
_CHUNK = 1 << 20


class ForgetError(EmerError):
    """Some files could not be removed (permissions, a read-only disk); the rest were."""

    exit_code = 5


def pseudonym_hash(participant: str) -> str:
    """First 16 hex digits of sha256("emer_live.forget:" + pseudonym): in the audit file instead of
    the pseudonym (see the module notes for what it does and does not hide)."""
    return hashlib.sha256(f"emer_live.forget:{participant}".encode()).hexdigest()[:16]


@dataclass
class ForgetPlan:
    """What ``forget`` would remove under ``root``; paths are absolute, never followed links."""

    root: Path
    participant: str
    sessions: List[Path] = field(default_factory=list)       # folders removed whole
    files: List[Tuple[Path, str]] = field(default_factory=list)  # (path, why) outside those folders
    folders: List[Tuple[Path, str]] = field(default_factory=list)  # derived folders removed whole
    review: List[Tuple[Path, str]] = field(default_factory=list)   # mentions kept for a person

    @property
    def empty(self) -> bool:
        return not (self.sessions or self.files or self.folders)

    def lines(self) -> List[str]:
        rel = lambda p: os.path.relpath(p, self.root)  # noqa: E731 - short, local
        out = [f"session  {rel(p)}/  ({_count_files(p)} files)" for p in self.sessions]
        out += [f"folder   {rel(p)}/  ({_count_files(p)} files; {why})" for p, why in self.folders]
        out += [f"file     {rel(p)}  ({why})" for p, why in self.files]
        out += [f"REVIEW   {rel(p)}  ({why}; not removed)" for p, why in self.review]
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


def _session_participant(folder: Path) -> Optional[str]:
    """The ``participant`` a session folder's session.json names; None when it is not a readable
    session.json (a damaged one is decided by its place and its bytes instead)."""
    try:
        meta = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != _SESSION_FORMAT:
        return None
    p = meta.get("participant")
    return p if isinstance(p, str) else None


def plan_forget(root, participant: str) -> ForgetPlan:
    """Find everything under ``root`` that belongs to or mentions ``participant``.

    Raises
    ------
    ConfigError
        An invalid pseudonym, or a root that is not a folder.
    """
    validate_participant_id(participant)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--root {root}: not a folder; give the recordings folder that holds the sessions")
    root = root.resolve()
    pat = _token_re(participant)
    # the audit line is written into the root, and the root is never removed: a root that is (or
    # is inside) the participant's own folder or one of their sessions would keep their name
    if any(pat.search(part.encode()) for part in root.parts) or _session_participant(root) == participant:
        raise ConfigError(f"--root {root}: is the participant's own folder or session (or inside it); give the "
                          "recordings folder above it, e.g. --root recordings")
    plan = ForgetPlan(root=root, participant=participant)
    keep = 4 * (len(participant) + 2)
    own_top = root / participant

    # 1. sessions: decided by session.json (wherever they are) or by living under ROOT/<participant>/
    sessions: List[Path] = []
    other_sessions: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if "session.json" in filenames and not os.path.islink(d / "session.json"):
            owner = _session_participant(d)
            inside_own = d == own_top or own_top in d.parents
            if owner == participant or (owner is None and inside_own):
                sessions.append(d)
            else:
                other_sessions.append(d)
            dirnames[:] = []  # a session folder is decided whole
    plan.sessions = sorted(sessions)

    # 2. everything else: names and contents
    taken = set(plan.sessions)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if d in taken or any(t in d.parents for t in taken):
            dirnames[:] = []
            continue
        in_other = next((s for s in other_sessions if s == d or s in d.parents), None)
        # folders named after the participant (ROOT/P07/, a --cache-dir P07_<session>_<hash>/)
        for name in list(dirnames):
            sub = d / name
            if os.path.islink(sub):
                continue  # links are files here (listed below)
            if in_other is None and pat.search(name.encode()) and \
                    not any(s == sub or sub in s.parents for s in other_sessions):
                why = "folder of the participant" if sub == own_top else "folder name names the participant"
                plan.folders.append((sub, why))
                taken.add(sub)
                dirnames.remove(name)
        links = [n for n in dirnames if os.path.islink(d / n)]
        for name in list(filenames) + links:
            p = d / name
            if d == root and name == AUDIT_FILE:
                continue
            named = bool(pat.search(name.encode()))
            if in_other is not None:
                if p.suffix.lower() in _MEDIA_SUFFIXES or os.path.islink(p):
                    continue
                if named or _file_mentions(p, pat, keep):
                    plan.review.append((p, f"in the session {os.path.relpath(in_other, root)} of another "
                                           "participant"))
                continue
            if os.path.islink(p):
                if named:
                    plan.files.append((p, "link named after the participant (the target is not touched)"))
                continue
            if named:
                plan.files.append((p, "file name names the participant"))
            elif _file_mentions(p, pat, keep):
                plan.files.append((p, "derived file that mentions the participant"))
    plan.folders.sort()
    plan.files.sort()
    plan.review.sort()
    return plan


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


def execute_forget(plan: ForgetPlan, *, log: Callable[[str], None] = print) -> dict:
    """Remove what ``plan`` lists, prune folders left empty up to the root, append the audit line.

    Returns the audit record (a dict). Raises :class:`ForgetError` when some paths could not be
    removed (the rest are, and the audit line says how many failed)."""
    failed: List[str] = []
    n_files = n_bytes = 0
    targets = [(p, True) for p in plan.sessions] + [(p, True) for p, _ in plan.folders] + \
        [(p, False) for p, _ in plan.files]
    for path, whole in targets:
        if not os.path.lexists(path):
            continue
        nf, nb = _size(path)
        try:
            if whole and not path.is_symlink():
                shutil.rmtree(path)  # rmtree removes links inside as links, never their targets
            else:
                path.unlink()
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
            continue
        n_files += nf
        n_bytes += nb
        _prune_empty(path.parent, plan.root)
    record = {
        "utc_date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "participant_sha256_16": pseudonym_hash(plan.participant),
        "sessions_removed": len(plan.sessions), "files_removed": n_files, "bytes_removed": n_bytes,
        "left_for_review": len(plan.review), "failed": len(failed), "software": f"emer_live {__version__}",
    }
    _append_audit(plan.root, record)
    if failed:
        raise ForgetError(f"could not remove {len(failed)} path(s), e.g. {failed[0]}; the rest were removed and "
                          f"{plan.root / AUDIT_FILE} says so - fix the permissions and run `emer-live forget` again")
    return record


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent


def _append_audit(root: Path, record: dict) -> None:
    path = root / AUDIT_FILE
    new = not path.exists()
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        if new:
            f.write("\t".join(AUDIT_COLUMNS) + "\n")
        f.write("\t".join(str(record[c]) for c in AUDIT_COLUMNS) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- command line
def register(subparsers) -> None:
    """Add the ``forget`` sub-command."""
    p = subparsers.add_parser(
        "forget", help="remove every session, cache, export and derived file of one participant",
        description="Participant data rights: remove every session of one pseudonym under DIR, and every other "
                    "file or folder there whose name or contents mention it (window caches, evaluation outputs, "
                    "predictions, exports, checkpoints trained on the participant). Asks for the pseudonym again "
                    "on stdin unless --yes; appends an audit line without personal data to DIR/forget_audit.tsv. "
                    "Run it on every folder where the lab keeps data (recordings, caches, model folders).")
    p.add_argument("participant", metavar="PARTICIPANT", help="the pseudonym, e.g. P07")
    p.add_argument("--root", required=True, metavar="DIR", help="the folder to search (e.g. recordings)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    p.set_defaults(func=_cmd)


def _cmd(args, stdin: Optional[IO[str]] = None) -> int:
    plan = plan_forget(args.root, args.participant)
    lines = plan.lines()
    for ln in lines:
        print(ln)
    n_rm = len(plan.sessions) + len(plan.folders) + len(plan.files)
    if plan.empty:
        print(f"nothing under {plan.root} belongs to or mentions {args.participant}"
              + (f"; {len(plan.review)} file(s) to review" if plan.review else ""))
        return 0
    if args.dry_run:
        print(f"dry run: {n_rm} item(s) would be removed; nothing was changed")
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
             if plan.review else ""))
    return 0


def iter_plan_paths(plan: ForgetPlan) -> Iterable[Path]:
    """Every path the plan removes (tests, and tools that want to show them)."""
    yield from plan.sessions
    yield from (p for p, _ in plan.folders)
    yield from (p for p, _ in plan.files)
