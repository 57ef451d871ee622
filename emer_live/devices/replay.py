"""Replay a recorded session as tracker, camera and microphone devices.

The replay keeps the recorded timestamps and values, so recording a replay gives the same gaze
rows back. It runs on a :class:`~emer_live.clock.ReplayClock`: at ``speed=1.0`` (or any factor)
each device's thread pushes the records whose time has come; with ``speed=None`` ("as fast as
possible") nothing moves until the driver calls :meth:`ReplaySource.advance_to`, which pushes
every stream up to that time synchronously - the way offline re-analysis and tests step through
a session deterministically.
"""

from __future__ import annotations

import abc
import os
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from ..clock import ReplayClock
from ..errors import ConfigError, DeviceUnavailable, SessionFormatError
from ..recording import format as fmt
from ..recording.crops import METHODS, face_crop_dtype, read_landmarks
from ..recording.reader import SessionReader, jpeg_damage
from ..schema import GAZE_DTYPE, audio_block_dtype, frame_dtype
from ..streams import Stream
from .base import Device, EventSink

__all__ = ["ReplaySource", "ReplayTracker", "ReplayCamera", "ReplayCropCamera", "ReplayMic"]

#: damage a replay device refuses when it is opened: what would make playback wrong or stop it
#: midway. Records missing against session.json's counts, or a stream that ends early, replay
#: as they are (the re-recording's loss summary shows the holes); :meth:`ReplaySource.warnings`
#: says them with their numbers.
REFUSED = SessionReader.BREAKING


