"""Live windows wait for their data (issue 21): the live scheduler assembles a window, a face grid
crop or a whole-trial window only once every stream has delivered past its time (the streams'
watermarks), so samples and frames in flight are never left out; a stream that stalls is waited
for at most ``max_wait`` and the prediction names it. Driven by hand on a manual clock, with
streams filled late on purpose - no model, no timing luck."""

from types import SimpleNamespace

import numpy as np
import pytest

from emer_live.clock import ReplayClock
from emer_live.features.face_crops import CropStreamSource
from emer_live.features.windows import FaceSampler, RecordingSource, StreamSource, WindowBuilder, WindowSpec
from emer_live.live.engine import LiveEngine, window_inputs
from emer_live.recording.crops import face_crop_dtype
from emer_live.schema import GAZE_DTYPE, frame_dtype
from emer_live.streams import Stream

T0 = 10_000_000
W_US, HOP_US = 2_000_000, 1_000_000
FPS_US = 100_000          # 10 fps


class _CropPipeline:
    """A face pipeline that 'finds' a face in every frame; the crop's pixels name the frame time,
    and the frames it saw are listed (the real pipeline is stateful, so the sequence matters)."""

    def __init__(self) -> None:
        self.seen = []

    def process(self, frame, t_us):
        self.seen.append(int(t_us))
        crop = np.full((112, 112, 3), int(frame[0, 0, 0]), np.uint8)
        return SimpleNamespace(found=True, crop_rgb=crop)


def _gaze(times):
    g = np.zeros(len(times), GAZE_DTYPE)
    g["t_us"] = times
    for eye in ("left", "right"):
        g[f"{eye}_gaze_point_validity"] = 1
        g[f"{eye}_pupil_validity"] = 1
        g[f"{eye}_pupil_diameter"] = 3.0 + 0.5 * np.sin(np.asarray(times) / 3e5)
        g[f"{eye}_gaze_point_on_display_area_x"] = 0.5 + 0.2 * np.sin(np.asarray(times) / 7e5)
        g[f"{eye}_gaze_point_on_display_area_y"] = 0.5
    return g


