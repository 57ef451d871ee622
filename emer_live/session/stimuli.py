"""The stimulus library: manifest, validation (``stimuli check``) and placeholder clips.

A library is a folder of video files plus a ``manifest.toml`` that describes them. The EMER design
has 28 clips: the 7 emotion categories x 4 clips, 60-120 s each. The real clips are copyrighted
web videos that each lab supplies itself; the repository ships the manifest format
(``stimuli/manifest.toml``) and a generator of clearly labelled *placeholder* clips
(:func:`make_placeholders`) for demos and tests. The format is documented in ``docs/stimuli.md``.

Manifest (TOML)::

    format = 1                     # manifest format version
    title = "EMER stimulus set"    # optional
    placeholder = false            # true only for generated placeholder sets

    [design]                       # optional; these are the defaults
    clips_per_category = 4
    min_duration_s = 60.0
    max_duration_s = 120.0

    [[clip]]
    id = "hap_01"                  # letters, digits, '-', '_' (used in folder names)
    file = "hap_01.mp4"            # relative to the library folder
    category = "happiness"         # one of the 7 categories
    valence = 0.81                 # intended valence, [-1, 1]
    arousal = 0.51                 # intended arousal, [-1, 1]
    duration_s = 95.0              # clip length in seconds
    sha256 = "..."                 # optional checksum of the file
    source = "..."                 # optional free text: title, URL, licence, cut points
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import StimulusError
from ..labels import ER7_CLASSES, VA_ANCHORS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the 3.10 lane
    import tomli as tomllib

__all__ = [
    "Clip", "StimulusLibrary", "ManifestError", "ManifestParse", "Problem", "CheckReport",
    "VideoInfo",
    "load_manifest", "parse_manifest", "emer_design_clips", "write_manifest", "probe_video",
    "check_library", "make_placeholders", "MANIFEST_NAME", "MANIFEST_FORMAT", "VIDEO_EXTENSIONS",
    "CATEGORY_PREFIX", "duration_tolerance_s", "sha256_of",
]

MANIFEST_NAME = "manifest.toml"
MANIFEST_FORMAT = 1

#: File name endings treated as video files when looking for stray files in a library folder.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ogv", ".ts")

#: Short id prefixes of the built-in EMER design (``hap_01`` ... ``neu_04``).
CATEGORY_PREFIX: Dict[str, str] = {
    "happiness": "hap", "sadness": "sad", "fear": "fea", "surprise": "sur",
    "disgust": "dis", "anger": "ang", "neutral": "neu",
}

_DEFAULT_DESIGN = {"clips_per_category": 4, "min_duration_s": 60.0, "max_duration_s": 120.0}
_CLIP_REQUIRED = ("id", "file", "category", "valence", "arousal", "duration_s")
_CLIP_OPTIONAL = ("sha256", "source")
_TOP_KEYS = ("format", "title", "placeholder", "design", "clip")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
_SHA_RE = re.compile(r"[0-9a-f]{64}")


def duration_tolerance_s(duration_s: float) -> float:
    """Allowed difference between a clip's manifest duration and its file: 0.5 s or 2 %,
    whichever is larger."""
    return max(0.5, 0.02 * float(duration_s))


# --------------------------------------------------------------------------------------------
# Manifest model
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Clip:
    """One stimulus clip of a manifest.

    Attributes
    ----------
    id : str
        Stimulus id (used in ``trials/<NN>_<id>/`` folder names and in ``sam.tsv``).
    file : str
        File name relative to the library folder (``/`` separated).
    category : str
        Intended emotion category (one of the 7).
    valence, arousal : float
        Intended valence / arousal in [-1, 1].
    duration_s : float
        Clip length in seconds.
    sha256 : str or None
        Lower-case hex SHA-256 of the file, when known.
    source : str
        Free-text provenance note.
    """

    id: str
    file: str
    category: str
    valence: float
    arousal: float
    duration_s: float
    sha256: Optional[str] = None
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem found in a library: the file it concerns and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


class ManifestError(StimulusError):
    """A manifest is invalid; :attr:`problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], *, folder: Optional[Path] = None) -> None:
        self.problems = list(problems)
        msg = str(self.problems[0])
        if len(self.problems) > 1:
            hint = f"emer-live stimuli check {folder}" if folder else "emer-live stimuli check DIR"
            msg += f" (and {len(self.problems) - 1} more problems; '{hint}' lists them all)"
        super().__init__(msg)


@dataclasses.dataclass(frozen=True)
class StimulusLibrary:
    """A parsed, valid manifest and the folder its files live in.

    Attributes
    ----------
    manifest_path : Path
        The manifest file.
    root : Path
        The folder clip files are relative to (by default the manifest's folder).
    clips : tuple of Clip
        All clips, in manifest order.
    clips_per_category, min_duration_s, max_duration_s :
        The design (``[design]`` table).
    placeholder : bool
        ``True`` for generated placeholder sets.
    title : str
        Optional title.
    """

    manifest_path: Path
    root: Path
    clips: Tuple[Clip, ...]
    clips_per_category: int = 4
    min_duration_s: float = 60.0
    max_duration_s: float = 120.0
    placeholder: bool = False
    title: str = ""

    @property
    def categories(self) -> Tuple[str, ...]:
        """The 7 categories in the project's class order."""
        return ER7_CLASSES

    @property
    def by_category(self) -> Dict[str, Tuple[Clip, ...]]:
        """Category -> its clips in manifest order (every category present)."""
        return {c: tuple(k for k in self.clips if k.category == c) for c in ER7_CLASSES}

    @property
    def ids(self) -> Tuple[str, ...]:
        return tuple(c.id for c in self.clips)

    def clip(self, clip_id: str) -> Clip:
        """The clip with this id (raises :class:`StimulusError` naming the manifest)."""
        for c in self.clips:
            if c.id == clip_id:
                return c
        raise StimulusError(f"{self.manifest_path}: no clip with id {clip_id!r}")

    def path_of(self, clip: Union[Clip, str]) -> Path:
        """Absolute path of a clip's file (by :class:`Clip` or id); the file may not exist."""
        c = self.clip(clip) if isinstance(clip, str) else clip
        return self.root / Path(c.file)

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_rel_file(name: str) -> Optional[str]:
    if not name:
        return "is empty"
    if "\\" in name:
        return "contains '\\'; use '/' between folders"
    p = Path(name)
    if p.is_absolute() or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is an absolute path; give it relative to the library folder"
    if any(part == ".." for part in p.parts):
        return "contains '..'; clip files must lie inside the library folder"
    if any(ch in name for ch in "\t\r\n"):
        return "contains tabs or line breaks"
    if name == MANIFEST_NAME:
        return "is the manifest itself"
    return None


@dataclasses.dataclass
class ManifestParse:
    """What :func:`parse_manifest` found.

    Attributes
    ----------
    library : StimulusLibrary or None
        The library when there were no problems.
    problems : list of Problem
        Every problem found (empty when valid).
    clips : list of Clip
        The entries that are valid on their own (their files can be checked even when the
        manifest as a whole is not, e.g. with wrong counts).
    files : list of str
        Every file name the manifest lists, also those of invalid entries.
    """

    library: Optional[StimulusLibrary]
    problems: List[Problem]
    clips: List[Clip]
    files: List[str]


def parse_manifest(path: Union[str, Path], *, root: Union[str, Path, None] = None
                   ) -> ManifestParse:
    """Parse a manifest and collect **every** problem instead of stopping at the first.

    Parameters
    ----------
    path : str or Path
        The manifest file.
    root : str or Path, optional
        The folder clip files are relative to (default: the manifest's folder).

    Returns
    -------
    ManifestParse
    """
    mpath = Path(path)
    mname = str(mpath)
    problems: List[Problem] = []

    def bad(reason: str) -> None:
        problems.append(Problem(mname, reason))

    try:
        with open(mpath, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if not mpath.parent.is_dir():
            bad(f"folder {mpath.parent} does not exist; create the stimulus folder or give the "
                f"right path")
        else:
            bad(f"no such manifest; copy stimuli/{MANIFEST_NAME} from the repository into "
                f"{mpath.parent} and fill in your clips")
        return ManifestParse(None, problems, [], [])
    except IsADirectoryError:
        bad(f"is a folder, not a manifest file; pass {mpath / MANIFEST_NAME}")
        return ManifestParse(None, problems, [], [])
    except tomllib.TOMLDecodeError as exc:
        bad(f"not valid TOML ({exc}); fix the syntax at that line")
        return ManifestParse(None, problems, [], [])
    except (OSError, UnicodeDecodeError) as exc:
        bad(f"cannot read the manifest ({exc})")
        return ManifestParse(None, problems, [], [])

    for key in data:
        if key not in _TOP_KEYS:
            bad(f"unknown top-level key {key!r}; known keys: {', '.join(_TOP_KEYS)}")
    fmt = data.get("format", MANIFEST_FORMAT)
    if fmt != MANIFEST_FORMAT or isinstance(fmt, bool):
        bad(f"format = {fmt!r} is not supported (this version reads format = {MANIFEST_FORMAT})")
    title = data.get("title", "")
    if not isinstance(title, str):
        bad("title must be text")
        title = ""
    placeholder = data.get("placeholder", False)
    if not isinstance(placeholder, bool):
        bad("placeholder must be true or false")
        placeholder = False

    design = dict(_DEFAULT_DESIGN)
    raw_design = data.get("design", {})
    if not isinstance(raw_design, dict):
        bad("[design] must be a table")
        raw_design = {}
    for key, value in raw_design.items():
        if key not in _DEFAULT_DESIGN:
            bad(f"[design]: unknown key {key!r}; known keys: {', '.join(_DEFAULT_DESIGN)}")
        elif key == "clips_per_category":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(f"[design] clips_per_category = {value!r}: must be a whole number >= 1 "
                    f"(the EMER design uses 4)")
            else:
                design[key] = value
        elif not _is_number(value) or value <= 0:
            bad(f"[design] {key} = {value!r}: must be a positive number of seconds")
        else:
            design[key] = float(value)
    if design["min_duration_s"] > design["max_duration_s"]:
        bad(f"[design] min_duration_s ({design['min_duration_s']}) is larger than "
            f"max_duration_s ({design['max_duration_s']})")

    entries = data.get("clip", [])
    if not isinstance(entries, list):
        bad("'clip' must be an array of tables: write each clip as a [[clip]] section")
        entries = []
    if not entries:
        bad("lists no clips; add one [[clip]] section per stimulus video")

    clips: List[Clip] = []
    seen_ids: Dict[str, int] = {}
    seen_files: Dict[str, int] = {}
    for n, entry in enumerate(entries, start=1):
        raw_id = entry.get("id") if isinstance(entry, dict) else None
        raw_file = entry.get("file") if isinstance(entry, dict) else None
        named = ([f"id {raw_id!r}"] if isinstance(raw_id, str) else []) \
            + ([f"file {raw_file!r}"] if isinstance(raw_file, str) else [])
        label = f"clip #{n}" + (f" ({', '.join(named)})" if named else "")

        def ebad(reason: str, label: str = label) -> None:
            problems.append(Problem(mname, f"{label}: {reason}"))

        if not isinstance(entry, dict):
            ebad("is not a table; write each clip as a [[clip]] section")
            continue
        n_before = len(problems)
        for key in entry:
            if key not in _CLIP_REQUIRED + _CLIP_OPTIONAL:
                ebad(f"unknown field {key!r}; known fields: "
                     f"{', '.join(_CLIP_REQUIRED + _CLIP_OPTIONAL)}")
        for key in _CLIP_REQUIRED:
            if key not in entry:
                ebad(f"missing field {key!r}; every clip needs {', '.join(_CLIP_REQUIRED)}")
        cid = entry.get("id")
        if "id" in entry:
            if not isinstance(cid, str) or not _ID_RE.fullmatch(cid):
                ebad(f"id {cid!r} is not valid: use 1-64 ASCII letters, digits, '-' or '_', "
                     f"starting with a letter or digit (e.g. 'hap_01')")
            elif cid in seen_ids:
                ebad(f"duplicate id, already used by clip #{seen_ids[cid]}; give every clip "
                     f"its own id")
            else:
                seen_ids[cid] = n
        cfile = entry.get("file")
        if "file" in entry:
            if not isinstance(cfile, str):
                ebad(f"file must be text, got {cfile!r}")
            else:
                why = _check_rel_file(cfile)
                if why:
                    ebad(f"file {cfile!r} {why}")
                elif cfile in seen_files:
                    ebad(f"file {cfile!r} is already used by clip #{seen_files[cfile]}; "
                         f"every clip needs its own file")
                else:
                    seen_files[cfile] = n
        cat = entry.get("category")
        if "category" in entry and cat not in ER7_CLASSES:
            ebad(f"unknown category {cat!r}; use one of {', '.join(ER7_CLASSES)}")
        for key in ("valence", "arousal"):
            if key in entry:
                v = entry[key]
                if not _is_number(v) or not -1.0 <= v <= 1.0:
                    ebad(f"{key} = {v!r} must be a number from -1 to 1 (intended {key})")
        if "duration_s" in entry:
            d = entry["duration_s"]
            if not _is_number(d) or d <= 0:
                ebad(f"duration_s = {d!r} must be a positive number of seconds")
            elif not design["min_duration_s"] <= d <= design["max_duration_s"]:
                ebad(f"duration_s = {d!r} is outside {design['min_duration_s']:g}-"
                     f"{design['max_duration_s']:g} s allowed by the design; fix the value, or "
                     f"change [design] min_duration_s / max_duration_s")
        sha = entry.get("sha256")
        if sha == "":
            sha = None  # an empty string means "not known yet"
        if sha is not None and (not isinstance(sha, str) or not _SHA_RE.fullmatch(sha.lower())):
            ebad(f"sha256 {sha!r} is not 64 hex digits; leave it out (or \"\") if unknown")
        source = entry.get("source", "")
        if not isinstance(source, str):
            ebad("source must be text")
        if len(problems) == n_before:
            clips.append(Clip(id=cid, file=cfile, category=cat, valence=float(entry["valence"]),
                              arousal=float(entry["arousal"]),
                              duration_s=float(entry["duration_s"]),
                              sha256=sha.lower() if sha else None, source=source))

    # Counts: only meaningful once every entry has a known category.
    per = design["clips_per_category"]
    counts: Dict[str, List[str]] = {c: [] for c in ER7_CLASSES}
    for n, entry in enumerate(entries, start=1):
        if isinstance(entry, dict) and entry.get("category") in counts:
            counts[entry["category"]].append(str(entry.get("id", f"clip #{n}")))
    total_needed = per * len(ER7_CLASSES)
    n_count_problems = len(problems)
    for cat, ids in counts.items():
        if len(ids) != per:
            listed = ", ".join(ids) if ids else "none"
            fix = ("remove the extra entries (or move them to another category)"
                   if len(ids) > per else "add the missing clips")
            bad(f"category {cat!r} has {len(ids)} clips ({listed}); the design needs {per} per "
                f"category ({total_needed} in all, manifest lists {len(entries)}): {fix}, or "
                f"change [design] clips_per_category")
    if len(problems) == n_count_problems and len(entries) != total_needed:
        bad(f"lists {len(entries)} clips; the design needs {total_needed} ({len(ER7_CLASSES)} "
            f"categories x {per}): remove the extra entries or change [design] "
            f"clips_per_category")

    root_path = Path(root) if root is not None else mpath.parent
    files = [e["file"] for e in entries
             if isinstance(e, dict) and isinstance(e.get("file"), str) and e["file"]]
    if problems:
        return ManifestParse(None, problems, clips, files)
    lib = StimulusLibrary(manifest_path=mpath, root=root_path, clips=tuple(clips),
                          clips_per_category=per, min_duration_s=design["min_duration_s"],
                          max_duration_s=design["max_duration_s"], placeholder=placeholder,
                          title=title)
    return ManifestParse(lib, [], clips, files)


def load_manifest(path: Union[str, Path], *, root: Union[str, Path, None] = None
                  ) -> StimulusLibrary:
    """Load and validate a manifest.

    Parameters
    ----------
    path : str or Path
        The manifest file, or a library folder containing ``manifest.toml``.
    root : str or Path, optional
        The folder clip files are relative to (default: the manifest's folder).

    Returns
    -------
    StimulusLibrary

    Raises
    ------
    ManifestError (a :class:`StimulusError`)
        Unknown categories, duplicate ids or files, missing fields, wrong counts, durations
        outside the design's range, a missing folder ...; the message names the manifest file,
        the entry and the fix, and ``.problems`` lists every problem.

    Notes
    -----
    Only the manifest is checked here; :func:`check_library` also checks the files.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    elif not p.exists() and not p.parent.is_dir():
        raise ManifestError([Problem(str(p.parent), "stimulus folder does not exist; create it "
                                     "or give the right path")])
    parsed = parse_manifest(p, root=root)
    if parsed.problems:
        raise ManifestError(parsed.problems, folder=p.parent)
    assert parsed.library is not None
    return parsed.library


# --------------------------------------------------------------------------------------------
# The built-in EMER design and writing manifests
# --------------------------------------------------------------------------------------------

def emer_design_clips(*, duration_s: float = 90.0, extension: str = ".mp4",
                      source: str = "") -> List[Clip]:
    """The 28 clip entries of the EMER design with placeholder ids (``hap_01`` ... ``neu_04``).

    Intended valence/arousal default to the category's Russell & Mehrabian (1977) anchors
    (ratings of emotion words, see :mod:`emer_live.session.labels`); a lab replaces them with its
    own ratings of its clips.

    Parameters
    ----------
    duration_s : float
        Duration written for every clip.
    extension : str
        File name ending (``hap_01.mp4``).
    source : str
        Source note for every clip.
    """
    clips = []
    for cat in ER7_CLASSES:
        v, a = VA_ANCHORS[cat]
        for k in range(1, _DEFAULT_DESIGN["clips_per_category"] + 1):
            cid = f"{CATEGORY_PREFIX[cat]}_{k:02d}"
            clips.append(Clip(id=cid, file=cid + extension, category=cat, valence=v, arousal=a,
                              duration_s=float(duration_s), sha256=None, source=source))
    return clips


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_float(x: float) -> str:
    r = repr(float(x))
    return r if ("." in r or "e" in r or "n" in r) else r + ".0"


def write_manifest(path: Union[str, Path], clips: Sequence[Clip], *,
                   clips_per_category: int = 4, min_duration_s: float = 60.0,
                   max_duration_s: float = 120.0, placeholder: bool = False, title: str = "",
                   header: str = "", overwrite: bool = False) -> Path:
    """Write a manifest file (atomically: a temporary file renamed into place).

    Parameters
    ----------
    path : str or Path
        Destination ``manifest.toml``.
    clips : sequence of Clip
        The entries, written in order.
    clips_per_category, min_duration_s, max_duration_s : the ``[design]`` table.
    placeholder : bool
        Mark the set as generated placeholders.
    title : str
        Optional title.
    header : str
        Comment lines put at the top (without ``#``).
    overwrite : bool
        Replace an existing file (refused otherwise).

    Returns
    -------
    Path
        The written file.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise StimulusError(f"{p} already exists; refusing to overwrite a manifest")
    lines: List[str] = [f"# {ln}".rstrip() for ln in header.splitlines()]
    if lines:
        lines.append("")
    lines.append(f"format = {MANIFEST_FORMAT}")
    if title:
        lines.append(f"title = {_toml_str(title)}")
    lines.append(f"placeholder = {'true' if placeholder else 'false'}")
    lines += ["", "[design]", f"clips_per_category = {int(clips_per_category)}",
              f"min_duration_s = {_toml_float(min_duration_s)}",
              f"max_duration_s = {_toml_float(max_duration_s)}"]
    for c in clips:
        lines += ["", "[[clip]]", f"id = {_toml_str(c.id)}", f"file = {_toml_str(c.file)}",
                  f"category = {_toml_str(c.category)}",
                  f"valence = {_toml_float(c.valence)}", f"arousal = {_toml_float(c.arousal)}",
                  f"duration_s = {_toml_float(c.duration_s)}"]
        if c.sha256:
            lines.append(f"sha256 = {_toml_str(c.sha256)}")
        if c.source:
            lines.append(f"source = {_toml_str(c.source)}")
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


# --------------------------------------------------------------------------------------------
# Probing video files
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a file."""

    duration_s: float
    width: int
    height: int
    fps: float
    n_frames: Optional[int]
    video_codec: str
    has_audio: Optional[bool]      # None when the backend cannot tell (OpenCV)
    audio_codec: Optional[str]
    backend: str


def sha256_of(path: Union[str, Path], *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _av_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _probe_av(path: Path, full: bool) -> VideoInfo:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise StimulusError(f"not a readable video file ({_av_reason(exc)})") from None
    try:
        if not container.streams.video:
            raise StimulusError("not a video: the file has no video stream")
        vs = container.streams.video[0]
        aud = container.streams.audio[0] if container.streams.audio else None
        rate = vs.average_rate or vs.base_rate or vs.guessed_rate
        fps = float(rate) if rate else 0.0
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = float("nan")
        width, height = vs.codec_context.width, vs.codec_context.height
        vcodec = vs.codec_context.name
        n_frames: Optional[int] = vs.frames or None
        try:
            first = next(container.decode(video=0), None)
        except (av.FFmpegError, ValueError) as exc:
            raise StimulusError(f"damaged video: cannot decode the first frame "
                                f"({_av_reason(exc)})") from None
        if first is None:
            raise StimulusError("damaged video: no frame could be decoded")
        if full:
            count, last_t = 1, first.time or 0.0
            try:
                for frame in container.decode(video=0):
                    count += 1
                    if frame.time is not None:
                        last_t = max(last_t, frame.time)
            except (av.FFmpegError, ValueError) as exc:
                raise StimulusError(f"damaged video: decoding failed after frame {count} "
                                    f"(t = {last_t:.2f} s): {_av_reason(exc)}") from None
            n_frames = count
            decoded = last_t + (1.0 / fps if fps else 0.0)
            if not math.isfinite(duration) or abs(decoded - duration) > duration_tolerance_s(
                    decoded):
                raise StimulusError(f"truncated or damaged: frames decode to {decoded:.2f} s but "
                                    f"the file header says {duration:.2f} s")
        elif math.isfinite(duration) and duration > 1.5:
            # Seek near the end and decode one frame: catches truncated files whose header
            # still announces the full length.
            target = duration - 1.0
            try:
                container.seek(int(target / vs.time_base), stream=vs, backward=True)
                tail = next(container.decode(video=0), None)
            except (av.FFmpegError, ValueError) as exc:
                raise StimulusError(f"truncated or damaged: cannot decode frames near the end "
                                    f"(t = {target:.1f} s): {_av_reason(exc)}") from None
            if tail is None:
                raise StimulusError(f"truncated or damaged: no frame decodes near the end "
                                    f"(t = {target:.1f} s of {duration:.1f} s)")
        if not math.isfinite(duration) or duration <= 0:
            raise StimulusError("not a usable video: its duration is unknown")
        return VideoInfo(duration_s=duration, width=width, height=height, fps=fps,
                         n_frames=n_frames, video_codec=vcodec, has_audio=aud is not None,
                         audio_codec=aud.codec_context.name if aud is not None else None,
                         backend="av")
    finally:
        container.close()


def _probe_cv2(path: Path, full: bool) -> VideoInfo:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise StimulusError("not a readable video file (OpenCV cannot open it)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise StimulusError("damaged video: no frame could be decoded")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        h, w = frame.shape[:2]
        if full:
            count = 1
            while cap.read()[0]:
                count += 1
            if n and abs(count - n) > max(2, 0.02 * n):
                raise StimulusError(f"truncated or damaged: {count} frames decode, the header "
                                    f"says {n}")
            n = count
        elif n > 2:
            cap.set(cv2.CAP_PROP_POS_FRAMES, max(n - int(fps or 1), 0))
            if not cap.read()[0]:
                raise StimulusError("truncated or damaged: no frame decodes near the end")
        if not fps or not n:
            raise StimulusError("not a usable video: its duration is unknown")
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ")
        return VideoInfo(duration_s=n / fps, width=w, height=h, fps=fps, n_frames=n,
                         video_codec=codec or "?", has_audio=None, audio_codec=None,
                         backend="cv2")
    finally:
        cap.release()


def probe_video(path: Union[str, Path], *, full: bool = False) -> VideoInfo:
    """Open a video file, decode frames and report its duration and streams.

    Parameters
    ----------
    path : str or Path
        The file.
    full : bool
        Decode every frame (slow, thorough: also finds damage in the middle of a file).
        Otherwise the first frame and one near the end are decoded.

    Returns
    -------
    VideoInfo

    Raises
    ------
    StimulusError
        The file is not a video, cannot be decoded, or looks truncated; the message gives the
        reason (the caller adds the file name).

    Notes
    -----
    Uses PyAV (``av``) when installed, otherwise OpenCV (which cannot tell whether there is
    sound).
    """
    p = Path(path)
    try:
        import av  # noqa: F401
    except ImportError:
        return _probe_cv2(p, full)
    return _probe_av(p, full)


# --------------------------------------------------------------------------------------------
# Checking a library
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CheckReport:
    """The result of :func:`check_library`."""

    directory: Path
    manifest_path: Path
    problems: List[Problem]
    warnings: List[Problem]
    n_clips: int = 0
    n_checksums: int = 0
    library: Optional[StimulusLibrary] = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: what was checked and whether it passed."""
        if self.ok:
            lib = self.library
            kind = "placeholder clips" if lib is not None and lib.placeholder else "clips"
            per = lib.clips_per_category if lib is not None else "?"
            return (f"stimuli OK: {self.n_clips} {kind} ({len(ER7_CLASSES)} categories x {per}) "
                    f"in {self.directory} match {self.manifest_path.name} (durations checked, "
                    f"{self.n_checksums} checksums verified)")
        return (f"stimuli check failed: {len(self.problems)} problem"
                f"{'s' if len(self.problems) != 1 else ''} in {self.directory}")


def _file_key(p: Path) -> object:
    """Identity of a file: (device, inode) when it exists (robust to case-insensitive file
    systems and links), else the resolved path."""
    try:
        st = p.stat()
    except OSError:
        return p.resolve()
    return (st.st_dev, st.st_ino)


def _stray_videos(directory: Path, referenced: set) -> List[Path]:
    """Video files under ``directory`` (hidden files and folders skipped) whose
    :func:`_file_key` is not in ``referenced``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            p = Path(dirpath) / name
            if _file_key(p) not in referenced:
                out.append(p)
    return out


def check_library(directory: Union[str, Path], *, manifest: Union[str, Path, None] = None,
                  full: bool = False) -> CheckReport:
    """Validate a stimulus library and report **every** problem.

    Checks the manifest (fields, categories, ids, counts per category and in all, durations in
    the design's range), then each listed file: present, a regular non-empty file, a video that
    decodes, duration equal to the manifest's within :func:`duration_tolerance_s`, SHA-256 equal
    to the manifest's when one is given. Video files in the folder that the manifest does not
    list (e.g. a 29th clip dropped in) are problems too.

    Parameters
    ----------
    directory : str or Path
        The library folder (clip files are relative to it).
    manifest : str or Path, optional
        The manifest (default ``directory/manifest.toml``), e.g. the repository's
        ``stimuli/manifest.toml`` checked against a lab's video folder.
    full : bool
        Decode every frame of every clip (slow; see :func:`probe_video`).

    Returns
    -------
    CheckReport
        ``.ok``, ``.problems`` (file + reason each), ``.warnings`` and ``.summary()``.
    """
    d = Path(directory)
    mpath = Path(manifest) if manifest is not None else d / MANIFEST_NAME
    report = CheckReport(directory=d, manifest_path=mpath, problems=[], warnings=[])
    if not d.exists():
        report.problems.append(Problem(str(d), "stimulus folder does not exist; create it and "
                                       "put the clips there, or give the right path"))
        return report
    if not d.is_dir():
        report.problems.append(Problem(str(d), "is not a folder; give the stimulus folder"))
        return report
    parsed = parse_manifest(mpath, root=d)
    lib, clips = parsed.library, parsed.clips
    report.problems.extend(parsed.problems)
    report.library = lib
    if not mpath.is_file():
        return report

    referenced = {_file_key(mpath)} | {_file_key(d / Path(f)) for f in parsed.files}
    for clip in clips:
        path = d / Path(clip.file)
        name = str(path)
        what = f"clip {clip.id!r} ({clip.category})"
        if not path.exists():
            report.problems.append(Problem(name, f"missing: {what} is listed in {mpath.name} but "
                                           f"the file is not there"))
            continue
        if not path.is_file():
            report.problems.append(Problem(name, f"not a file: {what} must be a video file"))
            continue
        if path.stat().st_size == 0:
            report.problems.append(Problem(name, f"empty file (0 bytes): {what} is not a video"))
            continue
        if clip.sha256:
            try:
                digest = sha256_of(path)
            except OSError as exc:
                report.problems.append(Problem(name, f"unreadable ({exc})"))
                continue
            if digest != clip.sha256:
                report.problems.append(Problem(
                    name, f"checksum mismatch: sha256 is {digest[:12]}..., {mpath.name} says "
                          f"{clip.sha256[:12]}... (the file was changed or replaced; restore "
                          f"it, or update sha256 if the new file is intended)"))
            else:
                report.n_checksums += 1
        try:
            info = probe_video(path, full=full)
        except StimulusError as exc:
            report.problems.append(Problem(name, str(exc)))
            continue
        except OSError as exc:
            report.problems.append(Problem(name, f"unreadable ({exc})"))
            continue
        tol = duration_tolerance_s(clip.duration_s)
        if abs(info.duration_s - clip.duration_s) > tol:
            report.problems.append(Problem(
                name, f"duration mismatch: the file lasts {info.duration_s:.2f} s, {mpath.name} "
                      f"says {clip.duration_s:g} s (tolerance {tol:.2f} s); fix duration_s or "
                      f"the file"))
        if info.has_audio is False:
            report.warnings.append(Problem(name, "no audio stream (fine if the clip is meant "
                                                 "to be silent)"))
    design = (f" ({len(lib.clips)} clips = {len(ER7_CLASSES)} categories x "
              f"{lib.clips_per_category})" if lib is not None else "")
    strays = _stray_videos(d, referenced)
    if strays and not parsed.files:
        # the manifest could not be read (e.g. bad TOML): every video would look unlisted and
        # bury the one error that matters - say it once instead
        report.warnings.append(Problem(str(d), f"{len(strays)} video file(s) not compared with "
                                       f"{mpath.name}: it must be readable first"))
        strays = []
    for stray in strays:
        report.problems.append(Problem(
            str(stray), f"video file not listed in {mpath.name}: the library holds exactly the "
                        f"clips its manifest lists{design}; to use this one, replace an entry of "
                        f"its category in the manifest, otherwise move it out of {d}"))
    report.n_clips = len(clips)
    return report


# --------------------------------------------------------------------------------------------
# Placeholder clips
# --------------------------------------------------------------------------------------------

def _hsv_to_bgr(h_deg: float, s: float, v: float) -> Tuple[int, int, int]:
    h = (h_deg % 360.0) / 60.0
    i = int(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return int(b * 255), int(g * 255), int(r * 255)


def _placeholder_colors(clip: Clip, k: int) -> Tuple[Tuple[int, int, int], Tuple[int, int, int]]:
    """Background colours: hue from valence (violet-blue = negative, yellow = positive),
    saturation from |valence|, brightness from valence; ``k`` varies the clips of a category."""
    v = clip.valence
    hue = 152.5 - 97.5 * v + (k - 1.5) * 8.0
    sat = 0.15 + 0.7 * abs(v)
    val = 0.45 + 0.25 * v
    top = _hsv_to_bgr(hue, sat, min(1.0, val + 0.15))
    bottom = _hsv_to_bgr(hue + 20.0, sat, max(0.05, val - 0.2))
    return top, bottom


def _fit_text(text: str, width: int, thickness: int) -> float:
    import cv2

    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, thickness)
    return width / max(w, 1)


def _draw_placeholder_frames(clip: Clip, k: int, *, width: int, height: int, fps: float,
                             n_frames: int) -> Iterator[np.ndarray]:
    """Yield BGR frames (the same array, redrawn: use each before asking for the next):
    gradient background, moving discs (speed and number follow arousal),
    a pulsing central disc, the PLACEHOLDER label, a frame counter and a sync square that is
    white during the first 2 frames of every second."""
    import cv2

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(clip.id.encode()).digest()[:4],
                                               "little"))
    top, bottom = _placeholder_colors(clip, k)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    bg = (np.array(top, np.float32) * (1 - ramp) + np.array(bottom, np.float32) * ramp)
    bg = np.ascontiguousarray(np.broadcast_to(bg, (height, width, 3)), dtype=np.uint8)
    a01 = (clip.arousal + 1.0) / 2.0                      # 0 = calm, 1 = excited
    n_discs = 3 + int(round(9 * a01))
    speed = (0.05 + 0.45 * a01) * width                  # pixels per second
    pos = rng.uniform([0, 0], [width, height], size=(n_discs, 2))
    ang = rng.uniform(0, 2 * np.pi, size=n_discs)
    vel = np.stack([np.cos(ang), np.sin(ang)], axis=1) * speed
    radii = rng.uniform(0.03, 0.08, size=n_discs) * height
    disc_col = _hsv_to_bgr(152.5 - 97.5 * clip.valence + 180.0, 0.5, 0.9)
    pulse_hz = 0.3 + 1.7 * a01
    label = f"PLACEHOLDER - {clip.id} - {clip.category}"
    scale = _fit_text(label, int(width * 0.92), 2) * 1.0
    thick = max(1, int(round(scale * 2)))
    (lw, lh), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    sub = f"intended valence {clip.valence:+.2f}  arousal {clip.arousal:+.2f}"
    sub_scale = min(scale * 0.6, _fit_text(sub, int(width * 0.8), 1))
    small = max(0.35, height / 900)
    sync = max(8, height // 20)
    frame_every = max(1, int(round(fps)))
    # The label and the valence/arousal line do not change: draw them once into a layer with a
    # mask, and paste only the rows that hold text into each frame.
    layer = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    org = ((width - lw) // 2, height // 2 - int(height * 0.22))
    sub_org = (int(width * 0.1), height // 2 + int(height * 0.3))
    for canvas, outline, fill in ((mask, 255, 255), (layer, (0, 0, 0), (255, 255, 255))):
        cv2.putText(canvas, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, outline, thick + 3,
                    cv2.LINE_AA)
        cv2.putText(canvas, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, fill, thick,
                    cv2.LINE_AA)
        cv2.putText(canvas, sub, sub_org, cv2.FONT_HERSHEY_SIMPLEX, sub_scale, outline, 3,
                    cv2.LINE_AA)
        cv2.putText(canvas, sub, sub_org, cv2.FONT_HERSHEY_SIMPLEX, sub_scale, fill, 1,
                    cv2.LINE_AA)
    on_mask = mask > 127
    rows = np.flatnonzero(on_mask.any(axis=1))
    bands = [(int(r[0]), int(r[-1]) + 1)
             for r in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if len(r)]
    img = np.empty((height, width, 3), np.uint8)   # reused: a fresh array per frame page-faults
    for i in range(n_frames):
        t = i / fps
        np.copyto(img, bg)
        p = pos + vel * t
        # bounce inside the frame
        p = np.abs(np.mod(p, 2 * np.array([width, height])) - np.array([width, height]))
        p = np.array([width, height]) - p
        for (x, y), r in zip(p, radii):
            cv2.circle(img, (int(x), int(y)), int(r), disc_col, -1, cv2.LINE_AA)
        pulse = 0.5 + 0.5 * math.sin(2 * math.pi * pulse_hz * t)
        cv2.circle(img, (width // 2, height // 2), int(height * (0.12 + 0.06 * pulse)),
                   (255, 255, 255), max(2, height // 90), cv2.LINE_AA)
        for y0, y1 in bands:
            np.copyto(img[y0:y1], layer[y0:y1], where=on_mask[y0:y1, :, None])
        cv2.putText(img, f"frame {i:05d}  t = {t:6.2f} s", (sync + 8, height - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, small, (255, 255, 255), 1, cv2.LINE_AA)
        on = (i % frame_every) < 2
        cv2.rectangle(img, (0, 0), (sync, sync), (255, 255, 255) if on else (0, 0, 0), -1)
        yield img


def _placeholder_audio(clip: Clip, *, duration_s: float, rate: int) -> np.ndarray:
    """Mono float32 audio: a tone whose pitch and loudness rise with arousal (220-620 Hz,
    -22 to -14 dBFS), a major third + fifth mixed in for positive valence or a minor second
    (dissonant) for negative valence, tremolo faster with arousal, and a 1 kHz 30 ms blip at
    every whole second (matching the white sync square)."""
    n = int(round(duration_s * rate))
    t = np.arange(n, dtype=np.float64) / rate
    a01 = (clip.arousal + 1.0) / 2.0
    f0 = 220.0 * 2.0 ** (1.5 * a01)
    amp = 10 ** ((-22.0 + 8.0 * a01) / 20.0)
    pos, neg = max(clip.valence, 0.0), max(-clip.valence, 0.0)
    sig = np.sin(2 * np.pi * f0 * t)
    sig += pos * (0.6 * np.sin(2 * np.pi * f0 * 5 / 4 * t)
                  + 0.5 * np.sin(2 * np.pi * f0 * 3 / 2 * t))
    sig += neg * 0.8 * np.sin(2 * np.pi * f0 * 16 / 15 * t)
    sig /= 1.0 + 1.1 * pos + 0.8 * neg
    trem_hz = 1.0 + 7.0 * a01
    sig *= 1.0 - 0.3 * a01 * (0.5 + 0.5 * np.sin(2 * np.pi * trem_hz * t))
    sig *= amp
    blip_len = int(0.03 * rate)
    blip = 0.2 * np.sin(2 * np.pi * 1000.0 * np.arange(blip_len) / rate) * np.hanning(blip_len)
    for s in range(0, int(duration_s) + 1):
        i0 = s * rate
        if i0 + blip_len <= n:
            sig[i0:i0 + blip_len] += blip
    fade = min(int(0.02 * rate), n // 2)
    if fade:
        env = np.linspace(0.0, 1.0, fade)
        sig[:fade] *= env
        sig[n - fade:] *= env[::-1]
    return np.clip(sig, -1.0, 1.0).astype(np.float32)


def _encode_clip(path: Path, clip: Clip, k: int, *, duration_s: float, width: int, height: int,
                 fps: int, audio_rate: int = 48000) -> None:
    import av
    import cv2

    n_frames = int(round(duration_s * fps))
    container = av.open(str(path), mode="w", format="mp4",
                        options={"movflags": "+faststart"})
    try:
        vcodec = next((c for c in ("libx264", "libopenh264", "mpeg4")
                       if c in av.codecs_available), None)
        if vcodec is None:  # pragma: no cover - PyAV wheels ship libx264
            raise StimulusError("this PyAV build has no H.264 or MPEG-4 encoder")
        opts = ({"preset": "ultrafast", "crf": "26", "g": str(fps)}
                if vcodec == "libx264" else {})
        vs = container.add_stream(vcodec, rate=fps, options=opts)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = container.add_stream("aac", rate=audio_rate, layout="mono")
        audio = _placeholder_audio(clip, duration_s=n_frames / fps, rate=audio_rate)
        a_pos, block = 0, 1024
        for i, img in enumerate(_draw_placeholder_frames(clip, k, width=width, height=height,
                                                         fps=fps, n_frames=n_frames)):
            yuv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            for packet in vs.encode(frame):
                container.mux(packet)
            # interleave audio up to the end of this video frame
            target = len(audio) if i == n_frames - 1 else int((i + 1) * audio_rate / fps)
            while a_pos < target:
                chunk = audio[a_pos:a_pos + block]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = audio_rate
                af.pts = a_pos
                for packet in aus.encode(af):
                    container.mux(packet)
                a_pos += len(chunk)
        for stream in (vs, aus):
            for packet in stream.encode():
                container.mux(packet)
    finally:
        container.close()


def make_placeholders(out_dir: Union[str, Path], *, manifest: Union[str, Path, None] = None,
                      duration_s: float = 6.0, width: int = 640, height: int = 360,
                      fps: int = 25, force: bool = False, progress=None) -> StimulusLibrary:
    """Generate one labelled placeholder clip with sound per manifest entry, and a manifest.

    Each clip is an H.264 (Constrained Baseline, yuv420p) + AAC-LC (48 kHz mono) MP4
    (``+faststart``), playable by Qt's QMediaPlayer and common players. Picture: a gradient
    whose hue, saturation and brightness follow the intended valence, moving discs whose number
    and speed follow arousal, a pulsing ring, a big ``PLACEHOLDER - <id> - <category>`` label,
    a frame counter and a white sync square during the first two frames of each second.
    Sound: pitch and loudness follow arousal, harmony follows valence, a 1 kHz blip at each
    whole second in step with the sync square (see ``_placeholder_audio``).

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created). It must be empty or hold an earlier placeholder set; with
        ``force`` an earlier *placeholder* set is replaced. A folder with a lab's (non-
        placeholder) manifest or stray videos is always refused.
    manifest : str or Path, optional
        Mirror the clips (ids, categories, intended valence/arousal) of this manifest instead of
        the built-in EMER design (``hap_01`` ... ``neu_04``).
    duration_s : float
        Length of every clip, 0.5-120 s.
    width, height : int
        Frame size (even numbers, 64-1920 x 64-1080).
    fps : int
        Frame rate, 5-60.
    force : bool
        Replace an earlier placeholder set in ``out_dir``.
    progress : callable, optional
        Called as ``progress(i, n, clip)`` after each clip.

    Returns
    -------
    StimulusLibrary
        The new library (``out_dir/manifest.toml``; ``placeholder = true``; durations and
        sha256s filled in), which :func:`check_library` accepts.
    """
    if isinstance(duration_s, bool) or not _is_number(duration_s) or not 0.5 <= duration_s <= 120:
        raise StimulusError(f"placeholder duration must be 0.5-120 s, got {duration_s!r}")
    for name, value, lo, hi in (("width", width, 64, 1920), ("height", height, 64, 1080),
                                ("fps", fps, 5, 60)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise StimulusError(f"placeholder {name} must be a whole number {lo}-{hi}, "
                                f"got {value!r}")
    if width % 2 or height % 2:
        raise StimulusError(f"placeholder frame size must be even for H.264, got "
                            f"{width}x{height}")
    try:
        import av  # noqa: F401
    except ImportError:
        raise StimulusError("generating placeholder clips needs PyAV: pip install av") from None

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StimulusError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        mpath = out / MANIFEST_NAME
        existing_placeholder = False
        if mpath.is_file():
            try:
                with open(mpath, "rb") as fh:
                    existing_placeholder = tomllib.load(fh).get("placeholder") is True
            except (OSError, tomllib.TOMLDecodeError):
                existing_placeholder = False
            if not existing_placeholder:
                raise StimulusError(f"{out} holds a stimulus library that is not a placeholder "
                                    f"set ({mpath}); refusing to write placeholders into it")
        elif _stray_videos(out, set()):
            raise StimulusError(f"{out} already holds video files; choose an empty folder")
        if not force:
            raise StimulusError(f"{out} is not empty; choose an empty folder, or pass --force "
                                f"to replace the placeholder set in it")
    out.mkdir(parents=True, exist_ok=True)

    if manifest is not None:
        source_clips = list(load_manifest(manifest).clips)
    else:
        source_clips = emer_design_clips()
    n_per: Dict[str, int] = {}
    written: List[Clip] = []
    mpath = out / MANIFEST_NAME
    if mpath.exists():
        mpath.unlink()  # a placeholder manifest (checked above); written again last
    for i, clip in enumerate(source_clips):
        k = n_per.get(clip.category, 0)
        n_per[clip.category] = k + 1
        fname = f"{clip.id}.mp4"
        final = out / fname
        tmp = out / f".{fname}.part"
        _encode_clip(tmp, clip, k, duration_s=float(duration_s), width=width, height=height,
                     fps=fps)
        os.replace(tmp, final)
        written.append(dataclasses.replace(
            clip, file=fname, duration_s=round(int(round(duration_s * fps)) / fps, 6),
            sha256=sha256_of(final),
            source=f"generated placeholder ({width}x{height} {fps} fps H.264 + AAC); "
                   f"not an emotion stimulus"))
        if progress is not None:
            progress(i + 1, len(source_clips), clip)
    per = max(n_per.values()) if n_per else 4
    write_manifest(mpath, written, clips_per_category=per, min_duration_s=0.5,
                   max_duration_s=120.0, placeholder=True,
                   title="placeholder stimuli (generated by emer-live stimuli placeholders)",
                   header="Generated placeholder clips: NOT emotion stimuli. For demos and tests "
                          "only.\nRegenerate with: emer-live stimuli placeholders --out DIR",
                   overwrite=True)
    return load_manifest(mpath)