class ReplaySource:
    """One recorded session being replayed; hands out the devices that replay its streams.

    Parameters
    ----------
    path : path-like
        The session folder.
    speed : float or None
        1.0 = real time, 2.0 = twice as fast, None = as fast as possible (driver-stepped).
    """

    def __init__(self, path, *, speed: Optional[float] = 1.0) -> None:
        if speed is not None and speed <= 0:
            raise ConfigError(f"replay speed must be > 0 or 'max', got {speed}")
        self.reader = SessionReader(path)
        self.path = Path(path)
        starts, ends = [], []
        self._gaze = self.reader.gaze() if self.reader.has_gaze() else None
        if self._gaze is not None and len(self._gaze):
            starts.append(int(self._gaze["t_us"][0]))
            ends.append(int(self._gaze["t_us"][-1]))
        # privacy mode: a crops session replays its kept face crops in place of camera frames
        self.face_video = self.reader.face_video
        cam_t = self.reader.camera_times() if self.face_video == "full" else self.reader.crop_times()
        if len(cam_t):
            starts.append(int(cam_t[0]))
            ends.append(int(cam_t[-1]))
        for seg in self.reader.segments():
            b = self.reader.audio_blocks(seg)
            if len(b):
                starts.append(int(b["t_us"][0]))
                ends.append(int(b["t_us"][-1]))
        if not starts:
            raise DeviceUnavailable(f"{self.path}: the session holds no gaze, video or audio to replay")
        self.t_start_us = min(starts)
        self.t_end_us = max(ends)
        self.speed = speed
        self.clock = ReplayClock(self.t_start_us - 1, speed=speed)
        self.devices: List["_ReplayDevice"] = []

    @property
    def gaze_records(self):
        """The recording's gaze table (structured array), or None when it has none."""
        return self._gaze

    @property
    def duration_s(self) -> float:
        return (self.t_end_us - self.t_start_us) / 1e6

    def tracker(self, *, on_event: Optional[EventSink] = None, capacity_s: float = 30.0) -> "ReplayTracker":
        if self._gaze is None:
            raise DeviceUnavailable(f"{self.path}: no gaze.tsv to replay as a tracker; use another --tracker")
        return self._add(ReplayTracker(self, on_event=on_event, capacity_s=capacity_s))

    def camera(self, *, on_event: Optional[EventSink] = None, capacity_s: float = 2.0) -> "ReplayCamera":
        if self.face_video == "none":
            raise DeviceUnavailable(f"{self.path}: recorded with --face-video none - no face images to replay; "
                                    "use --camera none (the eye-tracking data replays)")
        if self.face_video == "crops":
            if not len(self.reader.crop_times()):
                raise DeviceUnavailable(f"{self.path}: no recorded face crops to replay as a camera; use --camera none")
            return self._add(ReplayCropCamera(self, on_event=on_event, capacity_s=capacity_s))
        if not len(self.reader.camera_times()):
            raise DeviceUnavailable(f"{self.path}: no recorded video to replay as a camera; use --camera none or synthetic")
        return self._add(ReplayCamera(self, on_event=on_event, capacity_s=capacity_s))

    def mic(self, *, on_event: Optional[EventSink] = None, capacity_s: float = 5.0) -> "ReplayMic":
        if not any(s.has_audio for s in self.reader.segments()):
            raise DeviceUnavailable(f"{self.path}: no recorded audio to replay as a microphone; use --mic none or synthetic")
        return self._add(ReplayMic(self, on_event=on_event, capacity_s=capacity_s))

    def warnings(self) -> List[str]:
        """What is wrong with the recording that replays anyway, with its numbers: records
        missing against session.json's counts, a stream that ends early."""
        return [p["message"] for p in self.reader.checked_problems() if p["kind"] in ("count", "ends_early")]

    def check_frames_decode(self) -> None:
        """Decode every recorded frame (at 1/8 size, the JPEG decoder's cheap path; on up to 4
        threads - the decoder releases the GIL) and raise :class:`SessionFormatError` naming the
        first that does not decode: a replay camera must fail when it is opened - before a
        re-recording creates its folder - not when playback reaches the bad frame."""
        import cv2
        from concurrent.futures import ThreadPoolExecutor

        def why_bad(data: bytes) -> Optional[str]:
            if not data:
                return "it lies past the end of the file"
            why = jpeg_damage(data)
            if why is None and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
                why = "the JPEG decoder refuses it"
            return why

        r = self.reader
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for seg in r.segments():
                if not seg.has_video:
                    continue
                idx = r.frame_index(seg)
                vid = seg.path / fmt.VIDEO_FILE
                size = vid.stat().st_size if vid.is_file() else 0
                with open(vid, "rb") as f:
                    for start in range(0, len(idx), 256):
                        rows = idx[start:start + 256]
                        chunk = []
                        for row in rows:
                            off, n = int(row["offset"]), int(row["size"])
                            f.seek(off)
                            chunk.append(f.read(n) if off + n <= size else b"")
                        for row, why in zip(rows, pool.map(why_bad, chunk)):
                            if why:
                                raise SessionFormatError(
                                    f"{vid}: frame {int(row['frame'])} (t_us {int(row['t_us'])}) is not a decodable "
                                    f"JPEG ({why}); the replay is refused before anything is recorded - "
                                    f"`emer-live info {self.path}` lists the damage")

    def _add(self, dev):
        self.devices.append(dev)
        return dev

    def advance_to(self, t_us: int) -> None:
        """Move replay time to ``t_us`` and push every stream up to it (fast mode driver)."""
        self.clock.advance_to(t_us)
        for d in self.devices:
            if d.stream is None:
                d.open()
            d.push_until(t_us)

    @property
    def finished(self) -> bool:
        return all(d.finished for d in self.devices)


class _ReplayDevice(Device):
    def __init__(self, source: ReplaySource, *, name: str, on_event, capacity_s: float) -> None:
        super().__init__(name=name, clock=source.clock, on_event=on_event)
        self.source = source
        self.capacity_s = capacity_s
        self._done = False
        self._push_lock = threading.Lock()

    @property
    def finished(self) -> bool:
        return self._done

    def push_until(self, t_us: int) -> int:
        with self._push_lock:
            return self._push(t_us)

    @abc.abstractmethod
    def _push(self, t_us: int) -> int:
        """Append the records with time <= ``t_us`` not yet pushed; return how many."""

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.source.speed is not None:
                self.push_until(self.clock.now_us())
                if self._done:
                    return
            time.sleep(0.005)


