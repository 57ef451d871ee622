"""Record layouts (numpy structured dtypes) of every stream, in one place.

The gaze record flattens the Tobii Pro SDK's gaze-data dictionary (``as_dictionary=True``): one
column per coordinate, both eyes, validities, and both time stamps. ``t_us`` is the sample's time
on the session clock (= ``system_time_stamp`` for a Tobii tracker); ``device_time_stamp`` is the
tracker's own clock, kept so drift can be measured. Invalid values are NaN with validity 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GAZE_DTYPE", "GAZE_COLUMNS", "SDK_GAZE_KEYS", "gaze_from_sdk_dicts",
    "EYE_OPENNESS_DTYPE", "TIME_SYNC_DTYPE",
    "frame_dtype", "FRAME_META_DTYPE", "audio_block_dtype", "EVENT_KINDS",
]

_EYE_FIELDS = [
    ("gaze_point_on_display_area_x", np.float32),
    ("gaze_point_on_display_area_y", np.float32),
    ("gaze_point_in_user_coordinate_system_x", np.float32),   # mm
    ("gaze_point_in_user_coordinate_system_y", np.float32),
    ("gaze_point_in_user_coordinate_system_z", np.float32),
    ("gaze_point_validity", np.int8),
    ("pupil_diameter", np.float32),                            # mm
    ("pupil_validity", np.int8),
    ("gaze_origin_in_user_coordinate_system_x", np.float32),  # mm
    ("gaze_origin_in_user_coordinate_system_y", np.float32),
    ("gaze_origin_in_user_coordinate_system_z", np.float32),
    ("gaze_origin_in_trackbox_coordinate_system_x", np.float32),  # normalised 0..1
    ("gaze_origin_in_trackbox_coordinate_system_y", np.float32),
    ("gaze_origin_in_trackbox_coordinate_system_z", np.float32),
    ("gaze_origin_validity", np.int8),
]

GAZE_DTYPE = np.dtype(
    [("t_us", np.int64), ("device_time_stamp", np.int64), ("system_time_stamp", np.int64)]
    + [(f"left_{n}", t) for n, t in _EYE_FIELDS]
    + [(f"right_{n}", t) for n, t in _EYE_FIELDS]
)
GAZE_COLUMNS = list(GAZE_DTYPE.names)

# SDK dictionary key -> (column prefix, number of components)
SDK_GAZE_KEYS = {}
for _eye in ("left", "right"):
    for _key, _n in (
        ("gaze_point_on_display_area", 2),
        ("gaze_point_in_user_coordinate_system", 3),
        ("gaze_point_validity", 1),
        ("pupil_diameter", 1),
        ("pupil_validity", 1),
        ("gaze_origin_in_user_coordinate_system", 3),
        ("gaze_origin_in_trackbox_coordinate_system", 3),
        ("gaze_origin_validity", 1),
    ):
        SDK_GAZE_KEYS[f"{_eye}_{_key}"] = _n


def gaze_from_sdk_dicts(dicts, *, t_us=None) -> np.ndarray:
    """Convert SDK gaze dictionaries into gaze records (for tests, replays and fakes; the live
    Tobii callback writes fields directly to avoid per-sample allocation)."""
    out = np.zeros(len(dicts), GAZE_DTYPE)
    for i, d in enumerate(dicts):
        out["device_time_stamp"][i] = d["device_time_stamp"]
        out["system_time_stamp"][i] = d["system_time_stamp"]
        for key, n in SDK_GAZE_KEYS.items():
            if key not in d:   # e.g. SDK 2.x has no trackbox origin: leave it NaN
                if n == 1:
                    continue
                for c in "xyz"[:n]:
                    out[f"{key}_{c}"][i] = np.nan
                continue
            v = d[key]
            if n == 1:
                out[key][i] = v
            else:
                for c, comp in zip("xyz", v):
                    out[f"{key}_{c}"][i] = comp
    out["t_us"] = out["system_time_stamp"] if t_us is None else t_us
    return out


#: Eye openness records (trackers that offer it; the Pro Fusion may not). Openness in mm.
EYE_OPENNESS_DTYPE = np.dtype([
    ("t_us", np.int64), ("device_time_stamp", np.int64), ("system_time_stamp", np.int64),
    ("left_eye_openness_value", np.float32), ("left_eye_validity", np.int8),
    ("right_eye_openness_value", np.float32), ("right_eye_validity", np.int8),
])

#: The tracker's time synchronisation packets (all microseconds). ``t_us`` is the midpoint of
#: the request and the response on the session clock; the other stamps are the SDK's.
TIME_SYNC_DTYPE = np.dtype([
    ("t_us", np.int64), ("system_request_time_stamp", np.int64), ("device_time_stamp", np.int64),
    ("system_response_time_stamp", np.int64),
])

FRAME_META_DTYPE = np.dtype([("t_us", np.int64), ("frame_index", np.int64)])


def frame_dtype(width: int, height: int) -> np.dtype:
    """Camera ring record: time, running frame index and the BGR image."""
    return np.dtype([("t_us", np.int64), ("frame_index", np.int64), ("image", np.uint8, (height, width, 3))])


def audio_block_dtype(blocksize: int, channels: int = 1) -> np.dtype:
    """Microphone ring record: one block; ``t_us`` is the time of its first sample."""
    return np.dtype([("t_us", np.int64), ("block_index", np.int64), ("n", np.int32),
                     ("samples", np.float32, (blocksize, channels))])


# Names used in events.tsv (kind column). Later stages may add their own, documented in FORMAT.md.
EVENT_KINDS = (
    "session_start", "session_end", "recording_start", "recording_stop",
    "trial_start", "trial_end", "trial_aborted", "trial_skipped", "stimulus_onset", "stimulus_offset",
    "stimulus_not_shown",
    "fixation_cross", "baseline_start", "baseline_end", "rest_start", "rest_end",
    "sam_shown", "sam_answered", "calibration", "validation",
    "device_connect", "device_disconnect", "gap", "buffer_overflow", "camera_stall",
    "pause", "resume", "abort", "note", "error",
)
