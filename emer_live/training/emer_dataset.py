"""Samples from the official EMER dataset layout (for labs that hold an EMER licence).

The EMER dataset (Liu et al., "Smile on the Face, Sadness in the Eyes", IEEE TMM 2025) is
distributed on request; its public description lists an ``eye_movement`` folder (numeric eye
tables exported from Tobii Pro Lab), ``face video`` and ``face_light_align`` (light-normalised,
aligned face images) folders, an ``EMER_label.xlsx`` label sheet and an ``emer_set.txt`` split.
The exact file and column names are not public, so this loader reads a **declared layout**:
defaults below, overridden by ``emer_layout.json`` in the dataset root (or ``--emer-layout
FILE``). The layout, column-map syntax and defaults are documented in ``docs/training.md``.

Default layout (relative to the root)::

    labels/EMER_label.csv          label sheet (.csv, .tsv; .xlsx only when openpyxl is installed)
    labels/emer_set.txt            split: "<ID> <set>" per line, or "set<k>" headers followed by IDs
    data/eye_movement/<ID>.csv     one eye table per sample (.csv, .tsv, .xlsx)
    data/face_light_align/<ID>/    aligned face images of the sample (also .../set<k>/<ID>/)
    data/face_video/<ID>.mp4       used when there are no aligned images (.avi, .mov, .mkv too)

Per sample: the eye table's rows are mapped onto the 39 features of
:data:`~emer_live.features.eye.EYE_FEATURE_NAMES` through ``eye_columns`` and averaged into 32
equal row bins (as the official loader splits rows into 32 groups); fixation = the mapped
fixation point (0..1) per bin; 8 face images from the centres of 8 equal bins of the image
list (or of the video's frames), resized to 112 x 112 RGB, fed to the model as pixels / 255 like
the live face crops.
Features the map cannot fill are 0 for every sample (they carry no information) and are listed.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from ..labels import ER3_CLASSES, ER7_CLASSES, ER7_TO_ER3

__all__ = ["DEFAULT_LAYOUT", "LAYOUT_FILE", "is_emer_root", "read_layout", "read_emer_split",
           "read_label_sheet", "map_eye_table", "load_emer_samples", "openpyxl_available"]

LAYOUT_FILE = "emer_layout.json"
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")
_VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv")
_TABLE_EXT = (".csv", ".tsv", ".txt", ".xlsx")

_SYNONYMS = {"happy": "happiness", "happiness": "happiness", "joy": "happiness", "sad": "sadness",
             "sadness": "sadness", "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
             "surprise": "surprise", "surprised": "surprise", "disgust": "disgust", "disgusted": "disgust",
             "anger": "anger", "angry": "anger", "neutral": "neutral", "calm": "neutral"}


def _alt(*specs: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(specs)


_W = {"divide_by": "width"}
_H = {"divide_by": "height"}
_VALID = {"map": {"valid": 1, "invalid": 0, "1": 1, "0": 0}}

#: Built-in layout: Tobii Pro Lab export column names (older plain names first, then the
#: bracketed-unit names of newer Pro Lab versions). Check them against your files.
DEFAULT_LAYOUT: Dict[str, Any] = {
    "label_file": ["labels/EMER_label.csv", "labels/EMER_label.tsv", "labels/EMER_label.xlsx",
                   "EMER_label.csv", "EMER_label.xlsx"],
    "split_file": ["labels/emer_set.txt", "emer_set.txt"],
    "eye_dir": ["data/eye_movement", "eye_movement"],
    "face_dir": ["data/face_light_align", "face_light_align"],
    "video_dir": ["data/face_video", "data/face video", "face_video", "face video"],
    "screen": [1920, 1080],
    "class_order": list(ER7_CLASSES),
    "labels": {
        "id": "ID",
        "participant": "Participant",
        "participant_regex": r"^(\d+)_",
        "er7": ["ER_7", "ER7", "Emotion"],
        "er3": ["ER_3", "ER3"],
        "er_valence": ["ER_Valence", "Valence"],
        "er_arousal": ["ER_Arousal", "Arousal"],
        "fer7": ["FER_7", "FER7"],
        "fer3": ["FER_3", "FER3"],
        "fer_valence": ["FER_Valence"],
        "fer_arousal": ["FER_Arousal"],
        "fer_intensity": ["FER_Intensity", "Intensity"],
    },
    "eye_columns": {
        "gaze_display_mean_x": _alt({"column": "Gaze point X", **_W}, {"column": "Gaze point X [DACS px]", **_W}),
        "gaze_display_mean_y": _alt({"column": "Gaze point Y", **_H}, {"column": "Gaze point Y [DACS px]", **_H}),
        "gaze_display_left_x": _alt({"column": "Gaze point left X", **_W},
                                    {"column": "Gaze point left X [DACS px]", **_W}),
        "gaze_display_left_y": _alt({"column": "Gaze point left Y", **_H},
                                    {"column": "Gaze point left Y [DACS px]", **_H}),
        "gaze_display_right_x": _alt({"column": "Gaze point right X", **_W},
                                     {"column": "Gaze point right X [DACS px]", **_W}),
        "gaze_display_right_y": _alt({"column": "Gaze point right Y", **_H},
                                     {"column": "Gaze point right Y [DACS px]", **_H}),
        **{f"gaze_ucs_{eye}_{ax}": _alt({"column": f"Gaze point {eye} {ax.upper()} (DACSmm)"},
                                        {"column": f"Gaze point {eye} {ax.upper()} [DACS mm]"})
           for eye in ("left", "right") for ax in ("x", "y", "z")},
        **{f"origin_ucs_{eye}_{ax}": _alt({"column": f"Eye position {eye} {ax.upper()} (DACSmm)"},
                                          {"column": f"Eye position {eye} {ax.upper()} [DACS mm]"})
           for eye in ("left", "right") for ax in ("x", "y", "z")},
        **{f"direction_{eye}_{ax}": _alt({"column": f"Gaze direction {eye} {ax.upper()}"})
           for eye in ("left", "right") for ax in ("x", "y", "z")},
        "pupil_left": _alt({"column": "Pupil diameter left"}, {"column": "Pupil diameter left [mm]"}),
        "pupil_right": _alt({"column": "Pupil diameter right"}, {"column": "Pupil diameter right [mm]"}),
        "pupil_fluctuation_left": {"derive": "diff", "of": "pupil_left"},
        "pupil_fluctuation_right": {"derive": "diff", "of": "pupil_right"},
        "validity_gaze_left": _alt({"column": "Validity left", **_VALID}),
        "validity_gaze_right": _alt({"column": "Validity right", **_VALID}),
        "validity_pupil_left": _alt({"column": "Validity left", **_VALID}),
        "validity_pupil_right": _alt({"column": "Validity right", **_VALID}),
        "validity_origin_left": _alt({"column": "Validity left", **_VALID}),
        "validity_origin_right": _alt({"column": "Validity right", **_VALID}),
        "event_fixation": _alt({"column": "Eye movement type", "equals": "Fixation"}),
        "event_saccade": _alt({"column": "Eye movement type", "equals": "Saccade"}),
        "event_blink_other": _alt({"column": "Eye movement type", "not_in": ["Fixation", "Saccade"]}),
        "event_duration": _alt({"column": "Gaze event duration"}, {"column": "Gaze event duration [ms]"}),
        "gaze_velocity": _alt({"column": "Gaze velocity"}, {"column": "Gaze velocity [deg/s]"}),
    },
    "fixation": {
        "x": _alt({"column": "Fixation point X", **_W}, {"column": "Fixation point X [DACS px]", **_W},
                  {"column": "Gaze point X", **_W}, {"column": "Gaze point X [DACS px]", **_W}),
        "y": _alt({"column": "Fixation point Y", **_H}, {"column": "Fixation point Y [DACS px]", **_H},
                  {"column": "Gaze point Y", **_H}, {"column": "Gaze point Y [DACS px]", **_H}),
    },
    "face_video_pipeline": False,
}


def openpyxl_available() -> bool:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        return False
    return True


def _first_existing(root: Path, candidates: Any) -> Optional[Path]:
    for c in ([candidates] if isinstance(candidates, str) else list(candidates)):
        p = root / c
        if p.exists():
            return p
    return None


def is_emer_root(root: Any) -> bool:
    """True when ``root`` looks like an EMER dataset root (a layout file or a label sheet)."""
    root = Path(root)
    if (root / LAYOUT_FILE).is_file():
        return True
    return _first_existing(root, DEFAULT_LAYOUT["label_file"]) is not None and \
        _first_existing(root, DEFAULT_LAYOUT["eye_dir"]) is not None


def read_layout(root: Any, layout: Optional[Any] = None) -> Dict[str, Any]:
    """The effective layout: defaults, updated by ``root/emer_layout.json`` and then ``layout``
    (a path or a dict). Nested ``labels``, ``eye_columns`` and ``fixation`` are merged key by key."""
    out = json.loads(json.dumps(DEFAULT_LAYOUT))
    sources = []
    own = Path(root) / LAYOUT_FILE
    if own.is_file():
        sources.append(own)
    if layout is not None:
        sources.append(layout)
    for src in sources:
        if isinstance(src, dict):
            data, where = src, "layout"
        else:
            where = str(src)
            try:
                data = json.loads(Path(src).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"--emer-layout {src}: no such file") from None
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{src}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must hold a JSON object")
        unknown = sorted(set(data) - set(DEFAULT_LAYOUT))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_LAYOUT)}")
        for k, v in data.items():
            if k in ("labels", "eye_columns", "fixation"):
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: {k!r} must be an object")
                if k == "eye_columns":
                    from ..features.eye import EYE_FEATURE_NAMES

                    bad = sorted(set(v) - set(EYE_FEATURE_NAMES))
                    if bad:
                        raise ConfigError(f"{where}: eye_columns has unknown feature(s) {', '.join(bad)}; the 39 "
                                          "feature names are emer_live.features.eye.EYE_FEATURE_NAMES")
                out[k].update(v)
            else:
                out[k] = v
    order = out["class_order"]
    if sorted(str(c).lower() for c in order) != sorted(ER7_CLASSES):
        raise ConfigError(f"layout class_order must list the 7 classes {', '.join(ER7_CLASSES)} in the sheet's "
                          f"index order, got {order!r}")
    out["class_order"] = [str(c).lower() for c in order]
    scr = out["screen"]
    if not (isinstance(scr, list) and len(scr) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in scr)):
        raise ConfigError(f"layout screen must be [width, height] in pixels, got {scr!r}")
    return out


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def _read_table(path: Path):
    import pandas as pd

    ext = path.suffix.lower()
    try:
        if ext == ".xlsx":
            if not openpyxl_available():
                raise ConfigError(f"{path}: reading .xlsx needs the openpyxl package, which is not installed; "
                                  "install it (pip install openpyxl) or export the sheet as CSV")
            return pd.read_excel(path)
        if ext in (".tsv", ".txt"):
            return pd.read_csv(path, sep="\t")
        return pd.read_csv(path, sep=None, engine="python")
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the table ({exc})") from None


def _column(df, names: Any) -> Optional[str]:
    if names is None:
        return None
    for n in ([names] if isinstance(names, str) else list(names)):
        if n in df.columns:
            return n
    return None


def _class_value(v: Any, order: Sequence[str], where: str, n: int = 7) -> int:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return -1
    if isinstance(v, (int, np.integer, float, np.floating)) and not isinstance(v, bool):
        if float(v).is_integer() and 0 <= int(v) < n:
            return int(v) if n == 3 else ER7_CLASSES.index(order[int(v)])
        raise ConfigError(f"{where}: class value {v!r} is not an index 0..{n - 1}")
    s = str(v).strip().lower()
    if s in ("", "nan", "none", "-"):
        return -1
    if s.isdigit():
        return _class_value(int(s), order, where, n)
    if n == 3:
        if s in ER3_CLASSES:
            return ER3_CLASSES.index(s)
    elif s in _SYNONYMS:
        return ER7_CLASSES.index(_SYNONYMS[s])
    raise ConfigError(f"{where}: unknown class label {v!r}")


def read_label_sheet(path: Any, layout: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Labels per sample id: ``{id: {participant, er7, er3, er_va, fer7, fer3, fer_va, fer_intensity}}``."""
    path = Path(path)
    df = _read_table(path)
    lab = layout["labels"]
    id_col = _column(df, lab["id"])
    if id_col is None:
        raise ConfigError(f"{path}: no id column {lab['id']!r}; set labels.id in {LAYOUT_FILE}")
    cols = {k: _column(df, lab.get(k)) for k in ("participant", "er7", "er3", "er_valence", "er_arousal", "fer7",
                                                   "fer3", "fer_valence", "fer_arousal", "fer_intensity")}
    if cols["er7"] is None and cols["fer7"] is None and cols["er_valence"] is None:
        raise ConfigError(f"{path}: none of the label columns of the layout were found (columns: "
                          f"{', '.join(map(str, df.columns))}); set labels.* in {LAYOUT_FILE}")
    regex = re.compile(lab["participant_regex"]) if lab.get("participant_regex") else None
    order = layout["class_order"]
    out: Dict[str, Dict[str, Any]] = {}

    def num(row, key, lo, hi, where):
        c = cols[key]
        if c is None:
            return float("nan")
        v = row[c]
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {c} {v!r} is not a number") from None
        if np.isfinite(x) and not lo <= x <= hi:
            raise ConfigError(f"{where}: {c} {x} is outside {lo:g}..{hi:g}")
        return x

    for i, row in enumerate(df.to_dict("records")):
        sid = str(row[id_col]).strip()
        where = f"{path}: row {i + 2} ({sid})"
        if not sid or sid.lower() == "nan":
            continue
        participant = None
        if cols["participant"] is not None and str(row[cols["participant"]]).strip() not in ("", "nan"):
            participant = str(row[cols["participant"]]).strip()
        elif regex is not None:
            m = regex.search(sid)
            if m:
                participant = m.group(1) if m.groups() else m.group(0)
        if participant is None:
            raise ConfigError(f"{where}: no participant (no {lab.get('participant')!r} column and the id does not "
                              f"match participant_regex {lab.get('participant_regex')!r}); splits need it")
        er7 = _class_value(row[cols["er7"]], order, where) if cols["er7"] else -1
        fer7 = _class_value(row[cols["fer7"]], order, where) if cols["fer7"] else -1
        er3 = (ER3_CLASSES.index(ER7_TO_ER3[ER7_CLASSES[er7]]) if er7 >= 0 else
               (_class_value(row[cols["er3"]], order, where, 3) if cols["er3"] else -1))
        fer3 = (ER3_CLASSES.index(ER7_TO_ER3[ER7_CLASSES[fer7]]) if fer7 >= 0 else
                (_class_value(row[cols["fer3"]], order, where, 3) if cols["fer3"] else -1))
        out[sid] = {
            "participant": f"emer-{participant}", "er7": er7, "er3": er3, "fer7": fer7, "fer3": fer3,
            "er_va": (num(row, "er_valence", -1, 1, where), num(row, "er_arousal", -1, 1, where)),
            "fer_va": (num(row, "fer_valence", -1, 1, where), num(row, "fer_arousal", -1, 1, where)),
            "fer_intensity": num(row, "fer_intensity", 0, 3, where),
        }
    if not out:
        raise ConfigError(f"{path}: no labelled samples")
    return out


