"""Privacy mode (``--face-video crops|none``): the face pipeline runs on the recording path.

:class:`FaceCropStage` reads the camera stream, runs one :class:`~.face.FacePipeline` on every
frame in time order and appends one record per frame (crop, box, eyes, head pose, landmark
confidence, landmarks) to its own stream (:func:`emer_live.recording.crops.face_crop_dtype`).
The recorder writes that stream instead of the camera's frames, and the live engine reads its
crops from the same stream (:class:`CropStreamSource`), so the crops are made once and the crops
the live model saw are the ones the session keeps: a replay or re-analysis of the session reads
them back (:class:`~.windows.RecordingSource`) and the face sampler picks the same frames.

The stage runs in its own thread in real-time runs (:meth:`FaceCropStage.start`); stepped and
as-fast-as-possible runs drive it with :meth:`FaceCropStage.pump`. The live engine waits for the
crop stream by the rule it applies to camera frames (the stream's newest crop is its watermark,
:meth:`CropStreamSource.delivered_through`; docs/performance.md).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from ..recording.crops import METHODS, face_crop_dtype
from ..streams import Stream
from .face import FaceResult
from .windows import WindowSource

__all__ = ["FaceCropStage", "CropStreamSource", "result_from_record", "record_from_result"]


def record_from_result(rec: np.ndarray, res: FaceResult, frame_index: int) -> None:
    """Fill the one-record array ``rec`` from a pipeline result."""
    rec[0] = np.zeros((), rec.dtype)
    rec["t_us"], rec["frame_index"] = int(res.t_us), int(frame_index)
    if "landmarks" in rec.dtype.names:
        rec["landmarks"] = np.nan
    rec["pose"], rec["landmark_conf"], rec["eyes"], rec["box"] = np.nan, np.nan, np.nan, -1
    if not res.found:
        return
    rec["found"] = 1
    rec["method"] = METHODS.index(res.method) if res.method in METHODS else 0
    rec["crop"][0] = res.crop_rgb
    rec["box"][0] = res.box
    rec["eyes"][0] = res.eyes
    rec["pose"][0] = (res.roll_deg, res.yaw_deg, res.pitch_deg)
    rec["landmark_conf"] = res.landmark_conf
    if "landmarks" in rec.dtype.names and res.landmarks is not None:
        rec["landmarks"][0] = np.asarray(res.landmarks, np.float32)[:, :3]


def result_from_record(t_us: int, found: bool, crop: Optional[np.ndarray], *, box=None, eyes=None, method="none",
                       pose=(np.nan, np.nan, np.nan), landmark_conf=np.nan, landmarks=None) -> FaceResult:
    """A :class:`FaceResult` for a kept crop (what the face sampler and the displays use)."""
    if not found:
        return FaceResult(t_us=int(t_us), found=False)
    e = np.asarray(eyes, float)
    return FaceResult(t_us=int(t_us), found=True, crop_rgb=np.asarray(crop, np.uint8),
                      box=tuple(int(v) for v in box), eyes=((e[0, 0], e[0, 1]), (e[1, 0], e[1, 1])),
                      method=str(method), eyes_method="kept", roll_deg=float(pose[0]), yaw_deg=float(pose[1]),
                      pitch_deg=float(pose[2]), landmark_conf=float(landmark_conf), landmarks=landmarks)


class FaceCropStage:
    """Camera stream -> face pipeline (every frame, in order) -> face crop stream.

    Parameters
    ----------
    camera : Stream
        The camera's ring (records ``t_us``, ``frame_index``, ``image`` BGR).
    pipeline : FacePipeline
    capacity_s : float
        Seconds of crops the output ring holds (the recorder and the engine read behind it).
    """

    def __init__(self, camera: Stream, pipeline, *, capacity_s: float = 4.0) -> None:
        self.camera = camera
        self.pipeline = pipeline
        self.config = pipeline.config
        landmarks = getattr(self.config, "detector", "haar") == "landmarks"
        rate = camera.nominal_rate_hz or 30.0
        self.dtype = face_crop_dtype(int(self.config.output_size), landmarks=landmarks)
        self.stream = Stream("face_crops", self.dtype, max(int(rate * capacity_s), 16), nominal_rate_hz=rate)
        self._cursor = camera.cursor(from_start=True)
        self._lock = threading.Lock()          # one frame at a time: the pipeline is stateful
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.frames = 0
        self.lost = 0                          # camera frames the ring dropped before the stage read them
        self.busy_s = 0.0

    @property
    def info(self) -> dict:
        """For session.json (the face_crops stream entry)."""
        return {"face_config": self.config.to_dict(), "made_by": "emer_live.features.face_crops"}

    def pump(self, max_frames: Optional[int] = None) -> int:
        """Process the camera frames that arrived since the last call; returns how many. Each
        crop is published as soon as it is made, in frame order, so the crop stream's newest
        time is its watermark (:meth:`CropStreamSource.delivered_through`)."""
        with self._lock:
            got = self._cursor.read(max_frames)
            self.lost += got.lost
            rec = np.zeros(1, self.dtype)
            t0 = time.perf_counter()
            for r in got.records:
                res = self.pipeline.process(r["image"], int(r["t_us"]))
                record_from_result(rec, res, int(r["frame_index"]))
                self.stream.extend(rec)
            self.busy_s += time.perf_counter() - t0
            self.frames += len(got.records)
            return len(got.records)

    def catch_up(self) -> None:
        """A stepped run (no thread): make the crops of the frames the camera has delivered so
        far, now. With the thread running there is nothing to do here: the live engine waits for
        the crop stream's watermark, as it waits for the camera's (docs/performance.md)."""
        if self._thread is None and self.error is None:
            self.pump()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="face-crops", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.pump(16):
                    self._cursor.wait(0.02)
        except BaseException as exc:    # the run ends on it (Run checks .error)
            self.error = exc

    def stop(self) -> None:
        """Stop the thread and process what is left (so the recording keeps every frame)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        if self.error is None:
            self.pump()


