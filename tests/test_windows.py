"""Model inputs from raw streams (issue 5): windows CLI, live == recorded, bad input."""

import numpy as np
import pytest

from emer_live.cli import main
from emer_live.clock import ReplayClock
from emer_live.features.windows import RecordingSource, WindowBuilder, WindowSpec
from emer_live.recording import Recorder, SessionReader
from emer_live.schema import frame_dtype
from emer_live.streams import Stream


def test_windows_cli_on_20s_session(recorded20, tmp_path, capsys):
    out = tmp_path / "W.npz"
    assert main(["windows", str(recorded20), "--window", "8", "--hop", "1", "--out", str(out)]) == 0
    z = np.load(out)
    n = len(z["t_end_us"])
    # 8 s windows every 1 s while they fit in the data: 13 when the recording spans 20 s; a loaded
    # machine can end the real-time recording a few ms short of 20 s, which leaves 12
    r = SessionReader(recorded20)
    first = min(int(r.gaze()["t_us"][0]), int(r.camera_times()[0]))
    last = max(int(r.gaze()["t_us"][-1]), int(r.camera_times()[-1]))
    assert last - first >= 19_500_000
    assert n == (last + 1 - first - 8_000_000) // 1_000_000 + 1
    assert z["face"].shape == (n, 8, 3, 112, 112) and z["eye"].shape == (n, 32, 39)
    assert z["fixation"].shape == (n, 32, 2)
    assert np.array_equal(np.diff(z["t_end_us"]), np.full(n - 1, 1_000_000))
    for k in ("face", "eye", "fixation"):
        assert np.isfinite(z[k]).all(), k
    assert z["face_found_fraction"].mean() >= 0.98
    assert z["valid_gaze_fraction"].mean() > 0.8
    assert (z["trial"] == -1).all()          # a plain recording has no trials
    assert main(["windows", str(recorded20), "--out", str(out)]) != 0   # never overwrite
    assert "refusing to overwrite" in capsys.readouterr().err


def test_face_found_in_synthetic_session(recorded20):
    """>= 98 % of frames of a synthetic session (head motion, lighting drift, blinks) have a face."""
    from emer_live.features.face import FacePipeline

    r = SessionReader(recorded20)
    pipe = FacePipeline()
    found = [pipe.process(img, t).found for t, _, img in r.iter_frames()]
    assert len(found) > 500 and np.mean(found) >= 0.98


class _CaptureModel:
    """Duck-typed LoadedModel that keeps the arrays it was given (no torch needed)."""

    id = "capture"

    def __init__(self):
        self.seen = []

    def normalize(self, eye, fixation):
        return eye, fixation

    def predict(self, face, eye, fixation, *, modality_mask=None):
        self.seen.append((face.copy(), eye.copy(), fixation.copy()))
        b = len(face)
        p = np.full((b, 7), 1 / 7)
        return {"er7": p, "fer7": p, "modalities_used": np.asarray(modality_mask)}


def test_live_windows_equal_recorded_windows(tmp_path):
    from emer_live.devices.factory import make_devices
    from emer_live.features.windows import StreamSource
    from emer_live.live.engine import LiveEngine

    ds = make_devices(tracker="synthetic", camera="synthetic", size=(320, 240), fps=15, rate=120, seed=5)
    ds.open_all()
    rec = Recorder(tmp_path / "s", clock=ds.clock)
    rec.attach("gaze", ds.tracker.stream)
    rec.attach("camera", ds.camera.stream)
    rec.start()
    ds.start_all()
    origin = ds.clock.now_us()
    spec = WindowSpec(window_s=2.0, hop_s=0.5)
    model = _CaptureModel()
    live_builder = WindowBuilder(StreamSource(ds.tracker.stream, ds.camera.stream, jpeg_quality=rec.jpeg_quality),
                                 spec=spec, grid_origin_us=origin)
    eng = LiveEngine(builder=live_builder, model=model, clock=ds.clock, t_origin_us=origin, max_pending=64)
    ends = []
    eng.callbacks.append(lambda p: ends.append(p.t_end_us))
    eng.start()
    import time
    time.sleep(5.5)
    eng.stop()
    ds.stop_all()
    rec.stop()
    assert len(ends) >= 5 and eng.stats.dropped == 0
    offline = WindowBuilder(RecordingSource(SessionReader(tmp_path / "s")), spec=spec, grid_origin_us=origin)
    for t_end, (face, eye, fix) in zip(ends, model.seen):
        w = offline.build(t_end)
        np.testing.assert_array_equal(w.eye, eye[0])
        np.testing.assert_array_equal(w.fixation, fix[0])
        np.testing.assert_array_equal(w.face, face[0])
        assert w.face_mask.all()


