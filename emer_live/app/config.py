"""The typed, validated description of one run (record, live or collection session).

Every front end (the CLI commands, the desktop app, tests) builds a :class:`RunConfig`; the
options are checked here, before any device is opened or any folder created, so a bad value
never leaves a half-made session behind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

from ..errors import ConfigError
from ..recording.crops import FACE_VIDEO_MODES
from ..session.ids import validate_participant_id

__all__ = ["RunConfig", "RUN_KINDS", "parse_speed"]

#: record: devices -> recorder.  live: devices -> (recorder) -> live engine.
#: session: devices -> recorder + session controller (stimuli, SAM) -> (live engine).
RUN_KINDS = ("record", "live", "session")


def parse_speed(text) -> Optional[float]:
    """``1`` / ``2.5`` / ``max`` -> float, or None for "as fast as possible" (replays only)."""
    if str(text).lower() in ("max", "fast", "inf"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"--speed {text!r}: use a factor like 1 or 2.5, or 'max'") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"--speed {text!r}: must be a finite factor > 0, or 'max'")
    return v


def _finite(name: str, value, *, low: Optional[float] = None, high: Optional[float] = None,
            low_open: bool = False) -> None:
    """``name`` must be a finite number within [low, high] (``low_open``: strictly above low)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r}: not a number") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} {value!r}: must be a finite number")
    if low is not None and (v <= low if low_open else v < low):
        raise ConfigError(f"{name} {value!r}: must be {'>' if low_open else '>='} {low:g}")
    if high is not None and v > high:
        raise ConfigError(f"{name} {value!r}: must be <= {high:g}")