def _frames(times):
    f = np.zeros(len(times), frame_dtype(8, 8))
    f["t_us"] = times
    for i, t in enumerate(times):
        f["image"][i] = (int(t) // FPS_US) % 251      # a frame's pixels name its time
    return f


def _crop_records(times):
    """Privacy mode's face crop stream records (what the recording path's crop stage makes):
    a face in every frame, the crop's pixels naming the frame time."""
    rec = np.zeros(len(times), face_crop_dtype(112, landmarks=False))
    rec["t_us"], rec["found"], rec["box"] = times, 1, (10, 10, 50, 50)
    for i, t in enumerate(times):
        rec["crop"][i] = (int(t) // FPS_US) % 251
    return rec


class _Rig:
    """Gaze (100 Hz) and camera (10 fps) streams the test fills by hand, a manual clock, and a
    live engine on them (a stub model: only windows are built here, none is scored). With
    ``crops`` the face stream is privacy mode's: crops made on the recording path, one per frame."""

    def __init__(self, max_wait_s: float = 2.0, *, crops: bool = False) -> None:
        self.clock = ReplayClock(T0, speed=None)
        self.gaze = Stream("gaze", GAZE_DTYPE, 4096, nominal_rate_hz=100)
        self.crops = crops
        if crops:
            self.camera = Stream("face_crops", face_crop_dtype(112, landmarks=False), 256, nominal_rate_hz=10)
            src = CropStreamSource(self.gaze, self.camera)
        else:
            self.camera = Stream("camera", frame_dtype(8, 8), 256, nominal_rate_hz=10)
            src = StreamSource(self.gaze, self.camera)
        self.pipe = _CropPipeline()
        b = WindowBuilder(src, spec=WindowSpec(window_s=W_US / 1e6, hop_s=HOP_US / 1e6, n_face=2, steps=4),
                          face_sampler=FaceSampler(self.pipe), grid_origin_us=T0)
        model = SimpleNamespace(norm_stats=None, provenance={}, device=None, model=None)
        self.engine = LiveEngine(builder=b, model=model, clock=self.clock, t_origin_us=T0, max_wait_s=max_wait_s)
        self.engine.init_schedule()
        self.gaze_to = self.cam_to = T0

    def deliver(self, *, gaze_to=None, camera_to=None) -> None:
        """Append the records with times up to (excluding) these."""
        if gaze_to is not None and gaze_to > self.gaze_to:
            ts = np.arange(self.gaze_to, gaze_to, 10_000)
            self.gaze.extend(_gaze(ts))
            self.gaze_to = int(ts[-1]) + 10_000
        if camera_to is not None and camera_to > self.cam_to:
            ts = np.arange(self.cam_to, camera_to, FPS_US)
            self.camera.extend(_crop_records(ts) if self.crops else _frames(ts))
            self.cam_to = int(ts[-1]) + FPS_US

    def step(self, now: int):
        self.clock.advance_to(now)
        self.engine.step()
        items = list(self.engine._pending)
        self.engine._pending.clear()
        return items


def test_a_window_waits_for_samples_and_frames_in_flight():
    r = _Rig()
    end = T0 + W_US
    last_grid = r.engine.builder.grid_times(T0, end)[-1]
    # the clock is 300 ms past the window's end, but gaze arrived only up to 250 ms before it,
    # and the frame at the window's last face grid time is still in flight
    r.deliver(gaze_to=end - 250_000, camera_to=last_grid - 50_000)
    assert r.step(end + 300_000) == []
    assert r.engine._waiting            # the scheduler polls the streams again shortly
    r.deliver(gaze_to=end + 5_000)
    assert r.step(end + 320_000) == []  # the gaze is complete, the grid frame is not
    r.deliver(camera_to=last_grid + 1)
    (w, lat, kind), = r.step(end + 400_000)
    assert kind == "window" and w.t_end_us == end and lat["stalled"] == ""
    assert lat["wait"] == pytest.approx(400.0)
    # the window holds every sample of [end - W, end): the one a replay of the recording builds
    assert w.quality["n_gaze"] == W_US // 10_000
    rec = WindowBuilder(_Recorded(r), spec=r.engine.spec, face_sampler=FaceSampler(_CropPipeline()),
                        grid_origin_us=T0).build(end)
    np.testing.assert_array_equal(w.eye, rec.eye)
    np.testing.assert_array_equal(w.face, rec.face)
    assert window_inputs(w) == window_inputs(rec) and window_inputs(w)["n_gaze"] == 200
    # each grid crop came from the last frame at or before its grid time, though that frame was
    # delivered after the grid time had passed
    grid = r.engine.builder.grid_times(T0, end)
    assert r.pipe.seen == [(g // FPS_US) * FPS_US for g in grid]


def test_a_stalled_stream_is_waited_for_at_most_max_wait_and_named():
    r = _Rig(max_wait_s=1.0)
    r.deliver(gaze_to=T0 + 1_500_000, camera_to=T0 + 10_000_000)   # the tracker dies at 1.5 s
    end = T0 + W_US
    assert r.step(end + 400_000) == []                 # 0.9 s without gaze: still waiting
    (w, lat, _), = r.step(end + 600_000)               # 1.1 s: the tracker has stalled
    assert w.t_end_us == end and lat["stalled"] == "gaze"
    assert r.engine.stalled == {"gaze": T0 + 1_490_000}
    # once stalled, later windows are not held back
    (w2, lat2, _), = r.step(end + HOP_US + 10_000)
    assert w2.t_end_us == end + HOP_US and lat2["stalled"] == "gaze"
    assert r.engine.stats.stalled_windows == 2
    assert "2 windows assembled without waiting for a stalled stream" in r.engine.summary_line()
    # the tracker comes back: it is waited for again
    r.deliver(gaze_to=end + 3 * HOP_US)
    (w3, lat3, _), = r.step(end + 2 * HOP_US + 10_000)
    assert lat3["stalled"] == "" and r.engine.stalled == {}


def test_privacy_mode_crops_wait_by_the_same_rule():
    """--face-video crops: the windows read the crops the recording path makes, not frames; they
    wait for the gaze and for the crop stream's watermark as for the camera's (no grace, no
    special case), so a window holds every sample and the crop of the last frame at or before
    each grid time - what a replay of the kept crops gives it; a stalled crop stream is named."""
    r = _Rig(crops=True)
    end = T0 + W_US
    grid = r.engine.builder.grid_times(T0, end)
    r.deliver(gaze_to=end - 250_000, camera_to=grid[-1] - 50_000)
    assert r.step(end + 300_000) == []              # gaze and the last grid frame's crop in flight
    r.deliver(gaze_to=end + 5_000)
    assert r.step(end + 320_000) == []              # the gaze is complete, the crop is not
    r.deliver(camera_to=grid[-1] + 1)
    (w, lat, kind), = r.step(end + 400_000)
    assert kind == "window" and w.t_end_us == end and lat["stalled"] == ""
    assert w.quality["n_gaze"] == W_US // 10_000 and w.face_mask.all()
    assert [int(round(float(f[0, 0, 0]) * 255)) for f in w.face] == [(g // FPS_US) % 251 for g in grid]

    s = _Rig(max_wait_s=1.0, crops=True)
    s.deliver(gaze_to=T0 + 10_000_000, camera_to=T0 + 1_500_000)   # the crops stop at 1.5 s
    assert s.step(end + 400_000) == []
    (w, lat, _), = s.step(end + 600_000)
    assert lat["stalled"] == "face_crops" and s.engine.stalled == {"face_crops": T0 + 1_400_000}


def test_whole_trial_frames_wait_for_the_camera():
    r = _Rig()
    on, off = T0 + 500_000, T0 + 1_300_000
    r.engine.schedule_trial(1, on, off)
    times = r.engine._trials[1]["times"]
    r.deliver(gaze_to=off + 10_000, camera_to=times[0] - 50_000)
    r.step(times[0] + 200_000)
    assert r.engine._trials[1]["next"] == 0            # its frame is still in flight
    r.deliver(camera_to=off + FPS_US)
    got = r.step(off + 50_000)
    trial = [it for it in got if it[2] == "trial"]
    assert len(trial) == 1 and trial[0][0].t_end_us == off
    # both trial frames came from the last frame at or before their time
    expect = [(t // FPS_US) % 251 for t in times]
    assert trial[0][0].face_mask.all()
    assert [int(round(float(f[0, 0, 0]) * 255)) for f in trial[0][0].face] == expect


class _Recorded(RecordingSource):
    """What a replay reads: everything the rig's streams received, with nothing in flight."""

    def __init__(self, rig) -> None:
        self._gaze = rig.gaze.window(0, 2**62)
        cam = rig.camera.window(0, 2**62)
        self._frame_t = cam["t_us"]
        self._images = {int(t): img for t, img in zip(cam["t_us"], cam["image"])}
        self.stimulus_rect = None

    def frame_at(self, t_us):
        return self._images.get(int(t_us))


_BUSY_LOOP = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 300:\n    pass\n"


@pytest.mark.slow
@pytest.mark.torch
def test_a_1x_session_under_load_equals_its_reanalysis(tmp_path, clip_library):
    """A real-time session (time scale 1: the 60 s baseline, then a trial with a 2 s clip) with
    the demo checkpoint live, while two busy loops compete for the CPU; re-analysed with its own
    checkpoint, every sliding window and the whole-trial prediction equal the live ones within
    1e-5 (predictions.tsv keeps 6 significant digits)."""
    import subprocess
    import sys

    from emer_live.app import RunConfig
    from emer_live.app.replay import Reanalysis, ReplaySession, compare_predictions
    from emer_live.app.run import default_checkpoint
    from emer_live.session.runner import run_headless_session

    ckpt = str(default_checkpoint())
    hogs = [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]) for _ in range(2)]
    try:
        out = run_headless_session(RunConfig(
            kind="session", participant="P05", out_root=str(tmp_path), stimuli=str(clip_library), n_trials=1,
            time_scale=1.0, size=(320, 240), fps=15, rate=120, seed=5, checkpoint=ckpt, model_device="cpu"))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    s = ReplaySession(out)
    assert s.status == "complete" and not s.damaged
    assert s.duration_s >= 60
    live = s.windows
    assert len(live) >= 55 and (live["lat_wait_ms"] >= 0).all()
    assert live["stalled"].isna().all(), live["stalled"].value_counts()     # no stream stalled
    r = Reanalysis(s, ckpt)
    while r.step():
        pass
    r.close()
    assert r.error is None and r.status == "complete"
    c = compare_predictions(live, r.predictions, s.trial_predictions, t0_us=s.t0_us)
    assert c.only_recorded == 0 and c.matched == len(live), c.text()
    assert c.inputs_compared == c.matched and not c.inputs_differ and not c.trial_inputs_differ, c.text()
    assert c.overall_max <= 1e-5, c.text()
    assert c.trials_recorded == c.trials_new == 1, c.text()
    assert max(c.trial_max_abs_diff.values()) <= 1e-5, c.text()
