"""File modes of recorded data: private by default, group-readable on request (docs/data-rights.md).

Face video, voice and gaze identify people, so a session folder is ``0700`` and its files
``0600`` whatever the process's umask; ``--group-readable`` (labs that share data through a Unix
group) makes them ``0750``/``0640``. Modes are set explicitly (``chmod`` after creating), never
left to the umask. On Windows ``chmod`` only sets the read-only flag: who may read is decided by
the folder's access list, inherited from the folder above (keep recordings under the user's
profile or a folder shared on purpose).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List

__all__ = ["Modes", "PRIVATE", "GROUP_READABLE", "modes_for", "make_dirs", "apply_modes"]


@dataclass(frozen=True)
class Modes:
    dir: int
    file: int


PRIVATE = Modes(dir=0o700, file=0o600)
GROUP_READABLE = Modes(dir=0o750, file=0o640)


def modes_for(group_readable: bool) -> Modes:
    return GROUP_READABLE if group_readable else PRIVATE


def make_dirs(path, modes: Modes) -> List[Path]:
    """``mkdir -p`` with ``modes.dir`` on every folder it creates (not on those that existed);
    returns the folders created, outermost first."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue           # made by someone else in between: not ours to change
        os.chmod(d, modes.dir)
        created.append(d)
    return created


def apply_modes(root, modes: Modes) -> None:
    """Set ``modes`` on ``root`` and everything under it; links are neither followed nor changed.
    Paths that cannot be changed (another owner) are left as they are."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name, mode in [(n, modes.dir) for n in dirnames] + [(n, modes.file) for n in filenames]:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            try:
                os.chmod(p, mode)
            except OSError:
                pass
    try:
        os.chmod(root, modes.dir)
    except OSError:
        pass


def open_new(path, mode: str, modes: Modes, **kw):
    """Open a new file (``x`` modes) with ``modes.file``, whatever the umask."""
    f = open(path, mode, **kw)
    try:
        os.chmod(path, modes.file)
    except OSError:
        f.close()
        raise
    return f