class CropStreamSource(WindowSource):
    """Live windows whose face crops come from a :class:`FaceCropStage` (or any face crop
    stream, e.g. the replay of a crops session) instead of camera frames."""

    precomputed_crops = True

    def __init__(self, gaze_stream, crops: Stream, *, stage: Optional[FaceCropStage] = None,
                 stimulus_rect=None) -> None:
        self.gaze_stream = gaze_stream
        self.crops = crops
        self.stage = stage
        self.stimulus_rect = stimulus_rect

    def gaze(self, t0_us, t1_us):
        return None if self.gaze_stream is None else self.gaze_stream.window(t0_us, t1_us)

    def frame_times(self, t0_us, t1_us):
        if self.stage is not None:
            self.stage.catch_up()
        return self.crops.window(t0_us, t1_us, fields=["t_us"])["t_us"]

    def delivered_through(self):
        # the live engine's watermark rule, as for camera frames: the stage publishes crops in
        # frame order, so every frame before the newest crop has its crop here already
        out = {"face_crops": self.crops.last_t_us}
        if self.gaze_stream is not None:
            out["gaze"] = self.gaze_stream.last_t_us
        return out

    def frame_at(self, t_us):
        return None         # no camera frames here: the crops are made already

    def face_result_at(self, t_us: int) -> Optional[FaceResult]:
        rec = self.crops.window(t_us, t_us + 1)
        if not len(rec):
            return None
        r = rec[0]
        return result_from_record(int(r["t_us"]), bool(r["found"]), r["crop"], box=r["box"], eyes=r["eyes"],
                                  method=METHODS[int(r["method"])], pose=r["pose"],
                                  landmark_conf=float(r["landmark_conf"]),
                                  landmarks=r["landmarks"] if "landmarks" in r.dtype.names else None)
