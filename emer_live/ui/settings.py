"""Where the app keeps its own settings, and how it remembers sessions without naming anyone.

The windows keep their layout and the replay window its recent sessions in INI files in the
user's configuration folder (``$EMER_LIVE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/emer_live`` or
``~/.config/emer_live``; ``~/Library/Preferences/emer_live`` on macOS, ``%APPDATA%\\emer_live`` on
Windows). The folder is 0700 and the files 0600. Without a home folder (``HOME`` unset, or
``/``) nothing is kept between runs - settings are never written to ``/``.

The recent-sessions list stores no pseudonym (docs/data-rights.md): each entry is the session's
path with every folder name that contains the participant's pseudonym turned into a wildcard,
plus the session id and creation time that pick the folder again when it is opened
(``recordings/*/S20261201-100000``). A list written by an older version (plain paths) is
rewritten this way when the window starts; after ``forget`` the entry finds nothing and drops
out.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from PyQt6 import QtCore

from ..recording.perms import PRIVATE, make_dirs

__all__ = ["settings_dir", "app_settings", "keep_private", "recent_entry", "resolve_recent_entry"]

_TEMP_DIR: List[Path] = []


def settings_dir() -> Optional[Path]:
    """The folder for the app's settings, or None when there is no home folder to put it in."""
    env = os.environ.get("EMER_LIVE_CONFIG_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA")
        if base:
            return Path(base) / "emer_live"
        home = os.environ.get("USERPROFILE")
        return Path(home) / "AppData" / "Roaming" / "emer_live" if home else None
    home = os.environ.get("HOME", "")
    if not home or Path(home) == Path(home).parent:        # unset, or the file-system root
        return None
    if sys.platform == "darwin":
        return Path(home) / "Library" / "Preferences" / "emer_live"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg) and Path(xdg) != Path(xdg).parent:
        return Path(xdg) / "emer_live"
    return Path(home) / ".config" / "emer_live"


def app_settings(name: str) -> QtCore.QSettings:
    """The INI settings ``name`` (``replay``, ``operator-console``) in :func:`settings_dir`, made
    private; a throw-away private file when there is no home folder."""
    folder = settings_dir()
    if folder is None:
        if not _TEMP_DIR:
            _TEMP_DIR.append(Path(tempfile.mkdtemp(prefix="emer_live-settings-")))   # 0700
        folder = _TEMP_DIR[0]
    make_dirs(folder, PRIVATE)
    path = folder / f"{name}.ini"
    try:
        # created 0600 before Qt writes it: Qt keeps an existing file's mode when it saves
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE.file))
        os.chmod(path, PRIVATE.file)
    except OSError:
        pass            # an unwritable settings folder: Qt reports nothing and keeps nothing
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


def keep_private(settings: QtCore.QSettings) -> None:
    """Write ``settings`` out and make its file 0600 (Qt writes a new file at each save)."""
    settings.sync()
    path = settings.fileName()
    if path and os.path.isfile(path):
        try:
            os.chmod(path, PRIVATE.file)
        except OSError:
            pass


def _session_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _names_in(meta: dict) -> List[str]:
    """The pseudonyms a session's session.json names (its own and its source's)."""
    out = []
    for v in (meta.get("participant"), (meta.get("derived_from") or {}).get("participant")
              if isinstance(meta.get("derived_from"), dict) else None):
        if isinstance(v, str) and v:
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += [str(x) for x in v if str(x)]
        elif v is not None:
            out.append(str(v))
    return out


def recent_entry(path) -> str:
    """A recent-sessions entry for the session folder ``path`` without its pseudonym."""
    folder = Path(path).resolve()
    meta = _session_meta(folder)
    names = [n.lower() for n in _names_in(meta)]
    parts = []
    for part in folder.parts:
        low = part.lower()
        if any(n in low for n in names):
            masked, i = "", 0
            while i < len(part):
                hit = next((n for n in names if low.startswith(n, i)), None)
                if hit:
                    masked += "*"
                    i += len(hit)
                else:
                    masked += glob.escape(part[i])
                    i += 1
            parts.append(masked)
        else:
            parts.append(glob.escape(part) if parts else part)
    return json.dumps({"glob": str(Path(*parts)), "session": _session_key(meta)})


def _session_key(meta: dict) -> str:
    """Picks the session again without naming it: its id can name the participant
    (``record --out ROOT/P07_pilot``), so only a hash of id and creation time is kept."""
    text = f"emer_live.recent:{meta.get('session_id')}\t{meta.get('created_utc')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolve_recent_entry(entry: str) -> Optional[str]:
    """The session folder a :func:`recent_entry` names, or None when it is gone (or forgotten)."""
    try:
        d = json.loads(entry)
        pattern = str(d["glob"])
    except (ValueError, KeyError, TypeError):
        return None
    for cand in sorted(glob.glob(pattern)):
        meta = _session_meta(Path(cand))
        if not meta:
            continue
        if "session" in d:
            if _session_key(meta) == d["session"]:
                return cand
        elif (meta.get("session_id"), meta.get("created_utc")) == (d.get("session_id"), d.get("created_utc")):
            return cand
    return None