@dataclass(frozen=True)
class RunConfig:
    """What to run. Field names follow the CLI options (``--tracker`` -> ``tracker``).

    Parameters
    ----------
    kind : {"record", "live", "session"}
    participant : str
        Pseudonymous ID (``P01``), never a name.
    tracker, camera, mic : str
        Device specs as on the command line (``synthetic``, ``replay:DIR``, ``tobii``, ``none``...).
    speed : float or None
        Replay speed; None = as fast as the CPU allows (every device must be a replay).
    duration_s : float, optional
        Stop after this many seconds (record, live); None = until stopped or the replay ends.
    out : str, optional
        The session folder to create (record, live: optional for live; session: an exact folder
        instead of ``out_root/<participant>/<session id>``).
    checkpoint : str, optional
        EMERT checkpoint; required for ``live``, optional for ``session`` (live model beside it).
    predictions_jsonl : str, optional
        Also write every prediction as one JSON line here (live).
    stimuli, n_trials, time_scale, fast, participant_index, mask_rate
        Session options (see ``emer-live session --help``).
    face_video : {"full", "crops", "none"}
        What a recording keeps of the camera: the face video, only the model's aligned face crops
        and the face pipeline's per-frame measurements, or only the measurements (docs/data-rights.md).
    fer_model : str
        Where FER comes from: ``auto`` (the pretrained FER model for a real camera or video file,
        EMERT's own head for synthetic/replay/no camera; a replay uses what its recording used),
        ``emert``, or a FER checkpoint path (docs/face.md).
    group_readable : bool
        Recorded folders 0750 and files 0640 (a lab sharing data through a Unix group) instead
        of the private 0700/0600 (docs/data-rights.md).
    """

    kind: str = "live"
    participant: str = "P00"
    tracker: str = "synthetic"
    camera: str = "synthetic"
    mic: str = "none"
    rate: float = 250.0
    fps: float = 30.0
    size: Tuple[int, int] = (1280, 720)
    seed: int = 0
    mask_rate: float = 0.4
    speed: Optional[float] = 1.0
    duration_s: Optional[float] = None
    out: Optional[str] = None
    out_root: str = "recordings"
    checkpoint: Optional[str] = None
    model_device: str = "auto"
    window_s: float = 8.0
    hop_s: float = 1.0
    predictions_jsonl: Optional[str] = None
    stimuli: str = "placeholder"
    n_trials: int = 14
    time_scale: float = 1.0
    fast: bool = False
    participant_index: Optional[int] = None
    fer_model: str = "auto"
    calibrate: bool = False          # session: begin with calibration/validation (a front end drives it)
    calibration_points: int = 5
    consent_version: Optional[str] = None    # the consent form the participant signed (session.json)
    consent_date: Optional[str] = None       # YYYY-MM-DD; default today when a version is given
    group_readable: bool = False             # session folders 0750/files 0640 instead of 0700/0600
    face_video: str = "full"                 # privacy mode: full | crops | none (docs/data-rights.md)

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise ConfigError(f"run kind {self.kind!r}: use one of {', '.join(RUN_KINDS)}")
        validate_participant_id(self.participant)
        _finite("--rate", self.rate, low=0, low_open=True, high=2000)
        _finite("--fps", self.fps, low=0, low_open=True, high=240)
        _finite("--mask-rate", self.mask_rate, low=0, high=1)
        if self.speed is not None:
            _finite("--speed", self.speed, low=0, low_open=True, high=1000)
            if self.speed != 1 and not self.replay:
                # refused rather than ignored: synthetic and real devices cannot run faster
                raise ConfigError(f"--speed {self.speed:g}: a speed factor applies to replay devices only "
                                  "(--tracker replay:DIR); synthetic and real devices run in real time - drop --speed")
        if self.duration_s is not None:
            # a week is plenty; 1e308 or inf would record until the disk is full
            _finite("--duration", self.duration_s, low=0, low_open=True, high=7 * 24 * 3600)
        _finite("--window", self.window_s, low=0.5, high=600)
        _finite("--hop", self.hop_s, low=0.25, high=600)
        if self.hop_s > self.window_s:
            raise ConfigError(f"--hop {self.hop_s:g} is longer than --window {self.window_s:g}: windows would "
                              "leave data out; use a hop <= the window")
        _finite("--time-scale", self.time_scale, low=0, low_open=True, high=10)
        if not isinstance(self.n_trials, int) or not 1 <= self.n_trials <= 28:
            raise ConfigError(f"--trials {self.n_trials}: must be 1..28")
        if len(tuple(self.size)) != 2:
            raise ConfigError(f"--size {self.size!r}: expected (width, height)")
        if self.kind == "live" and not self.checkpoint:
            raise ConfigError("a live run needs a checkpoint (--checkpoint PATH; see models/README.md)")
        if self.kind == "record" and not self.out:
            raise ConfigError("a recording needs a new session folder (--out DIR)")
        if self.fast and self.kind != "session":
            raise ConfigError("fast (virtual clock) runs are for synthetic sessions; replays use --speed max")
        if self.fast and (self.tracker != "synthetic" or self.camera not in ("synthetic", "none") or self.mic != "none"):
            raise ConfigError("--fast runs the synthetic participant on a virtual clock: use --tracker synthetic, "
                              "--camera synthetic|none and --mic none")
        if self.consent_version is not None or self.consent_date is not None:
            if self.consent_version is None:
                raise ConfigError("--consent-date needs --consent-version (which form was signed)")
            from ..session.consent import consent_meta

            consent_meta(self.consent_version, self.consent_date)     # validated now, stored by the run
        if self.face_video not in FACE_VIDEO_MODES:
            raise ConfigError(f"--face-video {self.face_video!r}: use one of {', '.join(FACE_VIDEO_MODES)} "
                              "(docs/data-rights.md)")
        if self.calibration_points not in (5, 9):
            raise ConfigError(f"--calibration-points {self.calibration_points}: use 5 or 9")
        if self.calibrate and (self.kind != "session" or self.fast):
            raise ConfigError("calibration belongs to a real-time session (the app's --session)")
        if self.kind == "session" and self.speed is None:
            raise ConfigError("a session runs in real time (or --fast with the synthetic participant), not --speed max")

    @property
    def replay(self) -> bool:
        """True when any device replays a recording."""
        return any(str(s).split(":", 1)[0].lower() == "replay" for s in (self.tracker, self.camera, self.mic))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d