def read_emer_split(path: Any) -> Dict[str, int]:
    """Parse ``emer_set.txt``: ``{sample id: set number (1-based)}``.

    Two forms are accepted (``#`` starts a comment): one sample per line, ``<ID> <set>`` where the
    separator is a tab, comma or spaces (the id may contain spaces when a tab or comma separates)
    and ``<set>`` is ``k`` or ``setk``; or a header line ``set<k>`` (also ``[set<k>]``, ``set<k>:``)
    followed by one id per line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (the EMER split)") from None
    out: Dict[str, int] = {}
    current: Optional[int] = None
    header = re.compile(r"^\[?\s*set\s*(\d+)\s*\]?\s*:?$", re.I)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = header.match(line)
        if m:
            current = int(m.group(1))
            continue
        parts = re.split(r"\t|,", line) if ("\t" in line or "," in line) else line.rsplit(None, 1)
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) == 2 and re.fullmatch(r"(?i)(set)?\s*\d+", parts[1]):
            sid, k = parts[0], int(re.sub(r"\D", "", parts[1]))
        elif current is not None:
            sid, k = line, current
        else:
            raise ConfigError(f"{path}: line {n}: expected '<ID> <set>' or a 'set<k>' header, got {raw!r}")
        if k < 1:
            raise ConfigError(f"{path}: line {n}: set numbers start at 1")
        if sid in out and out[sid] != k:
            raise ConfigError(f"{path}: line {n}: {sid} is in sets {out[sid]} and {k}")
        out[sid] = k
    if not out:
        raise ConfigError(f"{path}: no entries")
    return out


# --------------------------------------------------------------------------------------------
# eye tables -> 32 x 39 and 32 x 2
# --------------------------------------------------------------------------------------------
def _apply_spec(df, spec: Dict[str, Any], screen: Sequence[float], where: str) -> Optional[np.ndarray]:
    col = spec.get("column")
    if col is None or col not in df.columns:
        return None
    v = df[col]
    if "equals" in spec:
        return (v.astype(str).str.strip().str.lower() == str(spec["equals"]).lower()).to_numpy(np.float64)
    if "not_in" in spec:
        lst = [str(s).lower() for s in spec["not_in"]]
        s = v.astype(str).str.strip().str.lower()
        return (~s.isin(lst) & v.notna()).to_numpy(np.float64)
    if "map" in spec:
        mapping = {str(k).lower(): float(val) for k, val in spec["map"].items()}
        s = v.astype(str).str.strip().str.lower()
        x = s.map(mapping).to_numpy(np.float64)
    else:
        import pandas as pd

        x = pd.to_numeric(v.astype(str).str.replace(",", ".", regex=False), errors="coerce").to_numpy(np.float64) \
            if v.dtype == object else v.to_numpy(np.float64)
    scale = float(spec.get("scale", 1.0))
    div = spec.get("divide_by")
    if div == "width":
        scale /= float(screen[0])
    elif div == "height":
        scale /= float(screen[1])
    elif div is not None:
        raise ConfigError(f"{where}: divide_by must be 'width' or 'height', got {div!r}")
    return x * scale + float(spec.get("offset", 0.0))


def _resolve(df, spec: Any, screen, where: str) -> Optional[np.ndarray]:
    if isinstance(spec, str):
        spec = {"column": spec}
    if isinstance(spec, list):
        for s in spec:
            x = _resolve(df, s, screen, where)
            if x is not None:
                return x
        return None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a column spec must be a name, an object or a list of alternatives, got {spec!r}")
    return _apply_spec(df, spec, screen, where)


def _bin_mean(x: np.ndarray, n_bins: int) -> np.ndarray:
    """NaN-aware mean of ``x`` (rows, F) in ``n_bins`` equal row bins (empty bin -> NaN)."""
    rows = x.shape[0]
    out = np.full((n_bins, x.shape[1]), np.nan)
    edges = np.linspace(0, rows, n_bins + 1)
    for b in range(n_bins):
        lo, hi = int(np.floor(edges[b])), int(np.floor(edges[b + 1]))
        if hi <= lo:
            hi = min(rows, lo + 1)
        chunk = x[lo:hi]
        if len(chunk):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[b] = np.nanmean(chunk, axis=0)
    return out


def map_eye_table(df, layout: Dict[str, Any], *, where: str = "eye table", steps: int = 32
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """Map one eye table onto ``eye (steps, 39)``, ``eye_mask``, ``fixation (steps, 2)``,
    ``fixation_mask`` and the list of features the map could not fill (left at 0)."""
    from ..features.eye import EYE_FEATURE_NAMES

    if len(df) == 0:
        raise ConfigError(f"{where}: empty table")
    screen = layout["screen"]
    cols = layout["eye_columns"]
    n = len(df)
    feats = np.full((n, len(EYE_FEATURE_NAMES)), np.nan)
    filled = np.zeros(len(EYE_FEATURE_NAMES), bool)
    derived = []
    for j, name in enumerate(EYE_FEATURE_NAMES):
        spec = cols.get(name)
        if spec is None:
            continue
        if isinstance(spec, dict) and "derive" in spec:
            derived.append((j, spec))
            continue
        x = _resolve(df, spec, screen, f"{where}: {name}")
        if x is not None:
            feats[:, j] = x
            filled[j] = True
    for j, spec in derived:
        if spec.get("derive") != "diff" or spec.get("of") not in EYE_FEATURE_NAMES:
            raise ConfigError(f"{where}: derived feature {EYE_FEATURE_NAMES[j]}: only "
                              "{\"derive\": \"diff\", \"of\": <feature>} is supported")
        src = EYE_FEATURE_NAMES.index(spec["of"])
        if filled[src]:
            feats[1:, j] = np.diff(feats[:, src])
            filled[j] = True
    if not filled.any():
        raise ConfigError(f"{where}: none of the eye_columns of the layout is in the table (columns: "
                          f"{', '.join(map(str, df.columns[:12]))}...); edit eye_columns in {LAYOUT_FILE}")
    missing = [EYE_FEATURE_NAMES[j] for j in np.flatnonzero(~filled)]
    feats[:, ~filled] = 0.0
    eye = _bin_mean(feats, steps)
    any_valid = np.isfinite(feats[:, filled]).any(axis=1).astype(np.float64)[:, None]
    eye_mask = _bin_mean(np.where(any_valid > 0, 1.0, np.nan), steps)[:, 0] > 0
    fx = _resolve(df, layout["fixation"].get("x"), screen, f"{where}: fixation x")
    fy = _resolve(df, layout["fixation"].get("y"), screen, f"{where}: fixation y")
    if fx is None or fy is None:
        fix = np.full((steps, 2), 0.5)
        fix_mask = np.zeros(steps, bool)
    else:
        fix = _bin_mean(np.stack([fx, fy], axis=1), steps)
        fix_mask = np.isfinite(fix).all(axis=1)
        fix = np.where(np.isfinite(fix), fix, 0.5)
    return eye.astype(np.float32), eye_mask, fix.astype(np.float32), fix_mask, missing


# --------------------------------------------------------------------------------------------
# faces
# --------------------------------------------------------------------------------------------
def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _bin_centres(n_items: int, k: int = 8) -> List[int]:
    return [min(n_items - 1, int((i + 0.5) * n_items / k)) for i in range(k)]


def _layout_crops(rgb: List[np.ndarray]) -> np.ndarray:
    """RGB uint8 images -> ``(8, 3, 112, 112)`` uint8 (the model input is this / 255)."""
    import cv2

    crops = np.stack([cv2.resize(im, (112, 112), interpolation=cv2.INTER_AREA) for im in rgb]).astype(np.uint8)
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))


def _faces_from_images(folder: Path) -> Tuple[Optional[np.ndarray], np.ndarray]:
    import cv2

    files = sorted([p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXT], key=_natural_key)
    mask = np.zeros(8, bool)
    if not files:
        return None, mask
    ims = []
    for i in _bin_centres(len(files)):
        im = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if im is None:
            raise ConfigError(f"{files[i]}: not a readable image")
        ims.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    mask[:] = True
    return _layout_crops(ims), mask


def _faces_from_video(path: Path, *, pipeline: bool) -> Tuple[Optional[np.ndarray], np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"{path}: cannot open the video")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        if n <= 0:
            while True:
                ok, fr = cap.read()
                if not ok:
                    break
                frames.append(fr)
            picks = [frames[i] for i in _bin_centres(len(frames))] if frames else []
        else:
            picks = []
            for i in _bin_centres(n):
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                ok, fr = cap.read()
                picks.append(fr if ok else None)
    finally:
        cap.release()
    mask = np.array([p is not None for p in picks] + [False] * (8 - len(picks)), bool)
    if not mask.any():
        return None, np.zeros(8, bool)
    if pipeline:
        from ..features.face import FacePipeline

        pipe = FacePipeline()
        ims = []
        for k, fr in enumerate(picks):
            res = pipe.process(fr, k) if fr is not None else None
            ok = res is not None and res.found
            mask[k] = ok
            ims.append(res.crop_rgb if ok else np.zeros((112, 112, 3), np.uint8))
    else:
        ims = [cv2.cvtColor(fr, cv2.COLOR_BGR2RGB) if fr is not None else np.zeros((112, 112, 3), np.uint8)
               for fr in picks]
    faces = _layout_crops(ims)
    faces[~mask] = 0
    return faces, mask


def _face_source(layout: Dict[str, Any], root: Path, sid: str) -> Tuple[Optional[Path], Optional[Path]]:
    fdir = _first_existing(root, layout["face_dir"])
    if fdir is not None:
        cand = [fdir / sid] + [d / sid for d in sorted(fdir.glob("set*")) if d.is_dir()]
        for c in cand:
            if c.is_dir():
                return c, None
    vdir = _first_existing(root, layout["video_dir"])
    if vdir is not None:
        for ext in _VIDEO_EXT:
            p = vdir / f"{sid}{ext}"
            if p.is_file():
                return None, p
    return None, None


# --------------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------------
def load_emer_samples(root: Any, *, layout: Optional[Any] = None, load_face: bool = True,
                      progress: Optional[Callable[[str], None]] = None):
    """All labelled samples of an EMER dataset root as :class:`~emer_live.training.dataset.Samples`.

    Samples with an eye table become samples (faces are optional per sample); labelled ids
    without an eye table are skipped and counted. ``kind`` is ``"emer"``, ``session`` the id,
    ``emer_set`` the set of ``emer_set.txt`` (or of a ``set<k>`` face folder), -1 if none.
    """
    from .dataset import Samples

    root = Path(root)
    lay = read_layout(root, layout)
    label_path = _first_existing(root, lay["label_file"])
    if label_path is None:
        raise ConfigError(f"{root}: no label sheet (looked for {', '.join(map(str, lay['label_file']))})")
    labels = read_label_sheet(label_path, lay)
    split_path = _first_existing(root, lay["split_file"])
    sets = read_emer_split(split_path) if split_path is not None else {}
    eye_dir = _first_existing(root, lay["eye_dir"])
    if eye_dir is None:
        raise ConfigError(f"{root}: no eye-movement folder (looked for {', '.join(map(str, lay['eye_dir']))})")
    rows: Dict[str, List[Any]] = {k: [] for k in ("face_row", "face_mask", "eye", "eye_mask", "fixation",
                                                   "fixation_mask", "er7", "er3", "er_va", "fer7", "fer3", "fer_va",
                                                   "fer_intensity", "participant", "session", "emer_set",
                                                   "valid_gaze_fraction", "face_found_fraction")}
    bank: List[np.ndarray] = []
    skipped, all_missing = [], None
    for k, (sid, lab) in enumerate(sorted(labels.items())):
        table = next((eye_dir / f"{sid}{ext}" for ext in _TABLE_EXT if (eye_dir / f"{sid}{ext}").is_file()), None)
        if table is None:
            skipped.append(sid)
            continue
        eye, eye_mask, fix, fix_mask, missing = map_eye_table(_read_table(table), lay, where=str(table))
        all_missing = missing if all_missing is None else [m for m in all_missing if m in missing]
        face_row, face_mask = -1, np.zeros(8, bool)
        set_no = sets.get(sid, -1)
        if load_face:
            img_dir, video = _face_source(lay, root, sid)
            faces = None
            if img_dir is not None:
                faces, face_mask = _faces_from_images(img_dir)
                if set_no < 0 and img_dir.parent.name.lower().startswith("set"):
                    digits = re.sub(r"\D", "", img_dir.parent.name)
                    set_no = int(digits) if digits else -1
            elif video is not None:
                faces, face_mask = _faces_from_video(video, pipeline=bool(lay.get("face_video_pipeline")))
            if faces is not None and face_mask.any():
                face_row = len(bank)
                bank.append(faces)
        rows["face_row"].append(face_row)
        rows["face_mask"].append(face_mask)
        rows["eye"].append(eye)
        rows["eye_mask"].append(eye_mask)
        rows["fixation"].append(fix)
        rows["fixation_mask"].append(fix_mask)
        for key in ("er7", "er3", "er_va", "fer7", "fer3", "fer_va", "fer_intensity", "participant"):
            rows[key].append(lab[key])
        rows["session"].append(sid)
        rows["emer_set"].append(set_no)
        rows["valid_gaze_fraction"].append(float(eye_mask.mean()))
        rows["face_found_fraction"].append(float(face_mask.mean()))
        if progress and (k + 1) % 100 == 0:
            progress(f"EMER: {k + 1}/{len(labels)} samples read")
    n = len(rows["eye"])
    if n == 0:
        raise ConfigError(f"{eye_dir}: no eye table for any labelled sample (expected <ID>.csv/.tsv/.xlsx)")
    if skipped and progress:
        progress(f"EMER: {len(skipped)} labelled id(s) without an eye table skipped (e.g. {skipped[0]})")
    if all_missing:
        warnings.warn(f"{root}: the column map fills no data for {len(all_missing)} eye feature(s) "
                      f"({', '.join(all_missing)}); they are 0 for every sample - edit eye_columns in "
                      f"{LAYOUT_FILE} if your tables hold them", stacklevel=2)
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["er_va"] = np.asarray(rows["er_va"], np.float32).reshape(n, 2)
    arrays["fer_va"] = np.asarray(rows["fer_va"], np.float32).reshape(n, 2)
    arrays.update({
        "eye": np.stack(rows["eye"]), "eye_mask": np.stack(rows["eye_mask"]),
        "fixation": np.stack(rows["fixation"]), "fixation_mask": np.stack(rows["fixation_mask"]),
        "face_mask": np.stack(rows["face_mask"]),
        "masked": np.full(n, -1, np.int8), "true7": np.full(n, -1, np.int64),
        "eye_ref": np.full((n, 39), np.nan, np.float32), "fixation_ref": np.full((n, 2), np.nan, np.float32),
        # no running session reference: EMER tables are per clip, not whole sessions
        "eye_sref_mean": np.full((n, 39), np.nan, np.float32), "eye_sref_sd": np.full((n, 39), np.nan, np.float32),
        "fixation_sref_mean": np.full((n, 2), np.nan, np.float32),
        "fixation_sref_sd": np.full((n, 2), np.nan, np.float32),
        "trial": np.arange(n, dtype=np.int64), "t_start_us": np.zeros(n, np.int64), "t_end_us": np.zeros(n, np.int64),
        "kind": np.array(["emer"] * n), "fer_source": np.array(["emer" if f >= 0 else "none" for f in rows["fer7"]]),
    })
    return Samples(arrays, np.stack(bank) if bank else None)
