"""Wiring for a live run: devices -> (recorder) -> window builder -> engine -> outputs.

Used by ``emer-live live`` and meant for the GUI too: :class:`LiveRun` exposes the device set,
the engine and a stop flag, and reports predictions through ``engine.callbacks``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Optional

from ..devices.factory import make_devices, parse_size
from ..features.windows import StreamSource, WindowBuilder, WindowSpec
from ..recording.writer import Recorder, record_device_set
from .engine import LiveEngine
from .prediction import Prediction, PredictionLog

__all__ = ["LiveRun"]


class LiveRun:
    def __init__(self, *, args, model, speed: Optional[float], out_path: Optional[Path]) -> None:
        self.args = args
        self.model = model
        self.speed = speed
        self.out_path = out_path
        self.stop_event = threading.Event()
        self.ds = None
        self.engine: Optional[LiveEngine] = None
        self.rec: Optional[Recorder] = None
        self._jsonl = None
        self._print_lock = threading.Lock()
        self.spec = WindowSpec(window_s=args.window, hop_s=args.hop)

    # ------------------------------------------------------------------ outputs
    def _on_prediction(self, p: Prediction) -> None:
        with self._print_lock:
            if self._jsonl is not None:
                self._jsonl.write(p.to_json() + "\n")
                self._jsonl.flush()
            if not self.args.quiet:
                origin = self.engine.t_origin_us if self.engine is not None else None
                print(p.compact(t0_us=origin), flush=True)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        a = self.args
        if self.out_path is not None:
            self._jsonl = open(self.out_path, "x", encoding="utf-8")
        from ..session.ids import validate_participant_id

        participant = validate_participant_id(a.participant)
        self.ds = make_devices(tracker=a.tracker, camera=a.camera, mic="none", rate=a.rate, fps=a.fps,
                               size=parse_size(a.size), seed=a.seed, participant=participant, speed=self.speed)
        self.ds.open_all()
        if a.record:
            self.rec = record_device_set(self.ds, Path(a.record), meta={
                "participant": participant, "session_id": Path(a.record).name, "kind": "live", "seed": a.seed})

    def _engine(self, origin: int, source=None) -> LiveEngine:
        ds = self.ds
        rect = None
        if ds.replay is not None:
            rect = ds.replay.reader.meta.get("stimulus_rect")
        # Frames being recorded pass through the recorder's JPEG so live crops equal offline ones;
        # replayed frames were decoded from that JPEG already and must not be compressed again.
        from ..devices.replay import ReplayCamera

        recompress = self.rec is not None and not isinstance(ds.camera, ReplayCamera)
        if source is None:
            source = StreamSource(ds.tracker.stream if ds.tracker else None, ds.camera.stream if ds.camera else None,
                                  jpeg_quality=self.rec.jpeg_quality if recompress else None,
                                  stimulus_rect=rect)
        builder = WindowBuilder(source, spec=self.spec, use_face=ds.camera is not None, grid_origin_us=origin)
        log = PredictionLog(self.rec.path / "predictions.tsv") if self.rec is not None else None
        eng = LiveEngine(builder=builder, model=self.model, clock=ds.clock, t_origin_us=origin, log=log)
        for note in eng.notes:
            print(f"note: {note}", file=sys.stderr)
        eng.callbacks.append(self._on_prediction)
        if self.rec is not None:
            self.rec.update_meta(live={"window_s": self.spec.window_s, "hop_s": self.spec.hop_s,
                                       "t_origin_us": origin, "checkpoint": self.model.id,
                                       "checkpoint_path": str(self.model.path)})
        return eng

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        from ..recording.commands import StopFlag

        import time

        self._setup()
        status = "complete"
        self._fast_span_s = 0.0
        t_wall = time.perf_counter()
        try:
            with StopFlag() as stop:
                self.stop_event = stop.event
                if self.speed is None:
                    self._run_fast()
                else:
                    self._run_realtime()
                if stop.event.is_set():
                    status = "aborted"
                self._wall_s = time.perf_counter() - t_wall
        finally:
            self._teardown(status)
        return self._report()

    def _run_realtime(self) -> None:
        ds = self.ds
        if self.rec is not None:
            self.rec.start()
        ds.start_all()
        origin = ds.clock.now_us()
        self.engine = self._engine(origin)
        self.engine.start()
        duration = self.args.duration
        if duration is None and ds.replay is not None:
            duration = ds.replay.duration_s
        # run until the window ending at `duration` has been assembled (its end + grace)
        end_at = None if duration is None else duration + self.engine.grace_us / 1e6 + 0.05
        while not self.stop_event.is_set():
            elapsed = (ds.clock.now_us() - origin) / 1e6
            if end_at is not None and elapsed >= end_at:
                break
            if ds.replay is not None and ds.replay.finished and \
                    self.engine._t_end > ds.replay.t_end_us + 1:
                break   # the replay is over and its last window has been assembled
            self.stop_event.wait(0.05)
        self.engine.stop()

    def _run_fast(self) -> None:
        """Replay as fast as possible: move replay time to each moment the engine has work
        (face grid frame, window end) and let it do that work synchronously - the same sequence
        of work the live scheduler does, so the predictions are the same."""
        src = self.ds.replay
        live_meta = src.reader.meta.get("live") or {}
        origin = int(live_meta.get("t_origin_us", src.t_start_us))
        if self.rec is not None:
            self.rec.start(thread=False)
        # nothing records the replay: windows read the recording directly (only grid frames decoded,
        # ahead of use) and are scored a few at a time (issue 16)
        from .fast_replay import fast_batch_size, fast_replay_source

        direct = None if self.rec is not None else fast_replay_source(self.ds)
        eng = self._engine(origin, source=direct)
        self.engine = eng
        eng._init_schedule()
        if direct is not None:
            direct.start_faces(eng.builder)
        batch = fast_batch_size(eng)
        t_stop = src.t_end_us if self.args.duration is None else min(src.t_end_us, origin + int(self.args.duration * 1e6))
        pending: list = []

        def score() -> None:
            preds = eng.score(pending) if pending else []
            pending.clear()
            if preds:
                self._fast_span_s = max(self._fast_span_s, (max(p.t_end_us for p in preds) - origin) / 1e6)

        try:
            while eng._t_end <= t_stop + 1 and not self.stop_event.is_set():
                due = eng.next_due_us()
                if direct is None:
                    src.advance_to(due)
                else:
                    src.clock.advance_to(due)     # the devices' streams are not read
                if self.rec is not None:
                    self.rec.drain()
                eng.step(due, sync=True, defer=pending)
                if len(pending) >= batch:
                    score()
            score()
        finally:
            if direct is not None:
                direct.close()

    def _teardown(self, status: str) -> None:
        if self.ds is not None:
            self.ds.stop_all()
        if self.ds is not None and self.ds.phantom is not None and hasattr(self.ds.phantom, "close_truth"):
            self.ds.phantom.close_truth()
        if self.rec is not None:
            self.rec.stop(status=status)
        if self.engine is not None and self.engine.log is not None:
            self.engine.log.close()
        if self._jsonl is not None:
            self._jsonl.close()

    def _report(self) -> int:
        if self.engine is None:
            return 1
        print(self.engine.summary_line())
        if self.speed is None and self._fast_span_s:
            print(f"real-time factor: {self._fast_span_s / self._wall_s:.2f}x "
                  f"({self._fast_span_s:.1f} s of recording analysed in {self._wall_s:.1f} s)")
        for e in self.engine.errors[:5]:
            print(f"engine error: {e}", file=sys.stderr)
        return 0 if not self.engine.errors else 1