class ReplayTracker(_ReplayDevice):
    kind = "tracker"

    def __init__(self, source: ReplaySource, *, on_event=None, capacity_s: float = 30.0) -> None:
        super().__init__(source, name=f"replay:{source.path.name}", on_event=on_event, capacity_s=capacity_s)
        self._pos = 0

    def _open(self) -> None:
        # out-of-order rows would be pushed out of time order (or skipped), rows missing against
        # session.json's counts would be re-recorded as if complete: refuse before any recording
        # of this replay begins
        self.source.reader.require_intact(("gaze",), REFUSED)
        info = self.source.reader.meta.get("streams", {}).get("gaze", {})
        rate = info.get("nominal_rate_hz") or 250.0
        self.stream = Stream("gaze", GAZE_DTYPE, max(int(rate * self.capacity_s), 16), nominal_rate_hz=rate)

    def _push(self, t_us: int) -> int:
        g = self.source.gaze_records
        end = int(np.searchsorted(g["t_us"], t_us, side="right"))
        n = end - self._pos
        if n > 0:
            self.stream.extend(g[self._pos:end])
            self._pos = end
        self._done = self._pos >= len(g)
        return max(n, 0)

    def info(self) -> dict:
        rec = self.source.reader.meta.get("devices", {}).get("gaze", {})
        return {"kind": self.kind, "name": self.name, "replay_of": str(self.source.path), "recorded_device": rec,
                "nominal_rate_hz": self.stream.nominal_rate_hz if self.stream else None,
                "display_area": rec.get("display_area")}


class ReplayCamera(_ReplayDevice):
    kind = "camera"

    def __init__(self, source: ReplaySource, *, on_event=None, capacity_s: float = 2.0) -> None:
        super().__init__(source, name=f"replay:{source.path.name}", on_event=on_event, capacity_s=capacity_s)
        self._frames: Optional[Iterator] = None
        self._next = None

    def _open(self) -> None:
        # a truncated, short or overwritten video fails now, not mid-recording
        self.source.reader.require_intact(("camera",), REFUSED)
        self.source.check_frames_decode()
        info = self.source.reader.meta.get("streams", {}).get("camera", {})
        w, h = int(info["width"]), int(info["height"])
        fps = info.get("nominal_rate_hz") or 30.0
        self.width, self.height, self.fps = w, h, fps
        self.stream = Stream("camera", frame_dtype(w, h), max(int(fps * self.capacity_s), 4), nominal_rate_hz=fps)
        self._frames = self.source.reader.iter_frames()
        self._next = next(self._frames, None)

    def _push(self, t_us: int) -> int:
        n = 0
        rec = np.zeros(1, self.stream.dtype)
        while self._next is not None and self._next[0] <= t_us:
            t, idx, img = self._next
            rec["t_us"], rec["frame_index"] = t, idx
            rec["image"][0] = img
            self.stream.extend(rec)
            n += 1
            self._next = next(self._frames, None)
        self._done = self._next is None
        return n

    def info(self) -> dict:
        return {"kind": self.kind, "name": self.name, "replay_of": str(self.source.path),
                "width": getattr(self, "width", None), "height": getattr(self, "height", None),
                "fps": getattr(self, "fps", None)}


