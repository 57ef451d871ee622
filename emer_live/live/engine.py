"""The live recognition engine (DESIGN sec. 11; issue 7).

Two threads besides the caller's: a **scheduler** that, every hop, assembles the last W seconds
from the live streams into a :class:`~emer_live.features.windows.Window` (cheap: gaze features
and, with hop = W/8, one new face crop per hop) once every stream has delivered past the
window's end - so a live window holds what a replay of the recording gives it, whatever the
machine's load (:meth:`LiveEngine.data_horizon`; docs/performance.md) - and a **model worker**
that runs EMERT and publishes :class:`~emer_live.live.prediction.Prediction` objects to
callbacks, a bounded thread-safe queue and the session's ``predictions.tsv``. Neither ever
blocks capture or the GUI: between them sits a bounded queue; when the model falls behind, the
worker scores every pending window in one batch on a GPU, and on a CPU drops the oldest pending
window with a counter.

:meth:`LiveEngine.process` builds and scores one window synchronously - the path offline
re-analysis (``--speed max``) takes, so it gives the same numbers as the live run.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from ..features.session_reference import REFERENCE_WINDOW_S, SessionReference, apply_reference, reference_kind
from ..features.windows import Window, WindowBuilder, WindowSpec
from ..labels import er3_probs_from_er7, va_from_probs
from .prediction import Prediction, PredictionLog, emotion_gap

__all__ = ["LiveEngine", "EngineStats", "EngineError", "window_to_prediction", "window_inputs", "MAX_WAIT_S"]

#: How long the live engine waits for a stream that has not yet delivered through a window's end
#: (or a face grid time) before it counts the stream as stalled and goes on without it; the
#: prediction then names the stream (docs/performance.md, "Live windows wait for their data").
MAX_WAIT_S = 2.0
#: How often the live scheduler looks again at a stream it is waiting for.
DATA_POLL_S = 0.005


@dataclass
class EngineStats:
    made: int = 0
    dropped: int = 0
    batches: int = 0
    late_windows: int = 0          # windows skipped because the engine fell far behind
    stalled_windows: int = 0       # windows assembled without waiting for a stalled stream


@dataclass(frozen=True)
class EngineError:
    """An error in the scheduler, the model worker or a callback: the exception object itself
    (with its traceback), where it happened, and when on the session clock."""

    where: str
    error: BaseException
    t_us: int

    @property
    def traceback(self) -> str:
        e = self.error
        return "".join(traceback.format_exception(type(e), e, e.__traceback__))

    def __str__(self) -> str:
        return f"{self.where}: {type(self.error).__name__}: {self.error}"


def _head(out: Dict[str, np.ndarray], name: str, i: int):
    return None if name not in out else out[name][i]


def window_inputs(w) -> Dict[str, int]:
    """What a window's model inputs were, compactly, for telling later whether a replay built the
    same window: its gaze sample count and CRC-32 checksums of its raw eye + fixation features and
    of its face frames (with their masks). Empty for an object that is not a full window."""
    if not all(hasattr(w, k) for k in ("eye", "fixation", "face", "face_mask")):
        return {}

    def crc(*arrays) -> int:
        c = 0
        for a in arrays:
            c = zlib.crc32(np.ascontiguousarray(a).tobytes(), c)
        return int(c)

    return {"n_gaze": int(w.quality.get("n_gaze", 0)),
            "eye_crc": crc(w.eye, w.eye_mask, w.fixation, w.fixation_mask),
            "face_crc": crc(w.face, w.face_mask)}


def window_to_prediction(out: Dict[str, np.ndarray], i: int, w: Window, *, checkpoint: str, kind: str,
                         latency_ms: Dict[str, float], stalled: str = "") -> Prediction:
    """Turn row ``i`` of a model output dict into a :class:`Prediction` (``stalled``: the streams
    the live engine did not wait for, comma-separated)."""
    er7 = _head(out, "er7", i)
    if er7 is None:
        raise ValueError("the checkpoint has no er7 head; the live engine needs 7-class ER output")
    fer7 = _head(out, "fer7", i)
    if fer7 is not None and not np.isfinite(fer7).all():
        fer7 = None                   # a pretrained FER source that saw no face here: no reading
    fer_source = str(out["fer_source"][i]) if "fer_source" in out else ("emert" if "fer7" in out else "")
    er3 = _head(out, "er3", i)
    er3 = er3_probs_from_er7(er7) if er3 is None else er3
    va_source = "head"
    er_va = _head(out, "er_va", i)
    if er_va is None:
        va_source = "anchors"
        er_va = va_from_probs(er7)
    fer_va = fer3 = None
    if fer7 is not None:
        fer3 = _head(out, "fer3", i)
        fer3 = er3_probs_from_er7(fer7) if fer3 is None else fer3
        fer_va = _head(out, "fer_va", i)
        if fer_va is None:
            fer_va = va_from_probs(fer7)
            va_source = "anchors"
    inten = _head(out, "fer_intensity", i)
    used = out.get("modalities_used")
    modalities = ({"face": bool(used[i][0]), "eye": bool(used[i][1]), "fixation": bool(used[i][2])}
                  if used is not None else dict(zip(("face", "eye", "fixation"), w.modalities)))
    gap = None if fer7 is None else emotion_gap(er7, fer7, float(er_va[0]), float(fer_va[0]))
    lst = lambda x: None if x is None else [float(v) for v in np.ravel(x)]  # noqa: E731
    return Prediction(kind=kind, t_start_us=int(w.t_start_us), t_end_us=int(w.t_end_us), trial=int(w.trial),
                      checkpoint=checkpoint, er7=lst(er7), er3=lst(er3), er_va=lst(er_va), fer7=lst(fer7),
                      fer3=lst(fer3), fer_va=lst(fer_va),
                      fer_intensity=None if inten is None else float(np.ravel(inten)[0]),
                      gap=gap, modalities=modalities,
                      quality={"valid_gaze_fraction": float(w.quality.get("valid_gaze_fraction", 0.0)),
                               "face_found_fraction": float(w.quality.get("face_found_fraction", 0.0))},
                      latency_ms=latency_ms, va_source=va_source,
                      er_from_face=bool(out["er_face_fallback"][i]) if "er_face_fallback" in out else False,
                      fer_source=fer_source, stalled=stalled, inputs=window_inputs(w))


class LiveEngine:
    """Sliding-window recognition on live (or replayed) streams.

    Parameters
    ----------
    builder : WindowBuilder
        Over a :class:`~emer_live.features.windows.StreamSource` (live) or any source.
    model : LoadedModel
        From :func:`emer_live.model.load_checkpoint`.
    clock : SessionClock
    t_origin_us : int, optional
        Window ends are ``t_origin + W + k * hop``; default: the time :meth:`start` is called.
        A replay passes the live run's origin so both score the same windows.
    grace_s : float
        As-fast-as-possible drivers (:meth:`step` with ``sync``, replays, virtual clocks): how long
        after a window's end its data counts as complete. The live threads do not guess: they
        wait until every stream has delivered a record at or after the window's end (its
        watermark; :meth:`WindowSource.delivered_through`), so a live window holds exactly the
        data a replay of the recording gives it, whatever the machine's load.
    max_wait_s : float
        Live: a stream whose newest record is older than this counts as stalled (a dead tracker,
        an unplugged camera): windows are assembled without waiting for it, and their predictions
        name it (``stalled``).
    max_pending : int
        Bound of the queue between scheduler and model worker.
    log : PredictionLog, optional
    face_cache : bool
        Reuse each grid face frame's encoder features across the windows holding it
        (:mod:`emer_live.model.frame_cache`; same outputs as the full forward). Default on for an
        EMERT checkpoint.

    Latency (``Prediction.latency_ms``, ms, each stage measured on its own, never negative):
    ``wait`` from the window's end (session clock) until its data was complete and assembly
    began (live: the slowest stream's delivery delay), ``assemble`` reading this window's data
    (gaze rows, frames decoded in this call), ``features`` the rest of building it (eye/fixation
    features, face crops made now, session reference, normalisation), ``queue`` waiting for the
    model worker, ``model`` the model call that scored it (the whole batch's wall time),
    ``total`` from the start of building to publishing.
    """

    STAGES = ("assemble", "features", "queue", "model")

    def __init__(self, *, builder: WindowBuilder, model, clock, t_origin_us: Optional[int] = None,
                 grace_s: float = 0.1, max_wait_s: float = MAX_WAIT_S, max_pending: int = 2,
                 log: Optional[PredictionLog] = None, output_queue_size: int = 256, face_cache: bool = True) -> None:
        self.builder = builder
        self.spec: WindowSpec = builder.spec
        self.model = model
        self.clock = clock
        self.t_origin_us = t_origin_us
        self.grace_us = int(grace_s * 1e6)
        self.max_wait_us = int(max_wait_s * 1e6)
        self.stalled: Dict[str, Optional[int]] = {}   # live: streams not waited for now -> newest record
        self._waiting = False          # live: the next piece of work waits for a stream's data
        self.max_pending = max(1, int(max_pending))
        self.log = log
        self.callbacks: List[Callable[[Prediction], None]] = []
        self.predictions: "queue.Queue[Prediction]" = queue.Queue(maxsize=output_queue_size)
        self.stats = EngineStats()
        self.latencies: Dict[str, List[float]] = {k: [] for k in ("wait",) + self.STAGES + ("total",)}
        self._pending: Deque = deque()
        self._trials: Dict[int, dict] = {}
        self._spans: Dict[int, List[int]] = {}     # trial -> [onset, offset] of announced clips
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._model_lock = threading.Lock()
        self.on_gpu = getattr(getattr(model, "device", None), "type", "cpu") == "cuda"
        self.face_cache = None
        if face_cache and builder.use_face and hasattr(getattr(model, "model", None), "encode_frames"):
            from ..model.frame_cache import FaceFeatureCache

            self.face_cache = FaceFeatureCache(model)
        self._cache_owner = builder.faces     # keys (grid times) name crops of this sampler only
        self.errors: List[EngineError] = []
        self.latest_window: Optional[Window] = None    # newest sliding window scored (displays)
        self._crops_cache = None                         # (window, crops, found) for latest_faces
        #: called with each :class:`EngineError` on the thread it happened in
        self.error_callbacks: List[Callable[[EngineError], None]] = []
        self.reference_kind = reference_kind(getattr(model, "norm_stats", None))
        if self.reference_kind == "baseline":
            raise ConfigError(f"{getattr(model, 'path', 'the checkpoint')}: trained with --eye-reference baseline, "
                              "which needs the session's baseline phase before any window; the live engine "
                              "supports checkpoints trained with --eye-reference none or session")
        self.reference: Optional[SessionReference] = None   # made with the schedule (needs the origin)
        # a checkpoint trained on some modalities only (an ablation) never sees the others live
        prov = getattr(model, "provenance", None) or {}
        names = ("face", "eye", "fixation")
        trained = prov.get("modalities")
        if not isinstance(trained, (list, tuple)) or not set(trained) & set(names):
            trained = names
        self.trained_modalities = np.array([m in trained for m in names], bool)
        self.notes: List[str] = []     # what the operator should know (printed by the front ends)
        if not self.trained_modalities.all():
            self.notes.append(f"the checkpoint was trained on {', '.join(trained)} only; it is given nothing else")
        trained_w = (prov.get("window") or {}).get("window_s")
        if isinstance(trained_w, (int, float)) and abs(float(trained_w) - self.spec.window_s) > 1e-6:
            self.notes.append(f"the checkpoint was trained on {float(trained_w):g} s windows, the engine builds "
                              f"{self.spec.window_s:g} s windows (--window): its outputs may be less reliable")

    def _record_error(self, where: str, exc: BaseException) -> None:
        err = EngineError(where=where, error=exc, t_us=int(self.clock.now_us()))
        self.errors.append(err)
        for fn in list(self.error_callbacks):
            try:
                fn(err)
            except Exception:   # an error handler that fails must not kill the worker
                traceback.print_exc()

    # ------------------------------------------------------------------ synchronous path
    def build(self, t_end_us: int, *, t_start_us: Optional[int] = None, trial: int = -1, face_sampler=None):
        t0 = time.perf_counter()
        w = self.builder.build(t_end_us, t_start_us=t_start_us, trial=trial, face_sampler=face_sampler)
        lat = {"assemble": w.timing_ms["assemble"], "features": w.timing_ms["features"], "_t0": t0}
        if self.reference_kind == "session":
            if self.reference is None:
                self._make_reference()
            t1 = time.perf_counter()
            lat["reference"] = self.reference.at(int(t_end_us))
            lat["features"] += (time.perf_counter() - t1) * 1e3
        lat["_t1"] = time.perf_counter()      # built: from here on it waits for the model
        return w, lat

    def _make_reference(self) -> None:
        """The running session reference (:mod:`emer_live.features.session_reference`) on the
        engine's grid origin, read from the same source as the windows."""
        if self.t_origin_us is None:
            self.t_origin_us = self.clock.now_us()
        rb = WindowBuilder(self.builder.source, spec=WindowSpec(window_s=REFERENCE_WINDOW_S, hop_s=REFERENCE_WINDOW_S),
                           use_face=False, eye_config=self.builder.eye_config)
        self.reference = SessionReference(rb, self.t_origin_us)

    def _normalize(self, items) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model-ready eye/fixation inputs and the modality mask of ``items``: the checkpoint's
        statistics, after the running session reference when the checkpoint was trained on one
        (a window before the reference has enough data is scored without eyes, and says so)."""
        ws = [w for w, _, _ in items]
        m = self.model
        mask = np.array([w.modalities for w in ws], bool) & self.trained_modalities[None, :]
        eye_raw = np.stack([w.eye for w in ws])
        fix_raw = np.stack([w.fixation for w in ws])
        if self.reference_kind == "session":
            for i, (_, lat, _) in enumerate(items):
                ref = lat.get("reference")
                if ref is None:
                    mask[i, 1:] = False
                    eye_raw[i], fix_raw[i] = 0.0, 0.0
                else:
                    eye_raw[i] = apply_reference(eye_raw[i], ref[0], ref[1])
                    fix_raw[i] = apply_reference(fix_raw[i], ref[2], ref[3])
        eye, fix = m.normalize(eye_raw, fix_raw)
        eye = np.nan_to_num(eye, nan=0.0, posinf=0.0, neginf=0.0)
        fix = np.nan_to_num(fix, nan=0.0, posinf=0.0, neginf=0.0)
        if self.reference_kind == "session":
            eye[~mask[:, 1]] = 0.0
            fix[~mask[:, 2]] = 0.0
        return eye, fix, mask

    def latest_faces(self):
        """For displays: ``(face_result, crops, found)`` - the face pipeline's result for the
        newest frame it processed (box, eyes; None before the first) and the newest sliding
        window's face crops as ``(n, 112, 112, 3)`` uint8 RGB with their found mask (None before
        the first window), read-only and converted once per window. Safe from any thread."""
        faces = self.builder.faces
        res = getattr(faces, "last_result", None) if faces is not None else None
        w = self.latest_window
        if w is None:
            return res, None, None
        cached = self._crops_cache          # converted once per window, not once per redraw
        if cached is None or cached[0] is not w:
            crops = (np.clip(w.face.transpose(0, 2, 3, 1), 0, 1) * 255).astype(np.uint8)
            crops.setflags(write=False)
            found = w.face_mask.copy()
            found.setflags(write=False)
            cached = self._crops_cache = (w, crops, found)
        return res, cached[1], cached[2]

    def score(self, items) -> List[Prediction]:
        """Run the model on ``[(window, latency_dict, kind)]`` in one batch and publish."""
        ws = [w for w, _, _ in items]
        for w, _, kind in items:
            if kind == "window":
                self.latest_window = w
        m = self.model
        t_start = time.perf_counter()
        face = np.stack([w.face for w in ws])
        eye, fix, mask = self._normalize(items)
        scorable = mask.any(axis=1)
        if not scorable.all():
            # no face found and no valid gaze (eyes closed, no camera): the model cannot score
            # such a window; it is an error of its own, the rest of the batch is still scored
            for (w, _, kind), ok in zip(items, scorable):
                if not ok:
                    self._record_error(f"{kind} {w.t_start_us}..{w.t_end_us}", ValueError(
                        "no modality present (no face found, no valid gaze): not scored"))
            rest = [it for it, ok in zip(items, scorable) if ok]
            return self.score(rest) if rest else []
        prep_ms = (time.perf_counter() - t_start) * 1e3
        with self._model_lock:
            t0 = time.perf_counter()
            feats = self._face_features(face, ws, mask)
            out = m.predict(face, eye, fix, modality_mask=mask) if feats is None else \
                m.predict(face, eye, fix, modality_mask=mask, face_features=feats)
            model_ms = (time.perf_counter() - t0) * 1e3
        preds = []
        for i, (w, lat, kind) in enumerate(items):
            end = time.perf_counter()
            built = lat.get("_t1", lat["_t0"])
            latency = {"wait": lat.get("wait", 0.0), "assemble": lat["assemble"], "features": lat["features"] + prep_ms,
                       "queue": max(0.0, (t0 - built) * 1e3 - prep_ms), "model": model_ms,
                       "total": (end - lat["_t0"]) * 1e3}
            p = window_to_prediction(out, i, w, checkpoint=m.id, kind=kind, latency_ms=latency,
                                     stalled=lat.get("stalled", ""))
            preds.append(p)
            self._publish(p)
        self.stats.batches += 1
        return preds

    def _face_features(self, face: np.ndarray, ws: List[Window], mask: np.ndarray):
        """The batch's face-encoder features from the per-frame cache, or None (full forward)."""
        c = self.face_cache
        if c is None:
            return None
        if self.builder.faces is not self._cache_owner:    # sampler replaced: its grid crops are new
            c.clear()
            self._cache_owner = self.builder.faces
        return c.window_features(face, [w.face_times for w in ws], present=mask[:, 0])

    def _encode_ahead(self, ts: int, crop: Optional[np.ndarray]) -> None:
        """Live: put grid frame ``ts`` through the face encoder as soon as its crop exists (half a
        face step before the first window holding it is due), so that window's model stage runs
        only the part of EMERT that depends on the whole window. The frame is the window's face
        input at that slot exactly (:meth:`WindowBuilder.build`: RGB / 255, zeros without a face)."""
        c = self.face_cache
        if c is None or self.builder.faces is not self._cache_owner:
            return
        from ..features.face import to_tensor_layout
        from ..features.windows import FACE_SIZE

        frame = (np.zeros((3, FACE_SIZE, FACE_SIZE), np.float32) if crop is None
                 else to_tensor_layout(crop, normalization="none")[0])
        with self._model_lock:
            c.add(int(ts), frame)

    def process(self, t_end_us: int, *, t_start_us: Optional[int] = None, trial: int = -1,
                kind: str = "window") -> Prediction:
        """Build and score one window now, in the caller's thread."""
        w, lat = self.build(t_end_us, t_start_us=t_start_us, trial=trial)
        return self.score([(w, lat, kind)])[0]

    def predict_trial(self, onset_us: int, offset_us: int, trial: int, *, face_sampler=None) -> Prediction:
        """The paper's whole-trial prediction (8 face frames, 32 eye steps over the clip), now."""
        w, lat = self.build(offset_us, t_start_us=onset_us, trial=trial, face_sampler=face_sampler)
        return self.score([(w, lat, "trial")])[0]

    def schedule_trial(self, trial: int, onset_us: int, offset_us: int) -> None:
        """Announce a stimulus presentation (live): the scheduler takes the trial's 8 face frames
        while the clip plays (the camera ring holds only seconds) and queues the whole-trial
        prediction once ``offset_us`` has passed. If the clip ends early, call
        :meth:`end_trial` with the real offset."""
        times = self.builder.face_sample_times(onset_us, offset_us, whole_trial=True)
        with self._cv:
            self._spans[trial] = [int(onset_us), int(offset_us)]
            self._trials[trial] = {"onset": int(onset_us), "offset": int(offset_us), "times": times,
                                   "sampler": self.builder.trial_sampler(), "next": 0}
            self._cv.notify()

    def end_trial(self, trial: int, offset_us: int) -> None:
        with self._cv:
            if trial in self._spans:
                self._spans[trial][1] = int(offset_us)
            t = self._trials.get(trial)
            if t is not None and offset_us != t["offset"]:
                # aborted or cut short: score what was presented, with frames re-spread over it
                # (a new record, so a scheduler step working on the old one cannot mix them)
                self._trials[trial] = {
                    "onset": t["onset"], "offset": int(offset_us), "next": 0,
                    "times": self.builder.face_sample_times(t["onset"], int(offset_us), whole_trial=True),
                    "sampler": self.builder.trial_sampler()}

    def finish_trials(self) -> List[Prediction]:
        """Score, now, every announced trial whose clip has ended (call after :meth:`stop`: an
        aborted clip still gets its partial whole-trial prediction)."""
        now = self.clock.now_us()
        items = self._service_trials(now + self.grace_us, now + self.grace_us, now)
        return self.score(items) if items else []

    def _service_trials(self, cam_by: int, gaze_by: int, now: int) -> list:
        """Prefetch the whole-trial face frames at or before ``cam_by`` (the camera has delivered
        through then); build the whole-trial windows whose clip ended by ``gaze_by`` and whose
        frames are all made.
        Trial state is changed by the controller's thread (:meth:`end_trial`), so each trial is
        taken out under the lock, worked on, and put back unless it was replaced meanwhile."""
        items = []
        with self._cv:
            pending = list(self._trials.items())
        for trial, t in pending:
            sampler = t["sampler"]
            lookback = self.builder.face_lookback_us(t["offset"] - t["onset"])
            while sampler is not None and t["next"] < len(t["times"]) and t["times"][t["next"]] <= cam_by:
                sampler.crop_at(self.builder.source, int(t["times"][t["next"]]), lookback_us=lookback)
                t["next"] += 1
            if t["offset"] <= gaze_by and (sampler is None or t["next"] >= len(t["times"])):
                with self._cv:
                    if self._trials.get(trial) is not t:
                        continue          # re-announced while we worked: next step handles it
                    del self._trials[trial]
                try:
                    w, lat = self.build(t["offset"], t_start_us=t["onset"], trial=trial, face_sampler=sampler)
                except Exception as exc:
                    self._record_error(f"trial {trial}", exc)
                    continue
                items.append((w, self._note_wait(lat, t["offset"], now), "trial"))
        return items

    def _publish(self, p: Prediction) -> None:
        self.stats.made += 1
        for k in self.latencies:
            self.latencies[k].append(p.latency_ms.get(k, 0.0))
        if self.log is not None:
            self.log.write(p)
        try:
            self.predictions.put_nowait(p)
        except queue.Full:  # nobody is reading the queue: keep the newest
            try:
                self.predictions.get_nowait()
            except queue.Empty:
                pass
            self.predictions.put_nowait(p)
        for cb in list(self.callbacks):
            try:
                cb(p)
            except Exception as exc:   # one failing callback must not starve the others
                self._record_error(f"callback {getattr(cb, '__qualname__', cb)}", exc)

    # ------------------------------------------------------------------ threaded live path
    def start(self) -> None:
        self.init_schedule()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._scheduler, name="live-scheduler", daemon=True),
                         threading.Thread(target=self._worker, name="live-model", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    # The scheduler's work, one step at a time: the live thread calls step() when it wakes;
    # as-fast-as-possible drivers (replays, virtual-clock sessions) call it after moving time on.
    def init_schedule(self) -> None:
        """Set the first window end and face grid time (from the origin); :meth:`start` does it,
        an as-fast-as-possible driver calls it before its first :meth:`step`."""
        b = self.builder
        if self.t_origin_us is None:
            self.t_origin_us = self.clock.now_us()
        self._t_end = self.t_origin_us + self.spec.window_us
        use_face = b.use_face and b.grid_origin_us is not None
        self._next_face = b.grid_origin_us + b.face_step_us // 2 if use_face else None

    @property
    def next_window_end_us(self) -> int:
        """End time of the next sliding window to assemble (after :meth:`init_schedule`)."""
        return self._t_end

    def next_due_us(self) -> int:
        """Session time at which :meth:`step` has work next (window end, face frame, trial)."""
        due = self._t_end if self._next_face is None else min(self._t_end, self._next_face)
        with self._cv:
            trials = list(self._trials.values())
        for t in trials:
            # face frames are work only with a sampler (no face modality: the clip's end is due)
            if t["sampler"] is not None and t["next"] < len(t["times"]):
                due = min(due, t["times"][t["next"]])
            due = min(due, t["offset"])
        return due + self.grace_us

    def step(self, now: Optional[int] = None, *, sync: bool = False, defer: Optional[list] = None) -> List[Prediction]:
        """Do everything whose data is complete at ``now``: face frames of passed grid times,
        whole-trial frames and windows, and the next sliding window. With ``sync`` (drivers that
        move time on themselves) data counts as complete ``grace`` after its time, and the
        windows are scored here and returned; otherwise (the live scheduler) only once every
        stream has delivered past it (:meth:`data_horizon`), and the windows go to the model
        worker's queue. With ``sync`` and a ``defer`` list, the built windows are appended to it
        instead, for the caller to :meth:`score` several at once (a fast replay's batches)."""
        if not hasattr(self, "_t_end"):
            self.init_schedule()
        b, hop = self.builder, self.spec.hop_us
        now = self.clock.now_us() if now is None else now
        # work at time t is due once t <= its stream's horizon: every record before t has been
        # delivered (and a frame at t itself: a later one with the same time is never the one a
        # window takes). Face crops need the face stream only (camera frames, or privacy mode's
        # crops; its ring holds seconds), windows the gaze and their grid crops.
        if sync:
            cam_by = gaze_by = due_by = now - self.grace_us
        else:
            h = self.data_horizon(now)
            gaze_by = h.pop("gaze", now)
            # the face stream, whichever the source reads: camera frames, or (privacy mode) the
            # crops the recording path makes from them - one rule for both
            cam_by = min(h.values(), default=now)
            due_by = min(cam_by, gaze_by)
        out: List[Prediction] = []
        if not sync and due_by - self._t_end > hop + self.max_wait_us:
            # far behind (the engine itself stalled, not the data): skip to the newest window
            skipped = (due_by - self._t_end) // hop
            self.stats.late_windows += int(skipped)
            self.stats.dropped += int(skipped)
            self._t_end += int(skipped) * hop
        # face crops of grid times that have passed, while their frames are in the ring
        step = b.face_step_us
        while self._next_face is not None and self._next_face <= cam_by:
            if self._next_face >= self._t_end - self.spec.window_us - step:
                try:
                    crop = b.prefetch_face(self._next_face)
                    if not sync:
                        self._encode_ahead(self._next_face, crop)
                except Exception as exc:
                    self._record_error(f"face {self._next_face}", exc)
            self._next_face += step
        with self._cv:
            busy = bool(self._trials)
        if busy:
            for item in self._service_trials(cam_by, gaze_by, now):
                out += self._dispatch(item, sync, defer)
        # a window is due once the gaze is complete through its end and its grid crops are made
        while self._t_end <= gaze_by and (self._next_face is None or self._next_face >= self._t_end):
            try:
                item = self.build(self._t_end, trial=self._trial_of(self._t_end))
            except Exception as exc:  # keep running; the error is counted and shown
                self._record_error(f"window {self._t_end}", exc)
                item = None
            if item is not None:
                lat = self._note_wait(item[1], self._t_end, now)
                if lat.get("stalled"):
                    self.stats.stalled_windows += 1
                out += self._dispatch((item[0], lat, "window"), sync, defer)
            self._t_end += hop
            if not sync:
                break
        self._waiting = not sync and self._next_work_us() <= now
        return out

    def data_horizon(self, now: int) -> Dict[str, int]:
        """Live: per stream the window source reads, the session time before which it has
        delivered all its records - its newest record's time (streams keep time order), at most
        ``now``. A stream whose newest record is more than ``max_wait`` old (or that has
        delivered nothing ``max_wait`` after the origin) is stalled: it is not waited for (its
        horizon is ``now``), and :attr:`stalled` names it."""
        out: Dict[str, int] = {}
        stalled: Dict[str, Optional[int]] = {}
        for name, last in self.builder.source.delivered_through().items():
            newest = int(last) if last is not None else int(self.t_origin_us) - 1
            if now - newest > self.max_wait_us:
                stalled[name] = None if last is None else int(last)
                out[name] = int(now)
            else:
                out[name] = min(int(now), newest)
        self.stalled = stalled
        return out

    def _note_wait(self, lat: dict, t_due_us: int, now: int) -> dict:
        """Add to a built window's latency record how long after its end it was assembled, and
        the streams it did not wait for (live)."""
        lat["wait"] = max(0.0, (now - int(t_due_us)) / 1e3)
        stalled = {k: v for k, v in self.stalled.items() if v is None or v < int(t_due_us)}
        lat["stalled"] = ",".join(sorted(stalled))
        return lat

    def _next_work_us(self) -> int:
        """Session time of the next piece of work (window end, face frame, trial), no grace."""
        return self.next_due_us() - self.grace_us

    def _trial_of(self, t_end_us: int) -> int:
        """The trial whose clip holds the whole sliding window ending at ``t_end_us`` (as training
        labels its sliding windows), else -1."""
        t0 = t_end_us - self.spec.window_us
        with self._cv:
            spans = list(self._spans.items())
        for trial, (onset, offset) in spans:
            if onset <= t0 and t_end_us <= offset:
                return int(trial)
        return -1

    def _dispatch(self, item, sync: bool, defer: Optional[list] = None) -> List[Prediction]:
        if sync and defer is not None:
            defer.append(item)
            return []
        if sync:
            return self.score([item])
        with self._cv:
            self._pending.append(item)
            while len(self._pending) > self.max_pending and not self.on_gpu:
                # drop the oldest sliding window (trial predictions are kept)
                idx = next((i for i, it in enumerate(self._pending) if it[2] == "window"), None)
                if idx is None:
                    break
                del self._pending[idx]
                self.stats.dropped += 1
            self._cv.notify()
        return []

    def _scheduler(self) -> None:
        while not self._stop.is_set():
            if self._waiting:
                # due work whose data is still in flight: look at the streams again shortly
                self._stop.wait(DATA_POLL_S)
            else:
                wake = self._next_work_us()
                with self._cv:
                    busy = bool(self._trials)
                if busy:
                    wake = min(wake, self.clock.now_us() + 20_000)
                _sleep_until(self.clock, wake, self._stop)
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception as exc:   # never die silently: count it, keep scheduling
                self._record_error("scheduler", exc)
                self._stop.wait(0.1)

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stop.is_set():
                    self._cv.wait(0.2)
                if not self._pending and self._stop.is_set():
                    return
                if self.on_gpu:
                    items = list(self._pending)
                    self._pending.clear()
                else:
                    items = [self._pending.popleft()]
            try:
                self.score(items)
            except Exception as exc:
                self._record_error("model", exc)

    def summary(self) -> dict:
        def pct(v, q):
            return float(np.percentile(v, q)) if v else float("nan")

        lat = {k: {"p50": pct(v, 50), "p95": pct(v, 95), "max": max(v) if v else float("nan")}
               for k, v in self.latencies.items()}
        slowest = None
        if self.latencies["total"]:
            slowest = max(self.STAGES, key=lambda k: lat[k]["p95"])
        out = {"predictions": self.stats.made, "dropped": self.stats.dropped, "batches": self.stats.batches,
               "errors": len(self.errors), "latency_ms": lat, "slowest_stage": slowest,
               "stalled_windows": self.stats.stalled_windows}
        if self.face_cache is not None:
            out["face_cache"] = {"frames_encoded": self.face_cache.encoded, "hits": self.face_cache.hits}
        return out

    def summary_line(self) -> str:
        """The summary as one line for the operator (names the slowest stage by its p95)."""
        s = self.summary()
        line = (f"summary: {s['predictions']} predictions, {s['dropped']} dropped, {s['errors']} errors; latency ms "
                + "; ".join(f"{k} p50 {v['p50']:.0f} p95 {v['p95']:.0f} max {v['max']:.0f}"
                            for k, v in s["latency_ms"].items()))
        if s["slowest_stage"]:
            line += f"; slowest stage: {s['slowest_stage']}"
        if s["stalled_windows"]:
            line += (f"; {s['stalled_windows']} windows assembled without waiting for a stalled stream "
                     "(their predictions name it)")
        return line


def _sleep_until(clock, t_us: int, stop: threading.Event) -> None:
    while not stop.is_set():
        left = t_us - clock.now_us()
        if left <= 0:
            return
        stop.wait(min(left / 1e6, 0.05))
