"""Training samples from recorded sessions: windows, labels, the window cache and participant splits.

A **sample** is one model input window (face ``(8,3,112,112)``, eye ``(32,39)``, fixation
``(32,2)`` with their masks) plus its labels and where it came from:

* ``kind="trial"``: one window over a whole stimulus presentation (``per_trial=True`` in
  :func:`emer_live.features.commands.build_session_windows`; the paper's protocol);
* ``kind="window"``: a sliding window of ``window_s`` seconds every ``hop_s`` seconds that lies
  entirely inside one stimulus presentation (windows that straddle trials are dropped).

Labels (class index ``-1`` / ``NaN`` = no label; the loss masks them):

* ER (``er7``, ``er3``, ``er_va`` = valence, arousal) from the session's ``sam.tsv``;
* FER (``fer7``, ``fer3``, ``fer_va``, ``fer_intensity``), per trial, from the first source that
  has the trial: the session's ``fer_annotations.tsv`` (format in :func:`read_fer_annotations`),
  else the synthetic truth (``truth.tsv``: the displayed expression and its intensity x 3),
  else none. ``fer_va`` comes from the annotation's ``fer_valence``/``fer_arousal`` columns when
  given, else from the Russell & Mehrabian (1977) anchors of the ``fer7`` category (ratings of
  emotion *words*, not faces - a coarse target so the live view's FER valence is defined).

Built windows are cached per session in ``SESSION/cache/windows_<tag>_<key>.npz`` (``key`` = hash of
the window parameters, the eye/face configurations and the source code of the feature modules);
a cache whose session files changed since it was written is rebuilt. Nothing else is ever
written into a session folder.

This module imports without torch; :func:`make_torch_dataset` and :func:`collate` import it
when called.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, SessionFormatError
from ..features.session_reference import reference_kind
from ..labels import ER3_CLASSES, ER7_CLASSES, ER7_TO_ER3, VA_ANCHOR_ARRAY
from ..recording.perms import PRIVATE, make_dirs

__all__ = [
    "SAMPLE_KINDS", "MODALITIES", "SampleSpec", "Samples", "find_sessions", "load_samples",
    "session_samples", "session_labels", "read_fer_annotations", "FER_ANNOTATIONS_TSV",
    "participant_folds", "split_validation", "fit_norm_stats", "normalize_inputs", "uses_reference",
    "reference_kind", "normalize_samples", "reference_available", "running_reference",
    "session_reference", "reference_from_window", "REFERENCE_KINDS", "BASELINE_REFERENCE",
    "modality_mask", "head_targets", "make_torch_dataset", "collate", "face_available",
    "CACHE_DIRNAME", "parse_modalities", "emotion_index",
]

SAMPLE_KINDS = ("trial", "sliding", "both")
REFERENCE_KINDS = ("none", "baseline", "session")
#: ``norm_stats["reference"]`` of a checkpoint trained with ``--eye-reference baseline``.
BASELINE_REFERENCE: Dict[str, Any] = {
    "kind": "session_baseline",
    "fallback_s": 60.0,
    "definition": "per feature, the mean over the valid steps of one window (32 steps, 39 eye features, "
                  "2 fixation) built over the session's baseline phase (events baseline_start..baseline_end), "
                  "else over the first fallback_s seconds of the recording; subtracted from every window's "
                  "eye and fixation values before (x - mean) / std",
}
MODALITIES = ("face", "eye", "fixation")
FER_ANNOTATIONS_TSV = "fer_annotations.tsv"
CACHE_DIRNAME = "cache"
_CACHE_VERSION = 4
N_FACE, N_STEPS, N_EYE, FACE_SIZE = 8, 32, 39, 112
_ER3_OF_7 = np.array([ER3_CLASSES.index(ER7_TO_ER3[c]) for c in ER7_CLASSES], np.int64)

#: Source files whose contents decide what a cached window holds (their hash is in the key).
_FEATURE_SOURCES = ("features/eye.py", "features/ivt.py", "features/fixation.py", "features/windows.py",
                    "features/_eye_config.py", "features/face.py", "features/_face_align.py",
                    "features/_face_cache.py", "features/commands.py")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def emotion_index(value: Any, *, what: str, where: str) -> int:
    """Index in :data:`ER7_CLASSES` of a category name (any case) or an index 0..6; -1 if empty."""
    if value is None:
        return -1
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return -1
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(ER7_CLASSES):
            return int(value)
        raise ConfigError(f"{where}: {what} index {value} is outside 0..6 ({', '.join(ER7_CLASSES)})")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return emotion_index(int(value), what=what, where=where)
    s = str(value).strip().lower()
    if s in ("", "nan", "none", "na", "-"):
        return -1
    if s.isdigit():
        return emotion_index(int(s), what=what, where=where)
    if s in ER7_CLASSES:
        return ER7_CLASSES.index(s)
    raise ConfigError(f"{where}: unknown {what} {value!r}; use one of {', '.join(ER7_CLASSES)} or 0..6")


def parse_modalities(text: Any) -> Tuple[str, ...]:
    """``"face,eye,fixation"`` (any subset, any order) -> tuple in model order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [str(s).strip().lower() for s in items if str(s).strip()]
    bad = [s for s in items if s not in MODALITIES]
    if bad or not items:
        raise ConfigError(f"--modalities {text!r}: give a comma-separated subset of {','.join(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in items)


def face_available() -> bool:
    """True when the face pipeline (``emer_live.features.face``) can be imported."""
    try:
        import emer_live.features.face  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# sample specification
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleSpec:
    """Which windows become samples.

    Parameters
    ----------
    kind : {'trial', 'sliding', 'both'}
        Whole-stimulus windows (one per presented trial), sliding windows inside stimulus
        presentations, or both.
    window_s, hop_s : float
        Sliding-window length and hop in seconds (unused for ``kind='trial'``).
    use_face : bool or None
        Build face crops; ``None`` = when the face pipeline is installed.
    """

    kind: str = "trial"
    window_s: float = 8.0
    hop_s: float = 1.0
    use_face: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.kind not in SAMPLE_KINDS:
            raise ConfigError(f"samples must be one of {', '.join(SAMPLE_KINDS)}, got {self.kind!r}")
        for name in ("window_s", "hop_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= float(v) <= 600:
                raise ConfigError(f"{name} must be a number of seconds in 0.05..600, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.use_face is not None and not isinstance(self.use_face, bool):
            raise ConfigError(f"use_face must be True, False or None, got {self.use_face!r}")

    def resolved_face(self) -> bool:
        if self.use_face is None:
            return face_available()
        if self.use_face and not face_available():
            raise ConfigError("face crops were requested but the face pipeline (emer_live.features.face) "
                              "is not installed; train without the face modality (--modalities eye,fixation)")
        return self.use_face

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["use_face"] = self.resolved_face()
        return d


# --------------------------------------------------------------------------------------------
# Samples container
# --------------------------------------------------------------------------------------------
_FIELDS: Dict[str, Tuple[Tuple[int, ...], Any]] = {
    # name: (shape after N, dtype)
    "face_row": ((), np.int64),              # row in face_bank, -1 = no face crops
    "face_mask": ((N_FACE,), bool),
    "eye": ((N_STEPS, N_EYE), np.float32),
    "eye_mask": ((N_STEPS,), bool),
    "fixation": ((N_STEPS, 2), np.float32),
    "fixation_mask": ((N_STEPS,), bool),
    "er7": ((), np.int64), "er3": ((), np.int64), "er_va": ((2,), np.float32),
    "fer7": ((), np.int64), "fer3": ((), np.int64), "fer_va": ((2,), np.float32),
    "fer_intensity": ((), np.float32),
    "masked": ((), np.int8),                 # synthetic truth: 1 masked face, 0 not, -1 unknown
    "true7": ((), np.int64),                 # synthetic truth: felt emotion, -1 unknown
    "trial": ((), np.int64),
    "t_start_us": ((), np.int64), "t_end_us": ((), np.int64),
    "valid_gaze_fraction": ((), np.float32), "face_found_fraction": ((), np.float32),
    "emer_set": ((), np.int64),              # EMER dataset split set (1..K), -1 = not EMER
    "eye_ref": ((N_EYE,), np.float32),       # the session's baseline reference (NaN = none)
    "fixation_ref": ((2,), np.float32),
    # the session's running reference at the sample's end (NaN = not enough data yet), see
    # emer_live.features.session_reference
    "eye_sref_mean": ((N_EYE,), np.float32), "eye_sref_sd": ((N_EYE,), np.float32),
    "fixation_sref_mean": ((2,), np.float32), "fixation_sref_sd": ((2,), np.float32),
    "participant": ((), str), "session": ((), str), "kind": ((), str), "fer_source": ((), str),
}


class Samples:
    """Column store of samples (numpy arrays of equal length) plus a bank of face crops.

    Attributes
    ----------
    arrays : dict of str -> numpy array
        One entry per field (see ``Samples.FIELDS``); ``face_row`` indexes ``face_bank``.
    face_bank : numpy array (M, 8, 3, 112, 112) uint8 or None
        Face crops as pixels; the model input is ``pixels / 255`` (RGB in [0, 1], exactly what the
        window builder gives the live engine).
    """

    FIELDS = tuple(_FIELDS)

    def __init__(self, arrays: Dict[str, np.ndarray], face_bank: Optional[np.ndarray] = None) -> None:
        missing = [k for k in _FIELDS if k not in arrays]
        if missing:
            raise ValueError(f"Samples: missing fields {missing}")
        n = len(arrays["trial"])
        out = {}
        for k, (shape, dtype) in _FIELDS.items():
            a = np.asarray(arrays[k])
            a = a.astype(str) if dtype is str else a.astype(dtype, copy=False)
            if a.shape != (n,) + shape:
                raise ValueError(f"Samples: field {k!r} has shape {a.shape}, expected {(n,) + shape}")
            out[k] = a
        rows = out["face_row"]
        if face_bank is None:
            if np.any(rows >= 0):
                raise ValueError("Samples: face_row refers to a face bank that is missing")
        else:
            if face_bank.ndim != 5 or face_bank.shape[1:3] != (N_FACE, 3):
                raise ValueError(f"Samples: face bank must be (M, 8, 3, H, W), got {face_bank.shape}")
            if np.any(rows >= len(face_bank)):
                raise ValueError("Samples: face_row out of range")
        self.arrays = out
        self.face_bank = face_bank

    def __len__(self) -> int:
        return len(self.arrays["trial"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def participants(self) -> List[str]:
        """Sorted distinct participant ids."""
        return sorted(set(self.arrays["participant"].tolist()))

    def subset(self, index: Any) -> "Samples":
        """Samples at ``index`` (bool mask or integer indices); the face bank is shared."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Samples({k: v[idx] for k, v in self.arrays.items()}, self.face_bank)

    def of_participants(self, participants: Iterable[str]) -> "Samples":
        return self.subset(np.isin(self.arrays["participant"], list(participants)))

    def without_faces(self) -> "Samples":
        """A copy that holds no face crops (saves memory when the face modality is not used)."""
        arrays = dict(self.arrays)
        arrays["face_row"] = np.full(len(self), -1, np.int64)
        arrays["face_mask"] = np.zeros_like(self.arrays["face_mask"])
        return Samples(arrays, None)

    def face(self, i: int) -> np.ndarray:
        """Face crops of sample ``i`` as float32 RGB in [0, 1], ``(8, 3, 112, 112)`` (zeros without one)."""
        r = int(self.arrays["face_row"][i])
        if r < 0 or self.face_bank is None:
            return np.zeros((N_FACE, 3, FACE_SIZE, FACE_SIZE), np.float32)
        return self.face_bank[r].astype(np.float32) / 255.0

    @staticmethod
    def concat(parts: Sequence["Samples"]) -> "Samples":
        """Concatenate sample sets (face banks are concatenated and rows re-indexed)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Samples.empty()
        banks, arrays, offset = [], {k: [] for k in _FIELDS}, 0
        for p in parts:
            for k in _FIELDS:
                arrays[k].append(p.arrays[k])
            rows = p.arrays["face_row"]
            if p.face_bank is not None and len(p.face_bank):
                used = np.unique(rows[rows >= 0])
                remap = np.full(len(p.face_bank), -1, np.int64)
                remap[used] = offset + np.arange(len(used))
                banks.append(p.face_bank[used])
                arrays["face_row"][-1] = np.where(rows >= 0, remap[np.maximum(rows, 0)], -1)
                offset += len(used)
        merged = {k: np.concatenate(v) for k, v in arrays.items()}
        bank = np.concatenate(banks) if banks else None
        return Samples(merged, bank)

    @staticmethod
    def empty() -> "Samples":
        arrays = {}
        for k, (shape, dtype) in _FIELDS.items():
            arrays[k] = np.zeros((0,) + shape, dtype=(np.str_ if dtype is str else dtype))
        return Samples(arrays, None)

    def summary(self) -> str:
        kinds = {k: int(np.sum(self.arrays["kind"] == k)) for k in sorted(set(self.arrays["kind"].tolist()))}
        n_face = int(np.sum(self.arrays["face_mask"].any(axis=1)))
        return (f"{len(self)} samples ({', '.join(f'{v} {k}' for k, v in kinds.items())}) from "
                f"{len(self.participants)} participants; ER label {int(np.sum(self.arrays['er7'] >= 0))}, "
                f"FER label {int(np.sum(self.arrays['fer7'] >= 0))}, with face {n_face}")


# --------------------------------------------------------------------------------------------
# finding sessions
# --------------------------------------------------------------------------------------------
def find_sessions(roots: Sequence[Any]) -> List[Path]:
    """All recorded session folders under ``roots`` (a root may itself be a session).

    Raises
    ------
    ConfigError
        A root does not exist, is not a folder, or holds no session.
    """
    from ..recording.reader import is_session_dir

    if not roots:
        raise ConfigError("no data given: pass --data ROOT (a folder of recorded sessions)")
    found: List[Path] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise ConfigError(f"--data {root}: no such folder")
        if not root.is_dir():
            raise ConfigError(f"--data {root}: not a folder; give a folder of recorded sessions")
        if is_session_dir(root):
            here = [root]
        else:
            here = []
            for dirpath, dirnames, _ in os.walk(root):
                dirnames.sort()
                if is_session_dir(dirpath):
                    here.append(Path(dirpath))
                    dirnames[:] = []  # do not descend into a session
                else:
                    dirnames[:] = [d for d in dirnames if d != CACHE_DIRNAME and not d.startswith(".")]
        if not here:
            what = "is empty" if not any(root.iterdir()) else "holds no recorded session (no folder with session.json)"
            raise ConfigError(f"--data {root}: {what}; record sessions with `emer-live session` or "
                              "`emer-live collect-synthetic`, or give an EMER dataset root")
        found.extend(here)
    seen, out = set(), []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
def read_fer_annotations(path: Any) -> Dict[int, Dict[str, Any]]:
    """Read a session's ``fer_annotations.tsv`` into per-trial FER labels.

    Format: tab-separated, UTF-8, one header row. Columns ``trial`` (the trial number of
    ``sam.tsv``/``events.tsv``) and ``fer7`` (a category name of the 7-class set, any case, or its
    index 0..6; empty = "no expression could be judged") are required; ``fer_intensity`` (0..3),
    ``annotator`` (free text; names starting with ``auto`` or ``model`` mark machine annotations),
    ``fer_valence`` and ``fer_arousal`` (-1..1) are optional. Several rows may give the same trial:
    human rows win over machine rows; among the winning rows the most frequent ``fer7`` is used
    (a tie goes to the earliest row), its rows' mean intensity / valence / arousal likewise.

    Returns
    -------
    dict trial -> {"fer7": int, "fer_intensity": float, "fer_va": (float, float) or None}
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SessionFormatError(f"{path}: cannot read FER annotations ({exc})") from None
    for col in ("trial", "fer7"):
        if col not in df.columns:
            raise SessionFormatError(f"{path}: missing column {col!r}; required: trial, fer7 "
                                     "(optional: fer_intensity, annotator, fer_valence, fer_arousal)")

    def num(v: str, col: str, line: int, lo: float, hi: float) -> float:
        v = (v or "").strip()
        if v == "" or v.lower() == "nan":
            return float("nan")
        try:
            x = float(v)
        except ValueError:
            raise SessionFormatError(f"{path}: line {line}: {col} {v!r} is not a number") from None
        if not lo <= x <= hi:
            raise SessionFormatError(f"{path}: line {line}: {col} {x} is outside {lo:g}..{hi:g}")
        return x

    rows: Dict[int, List[Dict[str, Any]]] = {}
    for i, r in enumerate(df.to_dict("records")):
        line = i + 2
        try:
            trial = int(str(r["trial"]).strip())
        except ValueError:
            raise SessionFormatError(f"{path}: line {line}: trial {r['trial']!r} is not a whole number") from None
        fer7 = emotion_index(r["fer7"], what="fer7", where=f"{path}: line {line}")
        ann = str(r.get("annotator", "") or "").strip().lower()
        rows.setdefault(trial, []).append({
            "order": i, "fer7": fer7, "auto": ann.startswith(("auto", "model")),
            "intensity": num(r.get("fer_intensity", ""), "fer_intensity", line, 0.0, 3.0),
            "valence": num(r.get("fer_valence", ""), "fer_valence", line, -1.0, 1.0),
            "arousal": num(r.get("fer_arousal", ""), "fer_arousal", line, -1.0, 1.0),
        })
    out: Dict[int, Dict[str, Any]] = {}
    for trial, rs in rows.items():
        human = [r for r in rs if not r["auto"]]
        rs = human or rs
        counts: Dict[int, int] = {}
        for r in rs:
            counts[r["fer7"]] = counts.get(r["fer7"], 0) + 1
        best = max(counts.values())
        label = next(r["fer7"] for r in rs if counts[r["fer7"]] == best)
        chosen = [r for r in rs if r["fer7"] == label]

        def mean(key: str) -> float:
            v = [r[key] for r in chosen if np.isfinite(r[key])]
            return float(np.mean(v)) if v else float("nan")

        va = (mean("valence"), mean("arousal"))
        out[trial] = {"fer7": label, "fer_intensity": mean("intensity"),
                      "fer_va": va if all(np.isfinite(va)) else None}
    return out


def _empty_label() -> Dict[str, Any]:
    return {"er7": -1, "er3": -1, "er_va": (np.nan, np.nan), "fer7": -1, "fer3": -1,
            "fer_va": (np.nan, np.nan), "fer_intensity": np.nan, "masked": -1, "true7": -1,
            "fer_source": "none"}


def session_labels(reader) -> Dict[int, Dict[str, Any]]:
    """Per-trial labels of one session (see the module docstring for the sources).

    Parameters
    ----------
    reader : SessionReader

    Returns
    -------
    dict trial -> {er7, er3, er_va, fer7, fer3, fer_va, fer_intensity, masked, true7, fer_source}
    """
    labels: Dict[int, Dict[str, Any]] = {}

    def get(trial: int) -> Dict[str, Any]:
        return labels.setdefault(int(trial), _empty_label())

    where = reader.path / "sam.tsv"
    sam = reader.sam()
    if sam is not None and len(sam):
        for col in ("trial", "er7"):
            if col not in sam.columns:
                raise SessionFormatError(f"{where}: missing column {col!r}")
        for r in sam.to_dict("records"):
            lab = get(r["trial"])
            lab["er7"] = emotion_index(r.get("er7"), what="er7", where=str(where))
            if lab["er7"] >= 0:
                lab["er3"] = int(_ER3_OF_7[lab["er7"]])
            va = (float(r.get("er_valence", np.nan)), float(r.get("er_arousal", np.nan)))
            lab["er_va"] = va

    truth = reader.truth()
    if truth is not None and len(truth) and "kind" in truth.columns:
        tpath = reader.path / "truth.tsv"
        for r in truth[truth["kind"] == "trial"].to_dict("records"):
            lab = get(r["trial"])
            lab["true7"] = emotion_index(r.get("true_emotion"), what="true_emotion", where=str(tpath))
            m = r.get("masked")
            lab["masked"] = -1 if m is None or (isinstance(m, float) and not np.isfinite(m)) else int(m)
            fer7 = emotion_index(r.get("displayed_expression"), what="displayed_expression", where=str(tpath))
            if fer7 >= 0:
                lab["fer7"] = fer7
                inten = r.get("intensity")
                lab["fer_intensity"] = float(inten) * 3.0 if inten is not None and np.isfinite(inten) else np.nan
                lab["fer_va"] = None
                lab["fer_source"] = "truth"

    ann_path = reader.path / FER_ANNOTATIONS_TSV
    if ann_path.is_file():
        for trial, a in read_fer_annotations(ann_path).items():
            lab = get(trial)
            lab["fer7"] = a["fer7"]
            lab["fer_intensity"] = a["fer_intensity"]
            lab["fer_va"] = a["fer_va"]
            lab["fer_source"] = "annotation"

    for lab in labels.values():
        if lab["fer7"] >= 0:
            lab["fer3"] = int(_ER3_OF_7[lab["fer7"]])
            if lab["fer_va"] is None:
                lab["fer_va"] = tuple(float(v) for v in VA_ANCHOR_ARRAY[lab["fer7"]])
        elif lab["fer_va"] is None:
            lab["fer_va"] = (np.nan, np.nan)
    return labels


# --------------------------------------------------------------------------------------------
# window cache
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for rel in _FEATURE_SOURCES:
        p = root / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.is_file() else b"<absent>")
    return h.hexdigest()[:16]


def _window_config(*, per_trial: bool, window_s: float, hop_s: float, use_face: bool) -> Dict[str, Any]:
    from ..features.eye import EyeConfig

    cfg: Dict[str, Any] = {"cache_version": _CACHE_VERSION, "per_trial": per_trial, "use_face": use_face,
                           "eye_config": EyeConfig().to_dict(), "code": _code_hash()}
    if not per_trial:
        cfg.update(window_s=window_s, hop_s=hop_s, in_trials_only=True)
    if use_face:
        try:
            from ..features import face as face_mod

            pipe_cfg = getattr(face_mod, "FaceConfig", None)
            cfg["face_config"] = pipe_cfg().to_dict() if pipe_cfg is not None and hasattr(pipe_cfg(), "to_dict") else None
        except Exception:  # the face module's config is optional; its source is hashed anyway
            cfg["face_config"] = None
    return cfg


def _cache_key(cfg: Dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _source_signature(path: Path) -> str:
    """What the cache must match: sizes and mtimes of the files windows are built from."""
    parts = []
    for name in ("session.json", "gaze.tsv", "events.tsv"):
        p = path / name
        if p.is_file():
            st = p.stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    for sub in ("trials", "between"):
        d = path / sub
        if d.is_dir():
            for seg in sorted(d.iterdir()):
                f = seg / "face_frames.tsv"
                if f.is_file():
                    parts.append(f"{sub}/{seg.name}:{f.stat().st_size}")
                f = seg / "face_crops.tsv"          # privacy mode: the kept crops stand in for the video
                if f.is_file():
                    parts.append(f"{sub}/{seg.name}/crops:{f.stat().st_size}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _cache_tag(*, per_trial: bool, window_s: float, hop_s: float, use_face: bool) -> str:
    """Human-readable part of a cache file name: which windows it holds (one file per tag)."""
    base = "trial" if per_trial else f"w{window_s:g}-h{hop_s:g}"
    return f"{base}-{'face' if use_face else 'noface'}"


def _session_cache_dir(session: Path, cache_dir: Optional[Path]) -> Path:
    """SESSION/cache, or a folder of its own for the session under ``cache_dir``."""
    if cache_dir is None:
        return session / CACHE_DIRNAME
    sid = hashlib.sha1(str(session.resolve()).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{session.parent.name}_{session.name}_{sid}"


def _cache_path(session: Path, key: str, cache_dir: Optional[Path], tag: str) -> Path:
    return _session_cache_dir(session, cache_dir) / f"windows_{tag}_{key}.npz"


def _face_to_uint8(face: np.ndarray, where: Path) -> np.ndarray:
    """Window face crops (RGB in [0, 1] = uint8 / 255, the model's face contract) back to the
    exact uint8 pixels, so caches and memory hold 1 byte per value and nothing is rounded."""
    face = np.asarray(face, np.float32)
    u8 = np.rint(face * 255.0)
    if face.size and (float(np.abs(u8 - face * 255.0).max()) > 1e-3 or u8.min() < 0 or u8.max() > 255):
        raise ValueError(f"{where}: window face crops are not RGB pixels / 255 in [0, 1]; the face layout "
                         "changed - update emer_live.training.dataset")
    return u8.astype(np.uint8)


_ARRAY_KEYS = ("face_mask", "eye", "eye_mask", "fixation", "fixation_mask", "t_start_us", "t_end_us", "trial",
               "valid_gaze_fraction", "face_found_fraction")


def session_windows(session: Any, *, per_trial: bool, window_s: float = 8.0, hop_s: float = 1.0,
                    use_face: bool = False, load_face: bool = True, cache: bool = True,
                    cache_dir: Optional[Any] = None, progress: Optional[Callable[[str], None]] = None
                    ) -> Dict[str, np.ndarray]:
    """Built windows of one session, from its cache when valid (else built and cached).

    Parameters
    ----------
    session : path-like
        Session folder.
    per_trial : bool
        One window per presented trial (True) or sliding windows (False).
    window_s, hop_s : float
        Sliding-window length and hop.
    use_face : bool
        Build face crops (needs the face pipeline).
    load_face : bool
        Return the face crops (``face`` uint8) - skip to save memory when they are not used.
    cache : bool
        Read/write ``SESSION/cache/windows_<tag>_<key>.npz`` (or under ``cache_dir``); a request
        without faces is also served from the cache built with faces.
    cache_dir : path-like, optional
        Keep caches here instead of inside the session folders (read-only data).

    Returns
    -------
    dict of arrays (as :func:`~emer_live.features.commands.build_session_windows`; ``face`` as
    uint8 pixels (the window's RGB [0, 1] values x 255, exact) when ``load_face`` and ``use_face``).
    """
    from ..features.commands import build_session_windows

    path = Path(session)
    cfg = _window_config(per_trial=per_trial, window_s=window_s, hop_s=hop_s, use_face=use_face)
    key = _cache_key(cfg)
    tag = _cache_tag(per_trial=per_trial, window_s=window_s, hop_s=hop_s, use_face=use_face)
    cpath = _cache_path(path, key, None if cache_dir is None else Path(cache_dir), tag)
    signature = _source_signature(path)
    candidates = [(cpath, False)]
    if not use_face:  # the eye/fixation arrays of a cache built with faces are the same
        fcfg = _window_config(per_trial=per_trial, window_s=window_s, hop_s=hop_s, use_face=True)
        ftag = _cache_tag(per_trial=per_trial, window_s=window_s, hop_s=hop_s, use_face=True)
        candidates.append((_cache_path(path, _cache_key(fcfg), None if cache_dir is None else Path(cache_dir), ftag),
                           True))
    for cand, drop_face in candidates if cache else []:
        if not cand.is_file():
            continue
        try:
            with np.load(cand, allow_pickle=False) as z:
                if str(z["_signature"]) == signature:
                    out = {k: z[k] for k in _ARRAY_KEYS}
                    if drop_face:
                        out["face_mask"] = np.zeros_like(out["face_mask"])
                        out["face_found_fraction"] = np.zeros_like(out["face_found_fraction"])
                    elif use_face and load_face:
                        out["face"] = z["face"]
                    return out
        except (OSError, ValueError, KeyError, EOFError) as exc:  # a damaged cache is rebuilt
            if progress:
                progress(f"{cand}: unreadable cache ({exc}); rebuilding")
    if progress:
        progress(f"building {'whole-trial' if per_trial else 'sliding'} windows of {path}")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # build_session_windows prints warnings on stdout
        arrays = build_session_windows(str(path), window_s=window_s, hop_s=hop_s, per_trial=per_trial,
                                       use_face=use_face)
    if not per_trial:
        # every window is built (the stateful face pipeline must see the session's frames in order,
        # as live), but only those inside a stimulus presentation are kept and cached
        keep = np.asarray(arrays["trial"]) >= 0
        if not keep.any():
            raise ConfigError(f"{path}: no {window_s:g} s window fits inside a stimulus presentation")
        arrays = {k: np.asarray(v)[keep] for k, v in arrays.items()}
    for line in buf.getvalue().splitlines():
        if line.strip():
            _log(line.strip())
    out = {k: np.asarray(arrays[k]) for k in _ARRAY_KEYS}
    face = _face_to_uint8(arrays["face"], path) if use_face else None
    if cache:
        try:
            make_dirs(cpath.parent, PRIVATE)   # a participant's face and gaze windows: private (docs/data-rights.md)
            tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}.tmp.npz")
            payload = dict(out)
            if face is not None:
                payload["face"] = face
            payload["_signature"] = np.array(signature)
            payload["_config"] = np.array(json.dumps(cfg, sort_keys=True, default=str))
            np.savez(tmp, **payload)
            os.chmod(tmp, PRIVATE.file)
            os.replace(tmp, cpath)
            # caches of the same windows made by older code or configurations are stale: remove them
            for old in cpath.parent.glob(f"windows_{tag}_*.npz"):
                if old != cpath:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(f"could not write the window cache {cpath} ({exc}); windows are rebuilt next time "
                          "(use --cache-dir for read-only data)", stacklevel=2)
    if use_face and load_face:
        out["face"] = face
    return out


# --------------------------------------------------------------------------------------------
# samples of a session
# --------------------------------------------------------------------------------------------
def _window_samples(win: Dict[str, np.ndarray], keep: np.ndarray, *, kind: str, labels: Dict[int, Dict[str, Any]],
                    participant: str, session: str, face_offset: int) -> Tuple[Dict[str, np.ndarray], Optional[np.ndarray]]:
    idx = np.flatnonzero(keep)
    n = len(idx)
    trials = win["trial"][idx]
    labs = [labels.get(int(t), _empty_label()) for t in trials]
    face = win.get("face")
    has_face = win["face_mask"][idx].any(axis=1)
    rows = np.full(n, -1, np.int64)
    bank = None
    if face is not None and has_face.any():
        rows[has_face] = face_offset + np.arange(int(has_face.sum()))
        bank = face[idx[has_face]]
    arrays = {
        "face_row": rows, "face_mask": win["face_mask"][idx], "eye": win["eye"][idx],
        "eye_mask": win["eye_mask"][idx], "fixation": win["fixation"][idx],
        "fixation_mask": win["fixation_mask"][idx],
        "er7": np.array([l["er7"] for l in labs], np.int64), "er3": np.array([l["er3"] for l in labs], np.int64),
        "er_va": np.array([l["er_va"] for l in labs], np.float32).reshape(n, 2),
        "fer7": np.array([l["fer7"] for l in labs], np.int64), "fer3": np.array([l["fer3"] for l in labs], np.int64),
        "fer_va": np.array([l["fer_va"] for l in labs], np.float32).reshape(n, 2),
        "fer_intensity": np.array([l["fer_intensity"] for l in labs], np.float32),
        "masked": np.array([l["masked"] for l in labs], np.int8),
        "true7": np.array([l["true7"] for l in labs], np.int64),
        "trial": trials, "t_start_us": win["t_start_us"][idx], "t_end_us": win["t_end_us"][idx],
        "valid_gaze_fraction": win["valid_gaze_fraction"][idx].astype(np.float32),
        "face_found_fraction": win["face_found_fraction"][idx].astype(np.float32),
        "emer_set": np.full(n, -1, np.int64),
        "eye_ref": np.full((n, N_EYE), np.nan, np.float32), "fixation_ref": np.full((n, 2), np.nan, np.float32),
        "eye_sref_mean": np.full((n, N_EYE), np.nan, np.float32), "eye_sref_sd": np.full((n, N_EYE), np.nan, np.float32),
        "fixation_sref_mean": np.full((n, 2), np.nan, np.float32),
        "fixation_sref_sd": np.full((n, 2), np.nan, np.float32),
        "participant": np.array([participant] * n, dtype=str), "session": np.array([session] * n, dtype=str),
        "kind": np.array([kind] * n, dtype=str), "fer_source": np.array([l["fer_source"] for l in labs], dtype=str),
    }
    return arrays, bank


def reference_from_window(eye: np.ndarray, eye_mask: np.ndarray, fixation: np.ndarray,
                          fixation_mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The baseline reference of one window: per-feature mean over its valid steps
    (``(39,)``, ``(2,)``; NaN where nothing is valid). The live engine computes it the same way
    from a window over the baseline phase (see :data:`BASELINE_REFERENCE`)."""
    import warnings as _w

    out = []
    for x, m in ((eye, eye_mask), (fixation, fixation_mask)):
        x = np.asarray(x, np.float64)
        m = np.asarray(m, bool)
        with _w.catch_warnings():
            _w.simplefilter("ignore", RuntimeWarning)
            out.append(np.nanmean(np.where(m[:, None], x, np.nan), axis=0).astype(np.float32))
    return out[0], out[1]


def session_reference(reader, *, fallback_s: float = BASELINE_REFERENCE["fallback_s"]
                      ) -> Tuple[np.ndarray, np.ndarray, str]:
    """Baseline reference of a session: ``(eye_ref (39,), fixation_ref (2,), span description)``.

    The span is the session's baseline phase (``baseline_start``..``baseline_end`` in
    ``events.tsv``), else the first ``fallback_s`` seconds of its gaze data. NaN when the span
    holds no valid gaze.
    """
    from ..features.windows import RecordingSource, WindowBuilder, WindowSpec

    ev = reader.events()
    b0 = next((e["t_us"] for e in ev if e["kind"] == "baseline_start"), None)
    b1 = next((e["t_us"] for e in ev if e["kind"] == "baseline_end" and (b0 is None or e["t_us"] > b0)), None)
    src = RecordingSource(reader)
    if b0 is not None and b1 is not None and b1 > b0:
        span = "baseline"
    else:
        try:
            t_first, _ = src.t_range
        except ConfigError:
            return np.full(N_EYE, np.nan, np.float32), np.full(2, np.nan, np.float32), "none"
        b0, b1, span = t_first, t_first + int(fallback_s * 1e6), f"first {fallback_s:g} s"
    if not reader.has_gaze():
        return np.full(N_EYE, np.nan, np.float32), np.full(2, np.nan, np.float32), "none"
    w = WindowBuilder(src, spec=WindowSpec(window_s=min(600.0, max(0.5, (b1 - b0) / 1e6)), hop_s=1.0),
                      use_face=False).build(b1, t_start_us=b0)
    eye_ref, fix_ref = reference_from_window(w.eye, w.eye_mask, w.fixation, w.fixation_mask)
    return eye_ref, fix_ref, span


def running_reference(reader, t_ends_us: np.ndarray) -> Dict[str, np.ndarray]:
    """The session's running eye reference (:mod:`emer_live.features.session_reference`) at each
    sample end; its grid starts at the live engine's origin when the session ran one (so live and
    offline use the same reference windows), else at the first gaze sample."""
    from ..features.session_reference import REFERENCE_WINDOW_S, reference_series
    from ..features.windows import RecordingSource, WindowBuilder, WindowSpec

    n = len(t_ends_us)
    empty = {f"{m}_{k}": np.full((n, N_EYE if m == "eye" else 2), np.nan, np.float32)
             for m in ("eye", "fixation") for k in ("mean", "sd")}
    if not reader.has_gaze():
        return empty
    src = RecordingSource(reader)
    try:
        t_first, _ = src.t_range
    except ConfigError:
        return empty
    live = reader.meta.get("live") if isinstance(reader.meta.get("live"), dict) else {}
    origin = int(live.get("t_origin_us", t_first))
    builder = WindowBuilder(src, spec=WindowSpec(window_s=REFERENCE_WINDOW_S, hop_s=REFERENCE_WINDOW_S),
                            use_face=False)
    return reference_series(builder, origin, t_ends_us)


_REFERENCE_SOURCES = ("features/session_reference.py", "features/normalise.py", "training/dataset.py")


@functools.lru_cache(maxsize=1)
def _reference_code_key() -> str:
    """Hash of the code the eye references come from (read once per process, not per session)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1(_code_hash().encode())
    for rel in _REFERENCE_SOURCES:
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:12]


def _session_references(reader, t_ends_us: np.ndarray, *, cache: bool, cache_dir: Optional[Any]
                        ) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Baseline reference and running reference at ``t_ends_us`` of one session, from
    ``cache/reference_<ends>_<key>.npz`` when valid: the running reference reads the whole
    session's gaze (a few seconds per session), which every training run would otherwise repeat."""
    key = _reference_code_key()
    ends = hashlib.sha1(np.ascontiguousarray(t_ends_us, np.int64).tobytes()).hexdigest()[:10]
    cpath = _session_cache_dir(reader.path, None if cache_dir is None else Path(cache_dir)) / f"reference_{ends}_{key}.npz"
    signature = _source_signature(reader.path)
    names = ("eye_mean", "eye_sd", "fixation_mean", "fixation_sd")
    if cache and cpath.is_file():
        try:
            with np.load(cpath, allow_pickle=False) as z:
                if str(z["_signature"]) == signature and np.array_equal(z["t_end_us"], t_ends_us):
                    return z["eye_ref"], z["fixation_ref"], {k: z[k] for k in names}
        except (OSError, ValueError, KeyError, EOFError):  # damaged: recompute
            pass
    eye_ref, fix_ref, _span = session_reference(reader)
    sref = running_reference(reader, t_ends_us)
    if cache:
        try:
            make_dirs(cpath.parent, PRIVATE)
            tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, eye_ref=eye_ref, fixation_ref=fix_ref, t_end_us=np.asarray(t_ends_us, np.int64),
                     _signature=np.array(signature), **sref)
            os.chmod(tmp, PRIVATE.file)
            os.replace(tmp, cpath)
            for old in cpath.parent.glob(f"reference_{ends}_*.npz"):   # made by older code
                if old != cpath:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(f"could not write the reference cache {cpath} ({exc}); it is recomputed next time",
                          stacklevel=2)
    return eye_ref, fix_ref, sref


def session_samples(session: Any, spec: SampleSpec, *, load_face: bool = True, cache: bool = True,
                    cache_dir: Optional[Any] = None, progress: Optional[Callable[[str], None]] = None) -> Samples:
    """Samples of one recorded session (see the module docstring).

    Only windows inside a presented stimulus (``trial >= 0``) become samples. The participant
    id is ``session.json``'s ``participant``.
    """
    from ..recording.reader import SessionReader

    reader = SessionReader(session)
    participant = str(reader.meta.get("participant") or "")
    if not participant:
        raise SessionFormatError(f"{reader.path}/session.json: no participant id; cannot split by participant")
    sid = str(reader.meta.get("session_id") or reader.path.name)
    labels = session_labels(reader)
    use_face = spec.resolved_face()
    parts_arrays, banks, offset = [], [], 0
    jobs = []
    if spec.kind in ("trial", "both"):
        jobs.append(("trial", True))
    if spec.kind in ("sliding", "both"):
        jobs.append(("window", False))
    intervals = [iv for iv in reader.stimulus_intervals() if iv["offset_us"] is not None]
    if not intervals:
        warnings.warn(f"{reader.path}: no presented trials (no stimulus onset/offset); it gives no samples",
                      stacklevel=2)
        return Samples.empty()
    for kind, per_trial in jobs:
        try:
            win = session_windows(reader.path, per_trial=per_trial, window_s=spec.window_s, hop_s=spec.hop_s,
                                  use_face=use_face, load_face=load_face, cache=cache, cache_dir=cache_dir,
                                  progress=progress)
        except ConfigError as exc:
            if per_trial:
                raise
            if progress:  # e.g. a session shorter than one window
                progress(f"{reader.path}: no sliding windows ({exc})")
            continue
        keep = win["trial"] >= 0
        arrays, bank = _window_samples(win, keep, kind=kind, labels=labels, participant=participant, session=sid,
                                       face_offset=offset)
        parts_arrays.append(arrays)
        if bank is not None:
            banks.append(bank)
            offset += len(bank)
    if not parts_arrays:
        return Samples.empty()
    eye_ref, fix_ref, sref = _session_references(reader, np.concatenate([a["t_end_us"] for a in parts_arrays]),
                                                 cache=cache, cache_dir=cache_dir)
    start = 0
    for a in parts_arrays:
        n = len(a["trial"])
        a["eye_ref"] = np.tile(eye_ref, (n, 1))
        a["fixation_ref"] = np.tile(fix_ref, (n, 1))
        for name in ("eye", "fixation"):
            a[f"{name}_sref_mean"] = sref[f"{name}_mean"][start:start + n]
            a[f"{name}_sref_sd"] = sref[f"{name}_sd"][start:start + n]
        start += n
    merged = {k: np.concatenate([a[k] for a in parts_arrays]) for k in _FIELDS}
    return Samples(merged, np.concatenate(banks) if banks else None)


def load_samples(roots: Sequence[Any], spec: SampleSpec, *, load_face: bool = True, cache: bool = True,
                 cache_dir: Optional[Any] = None, progress: Optional[Callable[[str], None]] = None,
                 emer_layout: Optional[Any] = None) -> Samples:
    """Samples of every session under ``roots`` (and of EMER dataset roots).

    A root holding the EMER dataset layout (see :mod:`emer_live.training.emer_dataset`) is read
    by the EMER loader; any other root is searched for recorded sessions.

    Raises
    ------
    ConfigError
        A root is missing or empty, holds no session, or no sample at all was found.
    """
    from .emer_dataset import is_emer_root, load_emer_samples

    if not roots:
        raise ConfigError("no data given: pass --data ROOT (a folder of recorded sessions or an EMER root)")
    parts = []
    for root in roots:
        if Path(root).is_dir() and is_emer_root(root):
            parts.append(load_emer_samples(root, layout=emer_layout, load_face=load_face, progress=progress))
            continue
        for s in find_sessions([root]):
            parts.append(session_samples(s, spec, load_face=load_face, cache=cache, cache_dir=cache_dir,
                                         progress=progress))
    out = Samples.concat(parts)
    if not len(out):
        raise ConfigError(f"--data {' '.join(map(str, roots))}: no samples (no presented trials with data); "
                          "check that the sessions ran their stimuli")
    return out


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
def participant_folds(participants: Sequence[str], k: int, *, seed: int = 0) -> List[List[str]]:
    """Grouped K-fold: the test participants of each of ``k`` folds.

    Participants are shuffled with ``seed`` and dealt into ``k`` groups whose sizes differ by at
    most one; every participant is in exactly one test group.
    """
    people = sorted(set(str(p) for p in participants))
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"--folds must be an integer >= 2 for cross-validation, got {k!r}")
    if k > len(people):
        raise ConfigError(f"--folds {k}: only {len(people)} participant(s) in the data; "
                          f"use --folds {len(people)} or fewer (splits are by participant)")
    order = np.random.default_rng(seed).permutation(len(people))
    return [sorted(people[i] for i in order[f::k]) for f in range(k)]


def split_validation(participants: Sequence[str], *, fraction: float = 0.15, seed: int = 0
                     ) -> Tuple[List[str], List[str]]:
    """Split training participants into (train, validation) for early stopping.

    At least one participant goes to validation when there are two or more; with one
    participant the validation list is empty (no early stopping possible).
    """
    people = sorted(set(str(p) for p in participants))
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction!r}")
    if len(people) < 2 or fraction == 0.0:
        return people, []
    n_val = min(len(people) - 1, max(1, int(round(fraction * len(people)))))
    order = np.random.default_rng(seed + 7919).permutation(len(people))
    val = sorted(people[i] for i in order[:n_val])
    return sorted(set(people) - set(val)), val


# --------------------------------------------------------------------------------------------
# normalisation, masks and targets
# --------------------------------------------------------------------------------------------
def fit_norm_stats(samples: Samples, *, reference: str = "none") -> Dict[str, Any]:
    """Eye and fixation statistics of ``samples`` as stored in checkpoints (``norm_stats``).

    ``std`` is the divisor actually applied (the fitted standard deviation, or 1 for features
    that are (nearly) constant in the data, see :class:`~emer_live.features.normalise.FeatureStats`);
    ``fitted_std``, ``count`` and ``std_floor`` are kept beside it.

    With ``reference="baseline"`` the statistics are those of the baseline-referenced features
    (each session's :func:`session_reference` subtracted) and ``norm_stats["reference"]`` says
    so (:data:`BASELINE_REFERENCE`); with ``reference="session"`` those of the features z-scored
    by the session's running reference (:mod:`emer_live.features.session_reference`, samples
    without one left out). Whoever feeds the model must apply the same reference.
    """
    from ..features.eye import EYE_FEATURE_NAMES
    from ..features.normalise import FeatureStats
    from ..features.session_reference import SESSION_REFERENCE

    if not len(samples):
        raise ConfigError("cannot fit normalisation statistics on zero samples")
    if reference not in REFERENCE_KINDS:
        raise ConfigError(f"eye reference must be one of {', '.join(REFERENCE_KINDS)}, got {reference!r}")
    out: Dict[str, Any] = {}
    if reference == "baseline":
        _check_refs(samples)
        out["reference"] = dict(BASELINE_REFERENCE)
    elif reference == "session":
        has = _has_session_ref(samples)
        if not has.any():
            raise ConfigError("no sample has a running session reference (sessions without gaze, or EMER data); "
                              "use --eye-reference none")
        out["reference"] = dict(SESSION_REFERENCE)
    for name, names in (("eye", EYE_FEATURE_NAMES), ("fixation", ("x", "y"))):
        x, m = samples[name], samples[f"{name}_mask"]
        if reference == "baseline":
            x = x - samples[f"{name}_ref"][:, None, :]
        elif reference == "session":
            x = _apply_session_ref(samples, name)
            m = m & has[:, None]
        if not m.any():  # no valid step at all (e.g. face-only data): identity
            n = x.shape[-1]
            out[name] = {"mean": [0.0] * n, "std": [1.0] * n, "fitted_std": [1.0] * n, "count": [0] * n,
                         "names": list(names)}
            continue
        try:
            st = FeatureStats.fit([x], masks=[m], names=names)
        except ValueError:  # a feature never finite: fit what is, centre nothing for the rest
            xx = np.where(np.isfinite(x), x, np.nan)
            mean = np.nan_to_num(np.nanmean(xx[m], axis=0))
            std = np.nan_to_num(np.nanstd(xx[m], axis=0))
            st = FeatureStats(mean=mean, std=std, count=np.isfinite(xx[m]).sum(axis=0), names=names)
        d = st.to_dict()
        out[name] = {"mean": d["mean"], "std": [float(v) for v in st.scale], "fitted_std": d["std"],
                     "count": d["count"], "std_floor": d["std_floor"], "names": d["names"]}
    return out


def uses_reference(norm_stats: Dict[str, Any]) -> bool:
    """True when a checkpoint's ``norm_stats`` expect baseline-referenced eye/fixation inputs."""
    return reference_kind(norm_stats) == "baseline"


def _has_session_ref(samples: Samples) -> np.ndarray:
    return (np.isfinite(samples["eye_sref_mean"]).all(axis=1) & np.isfinite(samples["eye_sref_sd"]).all(axis=1)
            & np.isfinite(samples["fixation_sref_mean"]).all(axis=1)
            & np.isfinite(samples["fixation_sref_sd"]).all(axis=1))


def _apply_session_ref(samples: Samples, name: str) -> np.ndarray:
    from ..features.session_reference import apply_reference

    mean = np.nan_to_num(samples[f"{name}_sref_mean"], nan=0.0)
    sd = np.nan_to_num(samples[f"{name}_sref_sd"], nan=1.0)
    return apply_reference(samples[name], mean, sd)


def _check_refs(samples: Samples) -> None:
    bad = ~np.isfinite(samples["eye_ref"]).all(axis=1) | ~np.isfinite(samples["fixation_ref"]).all(axis=1)
    if bad.any():
        where = sorted(set(samples["session"][bad].tolist()))[:3]
        raise ConfigError(f"{int(bad.sum())} sample(s) have no baseline reference (e.g. sessions {', '.join(where)}: "
                          "no valid gaze in the baseline / first seconds, or EMER data); use --eye-reference none")


def normalize_inputs(eye: np.ndarray, fixation: np.ndarray, norm_stats: Dict[str, Any], *,
                     eye_ref: Optional[np.ndarray] = None, fixation_ref: Optional[np.ndarray] = None
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """``(x - reference - mean) / std`` with the stored statistics, then NaN/inf -> 0.

    Without a reference in ``norm_stats`` this is exactly what
    :meth:`emer_live.model.LoadedModel.normalize` computes. With one (:func:`uses_reference`),
    ``eye_ref`` ``(..., 39)`` and ``fixation_ref`` ``(..., 2)`` - the session's
    :func:`session_reference` per sample - are subtracted first (required). For a running
    session reference use :func:`normalize_samples`.
    """
    refs = {"eye": eye_ref, "fixation": fixation_ref}
    if reference_kind(norm_stats) == "session":
        raise ConfigError("this checkpoint expects inputs z-scored by the running session reference; "
                          "use normalize_samples")
    if uses_reference(norm_stats) and (eye_ref is None or fixation_ref is None):
        raise ConfigError("this checkpoint expects baseline-referenced inputs (norm_stats.reference) but no "
                          "reference was given")
    out = []
    for name, x in (("eye", eye), ("fixation", fixation)):
        if uses_reference(norm_stats):
            ref = np.asarray(refs[name], dtype=np.float32)
            if not np.isfinite(ref).all():
                raise ConfigError("baseline reference missing (NaN) for some samples; the checkpoint needs one")
            x = np.asarray(x, dtype=np.float32) - (ref[:, None, :] if ref.ndim == 2 else ref)
        out.append(_global_norm(x, norm_stats[name]))
    return out[0], out[1]


def _global_norm(x: np.ndarray, stats: Dict[str, Any]) -> np.ndarray:
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    y = ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32)
    return np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)


def normalize_samples(samples: Samples, norm_stats: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Model-ready eye and fixation inputs of ``samples`` for a checkpoint's ``norm_stats``,
    whatever reference it uses (samples without a needed running reference get zeros; see
    :func:`reference_available`)."""
    if reference_kind(norm_stats) != "session":
        return normalize_inputs(samples["eye"], samples["fixation"], norm_stats,
                                eye_ref=samples["eye_ref"], fixation_ref=samples["fixation_ref"])
    has = _has_session_ref(samples)
    out = []
    for name in ("eye", "fixation"):
        y = _global_norm(_apply_session_ref(samples, name), norm_stats[name])
        y[~has] = 0.0
        out.append(y)
    return out[0], out[1]


def reference_available(samples: Samples, norm_stats: Optional[Dict[str, Any]]) -> np.ndarray:
    """``(N,)`` bool: the eye reference the checkpoint needs exists for the sample (always True
    without a running session reference)."""
    if norm_stats is None or reference_kind(norm_stats) != "session":
        return np.ones(len(samples), bool)
    return _has_session_ref(samples)


def modality_mask(samples: Samples, modalities: Sequence[str] = MODALITIES,
                  norm_stats: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """``(N, 3)`` bool: face / eye / fixation present in a sample and selected (and, for a
    checkpoint on the running session reference, eyes only where that reference exists)."""
    sel = np.array([m in modalities for m in MODALITIES], bool)
    ref = reference_available(samples, norm_stats)
    present = np.stack([samples["face_mask"].any(axis=1) & (samples["face_row"] >= 0),
                        samples["eye_mask"].any(axis=1) & ref, samples["fixation_mask"].any(axis=1) & ref], axis=1)
    return present & sel[None, :]


def head_targets(samples: Samples, heads: Sequence[str]) -> Dict[str, np.ndarray]:
    """Targets per head (``-1``/``NaN`` = missing) in the shapes :func:`emert_loss` takes."""
    out: Dict[str, np.ndarray] = {}
    for h in heads:
        fam = "fer" if h.startswith("fer") else "er"
        if h.endswith(("7", "3")):
            out[h] = samples[h].astype(np.int64)
        elif h.endswith("_va"):
            out[h] = samples[f"{fam}_va"].astype(np.float32)
        elif h.endswith("_valence"):
            out[h] = samples[f"{fam}_va"][:, 0].astype(np.float32)
        elif h.endswith("_arousal"):
            out[h] = samples[f"{fam}_va"][:, 1].astype(np.float32)
        elif h == "fer_intensity":
            out[h] = samples["fer_intensity"].astype(np.float32)
        else:
            raise ConfigError(f"no labels for head {h!r}")
    return out


def has_any_target(targets: Dict[str, np.ndarray]) -> np.ndarray:
    """``(N,)`` bool: the sample has a label for at least one head."""
    n = len(next(iter(targets.values())))
    ok = np.zeros(n, bool)
    for t in targets.values():
        ok |= (t >= 0) if t.dtype.kind in "iu" else np.isfinite(t).reshape(n, -1).any(axis=1)
    return ok


# --------------------------------------------------------------------------------------------
# torch glue (imports torch lazily)
# --------------------------------------------------------------------------------------------
def make_torch_dataset(samples: Samples, *, heads: Sequence[str], norm_stats: Dict[str, Any],
                       modalities: Sequence[str] = MODALITIES, face_override: Optional[np.ndarray] = None):
    """A ``torch.utils.data.Dataset`` over ``samples``; items are dicts of tensors.

    Item keys: ``face`` (8,3,112,112) float32 (zeros without a face; or the row of
    ``face_override`` when given, e.g. cached frozen-encoder activations), ``eye`` (32,39),
    ``fixation`` (32,2) normalised, ``modality_mask`` (3,) bool, ``index`` (int64) and one target
    per head.
    """
    from ._torchdata import WindowDataset

    return WindowDataset(samples, heads=heads, norm_stats=norm_stats, modalities=modalities,
                         face_override=face_override)


def collate(items):
    """Stack a list of dataset items into a batch dict."""
    from ._torchdata import collate as _collate

    return _collate(items)