class ReplayCropCamera(ReplayCamera):
    """The camera of a privacy-mode session (``face_video: crops``): it replays the kept face
    crops and the face pipeline's measurements per frame (a face crop stream, the record layout
    of :func:`emer_live.recording.crops.face_crop_dtype`), never camera frames - there are none."""

    delivers_crops = True

    def _open(self) -> None:
        r = self.source.reader
        r.require_intact(("face_crops",))      # unreadable or out-of-order crops fail now
        info = r.meta.get("streams", {}).get("face_crops", {})
        size = r.crop_size
        fps = info.get("nominal_rate_hz") or 30.0
        self.width = self.height = size
        self.fps = fps
        self.face_info = {k: info[k] for k in ("face_config", "made_by") if k in info}
        parts = []
        for seg in r.segments():
            if not seg.has_crops:
                continue
            idx = r.crop_index(seg)
            if len(idx):
                parts.append((idx, r.read_crops(seg), read_landmarks(seg.path, len(idx))))
        # landmarks travel on when every segment kept them (a re-recording keeps them too)
        lmk = bool(parts) and all(p[2] is not None for p in parts)
        self.stream = Stream("face_crops", face_crop_dtype(size, landmarks=lmk),
                             max(int(fps * self.capacity_s), 4), nominal_rate_hz=fps)
        self._parts = parts
        self._seg, self._i = 0, 0

    def _push(self, t_us: int) -> int:
        n = 0
        rec = np.zeros(1, self.stream.dtype)
        lmk = "landmarks" in self.stream.dtype.names
        while self._seg < len(self._parts):
            idx, pix, marks = self._parts[self._seg]
            if self._i >= len(idx):
                self._seg += 1
                self._i = 0
                continue
            r = idx[self._i]
            if r["t_us"] > t_us:
                break
            rec["t_us"], rec["frame_index"], rec["found"] = r["t_us"], r["camera_frame_index"], r["found"]
            rec["method"] = METHODS.index(str(r["method"])) if str(r["method"]) in METHODS else 0
            rec["crop"][0] = pix[self._i]
            rec["box"][0], rec["eyes"][0], rec["pose"][0] = r["box"], r["eyes"], r["pose"]
            rec["landmark_conf"] = r["landmark_conf"]
            if lmk:
                rec["landmarks"][0] = marks[self._i]
            self.stream.extend(rec)
            self._i += 1
            n += 1
        self._done = self._seg >= len(self._parts)
        return n


class ReplayMic(_ReplayDevice):
    kind = "mic"

    def __init__(self, source: ReplaySource, *, on_event=None, capacity_s: float = 5.0) -> None:
        super().__init__(source, name=f"replay:{source.path.name}", on_event=on_event, capacity_s=capacity_s)

    def _open(self) -> None:
        r = self.source.reader
        r.require_intact(("audio",), REFUSED)
        info = r.meta.get("streams", {}).get("audio", {})
        self.blocksize = int(info.get("blocksize", 1024))
        self.channels = int(info.get("channels", 1))
        rate = info.get("nominal_rate_hz") or 48000 / self.blocksize
        self.stream = Stream("audio", audio_block_dtype(self.blocksize, self.channels),
                             max(int(rate * self.capacity_s), 8), nominal_rate_hz=rate)
        blocks, samples = [], []
        for seg in r.segments():
            b = r.audio_blocks(seg)
            if len(b):
                blocks.append(b)
                samples.append(r.audio(seg))
        self._blocks = blocks
        self._samples = samples
        self._seg = 0
        self._i = 0

    def _push(self, t_us: int) -> int:
        n = 0
        rec = np.zeros(1, self.stream.dtype)
        while self._seg < len(self._blocks):
            b = self._blocks[self._seg]
            if self._i >= len(b):
                self._seg += 1
                self._i = 0
                continue
            row = b[self._i]
            if row["t_us"] > t_us:
                break
            k = int(row["n_samples"])
            off = int(row["sample_offset"])
            rec["t_us"], rec["block_index"], rec["n"] = row["t_us"], row["block"], k
            rec["samples"][0] = 0
            rec["samples"][0, :k] = self._samples[self._seg][off:off + k]
            self.stream.extend(rec)
            self._i += 1
            n += 1
        self._done = self._seg >= len(self._blocks)
        return n

    def info(self) -> dict:
        return {"kind": self.kind, "name": self.name, "replay_of": str(self.source.path)}
