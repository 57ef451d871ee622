"""Privacy mode (issue 22): ``--face-video crops`` keeps the model's aligned face crops and never
writes raw face video; replay, re-analysis and training work from the crops. ``none`` keeps no
face images at all."""

import json
from pathlib import Path

import numpy as np
import pytest

from emer_live import cli
from emer_live.labels import ER7_CLASSES

VIDEO_SUFFIXES = {".mjpeg", ".mjpg", ".jpg", ".jpeg", ".png", ".mp4", ".avi", ".mkv", ".mov", ".webm", ".h264"}
MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"ftyp": "MP4/MOV", b"\x1aE\xdf\xa3": "Matroska",
         b"RIFF": "RIFF (AVI)"}


def raw_face_video(folder: Path, frame_shape) -> list:
    """Every file in ``folder`` that holds (or could hold) face video or a camera frame: a video or
    image suffix, an image/video signature anywhere in its bytes, or raw pixel data as large as a
    camera frame per kept row. Returns ``[(path, why)]``."""
    h, w = frame_shape
    hits = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix.lower() in VIDEO_SUFFIXES:
            hits.append((p, f"suffix {p.suffix}"))
        data = p.read_bytes()
        for magic, what in MAGIC.items():
            if magic == b"RIFF" and p.name == "audio.wav":
                continue
            if magic in data:
                hits.append((p, f"{what} signature at byte {data.index(magic)}"))
        if p.name == "face_crops.rgb":
            rows = len((p.parent / "face_crops.tsv").read_text().splitlines()) - 1
            if len(data) != rows * 112 * 112 * 3 or len(data) >= rows * h * w * 3:
                hits.append((p, f"{len(data)} bytes for {rows} crops"))
    return hits


def _session(root: Path) -> Path:
    (d,) = [p for p in root.rglob("session.json")]
    return d.parent


def _fast_session(out: Path, face_video: str, checkpoint="models/emert_demo_synthetic.pt") -> Path:
    assert cli.main(["session", "--headless", "--fast", "--participant", "P03", "--trials", "2", "--time-scale",
                     "0.05", "--size", "320x240", "--fps", "15", "--rate", "120", "--checkpoint", checkpoint,
                     "--window", "2", "--hop", "1", "--out", str(out), "--face-video", face_video]) == 0
    return _session(out)


@pytest.fixture(scope="module")
def crops_session(tmp_path_factory):
    pytest.importorskip("torch")
    return _fast_session(tmp_path_factory.mktemp("privacy") / "root", "crops")


def test_the_scan_finds_face_video_in_a_full_recording(tmp_path):
    """The scanner below must be able to fail: a plain recording holds face.mjpeg."""
    out = tmp_path / "full"
    assert cli.main(["record", "--duration", "0.5", "--size", "160x120", "--fps", "10", "--out", str(out),
                     "--quiet"]) == 0
    hits = raw_face_video(out, (120, 160))
    assert any(p.name == "face.mjpeg" for p, _ in hits), hits


@pytest.mark.torch
def test_crops_session_has_no_face_video_and_reanalysis_equals_live(crops_session, tmp_path):
    d = crops_session
    meta = json.loads((d / "session.json").read_text())
    assert meta["face_video"] == "crops" and meta["format_version"] == 2
    assert "camera" not in meta["streams"] and meta["devices"]["camera"]     # described, not recorded
    assert meta["streams"]["face_crops"]["face_config"]["detector"] == "haar"  # the checkpoint's pipeline
    assert raw_face_video(d, (240, 320)) == []
    crops = sorted(d.rglob("face_crops.rgb"))
    assert len(crops) >= 3 and not list(d.rglob("face.mjpeg"))
    # re-analysis (replay devices, as fast as possible) gives the live predictions
    out = tmp_path / "R.jsonl"
    assert cli.main(["live", "--headless", "--quiet", "--tracker", f"replay:{d}", "--camera", "replay", "--speed",
                     "max", "--checkpoint", "models/emert_demo_synthetic.pt", "--window", "2", "--hop", "1",
                     "--out", str(out)]) == 0
    import pandas as pd

    rec = pd.read_csv(d / "predictions.tsv", sep="\t")
    rec = rec[rec["kind"] == "window"].set_index("t_end_us")
    new = {q["t_end_us"]: q for q in map(json.loads, out.read_text().splitlines()) if q["kind"] == "window"}
    common = sorted(set(rec.index) & set(new))
    assert len(common) >= len(rec) - 1 and len(common) >= 10
    for t in common:
        r, q = rec.loc[t], new[t]
        np.testing.assert_allclose([r[f"er7_{c}"] for c in ER7_CLASSES], q["er7"], atol=1e-4)
        np.testing.assert_allclose([r[f"fer7_{c}"] for c in ER7_CLASSES], q["fer7"], atol=1e-4)
        assert abs(r["face_found_fraction"] - q["quality"]["face_found_fraction"]) < 1e-9
    # the face was really there (not an eye-only comparison)
    assert (rec["face_found_fraction"] > 0.5).mean() > 0.8