def _blank_session(path, *, with_gaze: bool):
    clock = ReplayClock(0, speed=None)
    rec = Recorder(path, clock=clock)
    cam = Stream("camera", frame_dtype(160, 120), 200, nominal_rate_hz=10)
    rec.attach("camera", cam)
    rec.start(thread=False)
    for k in range(120):   # 12 s of a plain grey wall: no face anywhere
        f = np.zeros(1, cam.dtype)
        f["t_us"], f["frame_index"] = k * 100_000, k
        f["image"][0] = 128
        cam.extend(f)
    rec.stop()


def test_bad_input_masks_not_crashes(tmp_path, capsys):
    _blank_session(tmp_path / "noface", with_gaze=False)
    out = tmp_path / "w.npz"
    assert main(["windows", str(tmp_path / "noface"), "--window", "4", "--hop", "2", "--out", str(out)]) == 0
    msg = capsys.readouterr().out
    assert "has no gaze.tsv" in msg
    z = np.load(out)
    assert len(z["t_end_us"]) > 0
    assert not z["face_mask"].any() and not z["eye_mask"].any() and not z["fixation_mask"].any()
    assert (z["face_found_fraction"] == 0).all() and (z["valid_gaze_fraction"] == 0).all()
    assert all(np.isfinite(z[k]).all() for k in ("face", "eye", "fixation"))
    # the whole-trial mode needs trials: a plain recording has none
    rc = main(["windows", str(tmp_path / "noface"), "--per-trial", "--out", str(tmp_path / "t.npz")])
    assert rc != 0 and "no presented trials" in capsys.readouterr().err


class _SlowModel(_CaptureModel):
    def predict(self, face, eye, fixation, *, modality_mask=None):
        import time
        time.sleep(0.6)          # slower than the 0.25 s hop
        return super().predict(face, eye, fixation, modality_mask=modality_mask)


def test_engine_drops_oldest_when_model_falls_behind():
    from emer_live.devices.factory import make_devices
    from emer_live.features.windows import StreamSource
    from emer_live.live.engine import LiveEngine
    import time

    ds = make_devices(tracker="synthetic", camera="none", rate=60)
    ds.open_all()
    ds.start_all()
    origin = ds.clock.now_us()
    b = WindowBuilder(StreamSource(ds.tracker.stream, None), spec=WindowSpec(window_s=1.0, hop_s=0.25),
                      use_face=False, grid_origin_us=origin)
    eng = LiveEngine(builder=b, model=_SlowModel(), clock=ds.clock, t_origin_us=origin, max_pending=2)
    eng.start()
    time.sleep(5.0)
    eng.stop()
    ds.stop_all()
    s = eng.stats
    assert s.dropped > 0, "a CPU engine that falls behind must drop (and count) old windows"
    assert len(eng._pending) <= 2                     # never an unbounded queue
    assert s.made + s.dropped + len(eng._pending) >= 14   # every window accounted for


class _EyeOnlyModel(_CaptureModel):
    provenance = {"modalities": ["eye", "fixation"]}
    norm_stats: dict = {}


def test_engine_masks_modalities_the_checkpoint_was_not_trained_on(recorded20):
    """An ablation checkpoint (trained without the face) never gets a face live, and a
    checkpoint that needs the baseline phase is refused with the reason."""
    from emer_live.errors import ConfigError
    from emer_live.live.engine import LiveEngine

    src = RecordingSource(SessionReader(recorded20))
    t0, _ = src.t_range
    b = WindowBuilder(src, spec=WindowSpec(window_s=4.0, hop_s=1.0), use_face=True)
    eng = LiveEngine(builder=b, model=_EyeOnlyModel(), clock=ReplayClock(t0, speed=None), t_origin_us=t0)
    p = eng.process(t0 + 6_000_000)
    assert p.modalities == {"face": False, "eye": True, "fixation": True}
    assert any("trained on eye, fixation only" in n for n in eng.notes)
    full = LiveEngine(builder=b, model=_CaptureModel(), clock=ReplayClock(t0, speed=None), t_origin_us=t0)
    assert full.process(t0 + 6_000_000).modalities["face"]      # the face is there to be used

    class _BaselineModel(_CaptureModel):
        norm_stats = {"reference": {"kind": "session_baseline"}}

    with pytest.raises(ConfigError, match="baseline"):
        LiveEngine(builder=b, model=_BaselineModel(), clock=ReplayClock(t0, speed=None), t_origin_us=t0)
