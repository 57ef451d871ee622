"""Build the device set for a run from command-line style specs.

Specs: ``--tracker synthetic | replay:DIR | tobii[:ADDRESS]``;
``--camera synthetic | replay[:DIR] | none | INDEX | VIDEO_FILE``;
``--mic synthetic | replay[:DIR] | none | default | INDEX | NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from ..clock import SessionClock, system_clock
from ..errors import ConfigError
from .base import Device, EventSink

__all__ = ["DeviceSet", "EventRelay", "make_devices", "parse_size"]

TRACKER_HELP = "synthetic, replay:DIR or tobii[:ADDRESS]"
CAMERA_HELP = "synthetic, replay[:DIR], none, a camera index or a video file"
MIC_HELP = "synthetic, replay[:DIR], none, default, a device index or name"


def parse_size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320):
        raise ConfigError(f"--size {text!r}: width/height out of range (16..7680 x 16..4320)")
    return w, h


class EventRelay:
    """Forwards device events to every listener added later (e.g. a recorder that is created
    only after the devices opened)."""

    def __init__(self) -> None:
        self.targets: List[EventSink] = []

    def __call__(self, t_us: int, kind: str, detail: dict) -> None:
        for fn in list(self.targets):
            fn(t_us, kind, detail)


@dataclass
class DeviceSet:
    clock: SessionClock
    tracker: Optional[Device] = None
    camera: Optional[Device] = None
    mic: Optional[Device] = None
    phantom: object = None          # the synthetic participant, when one is used
    replay: object = None           # the ReplaySource, when one is used
    events: EventRelay = field(default_factory=EventRelay)   # what the devices report

    @property
    def all(self) -> List[Device]:
        return [d for d in (self.tracker, self.camera, self.mic) if d is not None]

    def open_all(self) -> None:
        """Open every device; on failure close those already opened and re-raise."""
        opened = []
        try:
            for d in self.all:
                d.open()
                opened.append(d)
        except BaseException:
            for d in opened:
                d.stop()
            raise

    def start_all(self) -> None:
        for d in self.all:
            d.start()

    def stop_all(self) -> None:
        for d in self.all:
            d.stop()


def _replay_dir(spec: str, default: Optional[str], what: str) -> str:
    if ":" in spec:
        path = spec.split(":", 1)[1]
        if not path:
            raise ConfigError(f"--{what} replay: give the session folder, e.g. replay:recordings/P01/S1")
        return path
    if default is None:
        raise ConfigError(f"--{what} replay needs a session: use replay:DIR (or --tracker replay:DIR)")
    return default


def check_device_specs(tracker: str, camera: str, mic: str) -> None:
    """The device names' own errors (an unknown tracker kind, a camera that is neither a name, an
    index nor an existing video file, a replay without its folder), without creating a device:
    what :func:`make_devices` refuses first, for checks before any window or device."""
    t_kind = str(tracker).strip().split(":", 1)[0].lower()
    if t_kind not in ("synthetic", "replay", "tobii", "none"):
        raise ConfigError(f"unknown --tracker {tracker!r}: use {TRACKER_HELP}")
    camera, mic = str(camera).strip(), str(mic).strip()
    c_head = camera.split(":", 1)[0].lower()
    if c_head not in ("synthetic", "replay", "none") and not camera.isdigit() and not Path(camera).is_file():
        raise ConfigError(f"unknown --camera {camera!r} (not a device name, index or existing video file): "
                          f"use {CAMERA_HELP}")
    default = str(tracker).split(":", 1)[1] if t_kind == "replay" and ":" in str(tracker) else None
    for spec, what in ((str(tracker).strip(), "tracker"), (camera, "camera"), (mic, "mic")):
        if spec.split(":", 1)[0].lower() == "replay":
            _replay_dir(spec, default, what)


def make_devices(*, tracker: str = "synthetic", camera: str = "synthetic", mic: str = "none",
                 rate: float = 250.0, fps: float = 30.0, size: Tuple[int, int] = (1280, 720),
                 seed: int = 0, participant: str = "SYN01", mask_rate: float = 0.4,
                 speed: Optional[float] = 1.0, on_event: Optional[EventSink] = None,
                 gaze_capacity_s: float = 180.0) -> DeviceSet:
    """Create (not open) the devices named by the specs; raises ConfigError for unknown names.

    ``gaze_capacity_s`` sizes the gaze ring: long enough for a whole-trial window over a clip.
    """
    tracker, camera, mic = str(tracker).strip(), str(camera).strip(), str(mic).strip()
    check_device_specs(tracker, camera, mic)
    t_kind = tracker.split(":", 1)[0].lower()
    c_head = camera.split(":", 1)[0].lower()
    c_kind = c_head if c_head in ("synthetic", "replay", "none") else ("index" if camera.isdigit() else "file")
    m_kind = mic.split(":", 1)[0].lower()

    replay_src = None
    replay_default = tracker.split(":", 1)[1] if t_kind == "replay" and ":" in tracker else None
    replay_paths = set()
    if t_kind == "replay":
        replay_paths.add(_replay_dir(tracker, None, "tracker"))
    if c_kind == "replay":
        replay_paths.add(_replay_dir(camera, replay_default, "camera"))
    if m_kind == "replay":
        replay_paths.add(_replay_dir(mic, replay_default, "mic"))
    replay_paths = {str(Path(p).resolve()) for p in replay_paths}
    if len(replay_paths) > 1:
        raise ConfigError(f"replay devices must come from one session, got {sorted(replay_paths)}")
    if replay_paths:
        from .replay import ReplaySource

        replay_src = ReplaySource(replay_paths.pop(), speed=speed)
        clock = replay_src.clock
    else:
        if speed is None:
            raise ConfigError("--speed max needs replay devices (live devices run in real time)")
        clock = system_clock()
    live_kinds = {t_kind, c_kind, m_kind} - {"replay", "none"}
    if speed is None and live_kinds:
        raise ConfigError("--speed max: every device must be replay or none (live devices run in real time)")

    ds = DeviceSet(clock=clock, replay=replay_src)
    if on_event is not None:
        ds.events.targets.append(on_event)
    on_event = ds.events
    needs_phantom = "synthetic" in (t_kind, c_kind, m_kind)
    if needs_phantom:
        from ..phantom.participant import Phantom

        ds.phantom = Phantom(seed=seed, participant=participant, mask_rate=mask_rate)

    # tracker
    if t_kind == "synthetic":
        from .synthetic import SyntheticTracker

        ds.tracker = SyntheticTracker(ds.phantom, rate_hz=rate, clock=clock, on_event=on_event,
                                      capacity_s=gaze_capacity_s)
    elif t_kind == "replay":
        ds.tracker = replay_src.tracker(on_event=on_event, capacity_s=gaze_capacity_s)
    elif t_kind == "tobii":
        from .tobii import TobiiTracker

        address = tracker.split(":", 1)[1] if ":" in tracker else None
        ds.tracker = TobiiTracker(address=address, frequency=rate, clock=clock, on_event=on_event,
                                  capacity_s=gaze_capacity_s)

    # camera
    w, h = size
    if c_kind == "synthetic":
        from .synthetic_camera import SyntheticCamera

        ds.camera = SyntheticCamera(ds.phantom, width=w, height=h, fps=fps, clock=clock, on_event=on_event)
    elif c_kind == "replay":
        ds.camera = replay_src.camera(on_event=on_event)
    elif c_kind == "none":
        pass
    else:
        from .camera import CameraDevice

        src = int(camera) if c_kind == "index" else camera
        ds.camera = CameraDevice(source=src, width=w, height=h, fps=fps, clock=clock, on_event=on_event)

    # microphone
    if m_kind == "synthetic":
        from .synthetic import SyntheticMic

        ds.mic = SyntheticMic(seed=seed, clock=clock, on_event=on_event)
    elif m_kind == "replay":
        ds.mic = replay_src.mic(on_event=on_event)
    elif m_kind == "none":
        pass
    else:
        from .microphone import MicrophoneDevice

        dev = None if m_kind == "default" else (int(mic) if mic.isdigit() else mic)
        ds.mic = MicrophoneDevice(device=dev, clock=clock, on_event=on_event)
    return ds