@pytest.mark.torch
def test_replay_window_model_shows_crops_and_reanalysis_matches(crops_session):
    from emer_live.app.replay import Reanalysis, ReplaySession, compare_predictions

    s = ReplaySession(crops_session)
    assert s.face_is_crop and not s.damaged and len(s.face_t) > 50
    img = s.face_image(int(s.face_t[len(s.face_t) // 2]))
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8 and img.max() > 0
    re = Reanalysis(s, "models/emert_demo_synthetic.pt")
    while re.step():
        pass
    assert re.error is None and re.status == "complete"
    cmp = compare_predictions(s.windows, re.predictions, s.trial_predictions)
    assert cmp.matched >= len(s.windows) - 1
    assert np.nanmax(cmp.max_abs_diff) < 1e-4


@pytest.mark.torch
def test_realtime_live_run_with_crops_replays_to_the_same_predictions(tmp_path):
    """The threaded crop stage (real time): the engine waits for the crops of the frames it takes,
    so the live predictions equal the re-analysis of the kept crops."""
    from emer_live.app import PredictionMade, Run, RunConfig, drive

    rec_dir = tmp_path / "S"
    cfg = RunConfig(kind="live", checkpoint="models/emert_demo_synthetic.pt", window_s=2.0, hop_s=1.0,
                    duration_s=5.0, rate=120.0, fps=15.0, size=(320, 240), model_device="cpu", out=str(rec_dir),
                    face_video="crops")
    run = Run(cfg)
    live = []
    run.subscribe(lambda ev: live.append(ev.prediction) if isinstance(ev, PredictionMade) else None)
    drive(run)
    assert run.status == "complete", run.reason
    assert raw_face_video(rec_dir, (240, 320)) == []
    replay = RunConfig(kind="live", checkpoint="models/emert_demo_synthetic.pt", window_s=2.0, hop_s=1.0,
                       tracker=f"replay:{rec_dir}", camera="replay", speed=None, model_device="cpu")
    run2 = Run(replay)
    again = []
    run2.subscribe(lambda ev: again.append(ev.prediction) if isinstance(ev, PredictionMade) else None)
    drive(run2)
    a = {p.t_end_us: p for p in live}
    b = {p.t_end_us: p for p in again}
    # every window the live run scored (a loaded machine drops some, never differently) is re-analysed
    common = sorted(a)
    assert common and set(a) <= set(b), (sorted(a), sorted(b))
    for t in common:
        np.testing.assert_allclose(a[t].er7, b[t].er7, atol=1e-4)
        assert a[t].quality["face_found_fraction"] == b[t].quality["face_found_fraction"]
    assert any(a[t].quality["face_found_fraction"] > 0 for t in common)


def test_record_only_crops_without_a_model_and_none_keeps_no_images(tmp_path):
    """A record run (no model) makes the crops on the recording path with the default (landmark)
    pipeline, landmarks and head pose included; ``none`` keeps the measurements only."""
    from emer_live.devices.replay import ReplaySource
    from emer_live.errors import DeviceUnavailable
    from emer_live.recording import SessionReader

    crops = tmp_path / "crops"
    assert cli.main(["record", "--duration", "1", "--size", "320x240", "--fps", "10", "--out", str(crops),
                     "--face-video", "crops", "--quiet"]) == 0
    r = SessionReader(crops)
    (seg,) = [s for s in r.segments() if s.has_crops]
    idx = r.crop_index(seg)
    pix = r.read_crops(seg)
    assert len(idx) >= 8 and pix.shape == (len(idx), 112, 112, 3) and idx["found"].mean() > 0.8
    lmk = np.fromfile(seg.path / "face_landmarks.f32", "<f4").reshape(len(idx), 468, 3)
    assert np.isfinite(lmk[idx["found"]]).all() and np.isfinite(idx["pose"][idx["found"]]).all()
    assert raw_face_video(crops, (240, 320)) == []
    # a copy recorded from its replay keeps the same crops and landmarks (and stays crops)
    copy = tmp_path / "copy"
    assert cli.main(["record", "--tracker", f"replay:{crops}", "--camera", "replay", "--speed", "max",
                     "--out", str(copy), "--quiet"]) == 0
    r2 = SessionReader(copy)
    (seg2,) = [s for s in r2.segments() if s.has_crops]
    assert r2.face_video == "crops" and np.array_equal(r2.read_crops(seg2), pix)
    assert np.array_equal(r2.crop_index(seg2)["t_us"], idx["t_us"])
    lmk2 = np.fromfile(seg2.path / "face_landmarks.f32", "<f4").reshape(len(idx), 468, 3)
    assert np.array_equal(lmk2, lmk, equal_nan=True) and raw_face_video(copy, (240, 320)) == []

    none = tmp_path / "none"
    assert cli.main(["record", "--duration", "1", "--size", "320x240", "--fps", "10", "--out", str(none),
                     "--face-video", "none", "--quiet"]) == 0
    assert not list(none.rglob("face_crops.rgb")) and not list(none.rglob("face.mjpeg"))
    assert list(none.rglob("face_crops.tsv")) and raw_face_video(none, (240, 320)) == []
    with pytest.raises(DeviceUnavailable, match="--face-video none"):
        ReplaySource(none, speed=None).camera()


def test_crop_rows_torn_by_a_crash_are_left_out(tmp_path):
    """Append-only files: a crash leaves a torn last row or crop; the reader keeps the whole ones."""
    from emer_live.recording.crops import CropSegmentWriter, face_crop_dtype, read_crop_index, read_crops

    w = CropSegmentWriter(tmp_path, size=16, pixels=True, landmarks=False)
    rec = np.zeros(1, face_crop_dtype(16, landmarks=False))
    for i in range(3):
        rec["t_us"], rec["found"], rec["crop"] = 1000 * i, 1, i + 1
        rec["box"], rec["eyes"], rec["pose"] = 5, 6.0, 1.0
        w.write(rec[0])
    w.close()
    assert len(read_crop_index(tmp_path, size=16)) == 3
    with open(tmp_path / "face_crops.rgb", "r+b") as f:      # the last crop only partly written
        f.truncate(2 * 16 * 16 * 3 + 100)
    idx = read_crop_index(tmp_path, size=16)
    assert len(idx) == 2 and read_crops(tmp_path, 16, len(idx))[1].max() == 2
    with open(tmp_path / "face_crops.tsv", "a") as f:          # a torn index row
        f.write("3\t3000\t3")
    assert len(read_crop_index(tmp_path, size=16)) == 2


@pytest.mark.torch
def test_training_on_a_crops_only_corpus(tmp_path):
    """``train`` on sessions that hold no face video: the windows take their faces from the crops."""
    from emer_live.model import load_checkpoint

    corpus = tmp_path / "corpus"
    assert cli.main(["collect-synthetic", "--participants", "3", "--trials", "1", "--time-scale", "0.03",
                     "--size", "160x120", "--seed", "5", "--jobs", "1", "--face-video", "crops",
                     "--out", str(corpus)]) == 0
    assert not list(corpus.rglob("face.mjpeg")) and len(list(corpus.rglob("face_crops.rgb"))) >= 3
    out, cache = tmp_path / "m.pt", tmp_path / "cache"
    assert cli.main(["train", "--data", str(corpus), "--folds", "3", "--run-folds", "1", "--epochs", "1",
                     "--batch-size", "4", "--task", "multi", "--modalities", "face,eye,fixation", "--face-train",
                     "none", "--threads", "1", "--quiet", "--cache-dir", str(cache), "--out", str(out)]) == 0
    assert load_checkpoint(out, device="cpu").provenance
    built = sorted(cache.rglob("windows_*.npz"))
    assert len(built) == 3
    for f in built:      # the samples trained on had their faces (from the kept crops)
        with np.load(f) as z:
            assert z["face_mask"].mean() > 0.8 and z["face"].max() > 0


def test_face_video_option_is_checked():
    from emer_live.app import RunConfig
    from emer_live.errors import ConfigError

    with pytest.raises(ConfigError, match="--face-video 'blur'"):
        RunConfig(kind="record", out="x", face_video="blur")


def test_crop_stage_watermark_never_passes_a_frame_without_its_crop():
    """The live rule for the crops as for camera frames: the crop stream's watermark (what the
    engine waits for) never passes a camera frame whose crop is not yet in the stream, while the
    stage thread works through a burst (else live would take an older frame's crop than replay)."""
    import time

    from emer_live.devices.stepped import SteppedSynthetic
    from emer_live.features.face import FaceConfig, FacePipeline
    from emer_live.features.face_crops import CropStreamSource, FaceCropStage
    from emer_live.phantom.participant import Phantom
    from emer_live.streams import Stream

    sim = SteppedSynthetic(Phantom(seed=0, participant="P01"), rate_hz=60, camera=(160, 120, 15))
    sim.advance_to(sim.t0_us + 1_000_000)
    frames = sim.camera.latest(15)
    camera = Stream("camera", frames.dtype, 64, nominal_rate_hz=15)
    stage = FaceCropStage(camera, FacePipeline(FaceConfig(detector="haar")))
    src = CropStreamSource(None, stage.stream, stage=stage)
    assert src.delivered_through() == {"face_crops": None}
    stage.start()
    t0, t_last = int(frames["t_us"][0]), int(frames["t_us"][-1])
    seen = set()
    try:
        camera.extend(frames)                     # a burst: the thread is behind
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mark = src.delivered_through()["face_crops"]
            if mark is not None:
                got = src.frame_times(t0, mark + 1)
                assert list(got) == [t for t in frames["t_us"] if t <= mark]
                seen.add(int(mark))
                if mark == t_last:
                    break
            time.sleep(0.001)
        assert seen and max(seen) == t_last
        res = src.face_result_at(t_last)
        assert res is not None and res.t_us == t_last
    finally:
        stage.stop()
    assert stage.frames == len(frames) and stage.error is None
