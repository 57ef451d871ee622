"""Live speed (issue 16): the per-frame face-feature cache equals the full forward; latencies are
measured per stage and never negative, for sliding windows and whole-trial predictions."""

import numpy as np
import pytest
import torch

from emer_live.clock import ReplayClock
from emer_live.features.windows import WindowBuilder, WindowSource, WindowSpec

pytestmark = pytest.mark.torch

T0 = 1_000_000


class _PhantomSource(WindowSource):
    """A synthetic participant as a window source: 250 Hz gaze and 15 fps 320x240 frames over
    ``seconds``; frames are rendered when first read (only the face grid's frames ever are)."""

    def __init__(self, seconds: float, seed: int = 3) -> None:
        from emer_live.phantom.participant import Phantom

        self.ph = Phantom(seed=seed, participant="P07")
        n = int(seconds * 250)
        self._gaze = self.ph.gaze_at(T0 + np.arange(n, dtype=np.int64) * 4000)
        self._ft = T0 + np.round(np.arange(int(seconds * 15)) * 1e6 / 15).astype(np.int64)
        self._frames = {}

    def gaze(self, t0_us, t1_us):
        t = self._gaze["t_us"]
        return self._gaze[np.searchsorted(t, t0_us):np.searchsorted(t, t1_us)]

    def frame_times(self, t0_us, t1_us):
        return self._ft[np.searchsorted(self._ft, t0_us):np.searchsorted(self._ft, t1_us)]

    def frame_at(self, t_us):
        from emer_live.phantom.face_render import render_face

        if t_us not in self._frames:
            self._frames[t_us] = render_face(self.ph.face_state(int(t_us)), width=320, height=240)
        return self._frames[t_us]


@pytest.fixture(scope="module")
def source60():
    return _PhantomSource(60.0)


def _engine(source, model, **kw):
    from emer_live.live.engine import LiveEngine

    b = WindowBuilder(source, spec=WindowSpec(window_s=8.0, hop_s=1.0), grid_origin_us=T0)
    return LiveEngine(builder=b, model=model, clock=ReplayClock(T0, speed=None), t_origin_us=T0, **kw)


def _outputs(p):
    return np.concatenate([np.ravel(np.asarray(v, float)) for v in
                           (p.er7, p.er3, p.er_va, p.fer7, p.fer3, p.fer_va, [p.fer_intensity], [p.er_from_face])])


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, True])
def test_face_cache_equals_full_forward_over_60s(source60, random_checkpoint, tmp_path, fallback):
    """53 sliding 8 s windows (1 s hop) of a 60 s synthetic recording: scored with the per-frame
    cache they equal the full forward to 1e-5, and the ResNet runs once per grid frame."""
    from emer_live.model import load_checkpoint

    torch.set_num_threads(2)
    m = load_checkpoint(random_checkpoint, device="cpu")
    if fallback:   # the two-pass face fallback reuses the cached features too (low threshold: it fires)
        path = tmp_path / "fb.pt"
        m.with_inference(path, {"face_fallback": {"threshold": 0.15}})
        m = load_checkpoint(path, device="cpu")
    cached, full = _engine(source60, m), _engine(source60, m, face_cache=False)
    assert cached.face_cache is not None and full.face_cache is None
    ends = list(range(T0 + 8_000_000, T0 + 60_000_001, 1_000_000))
    ref, diffs, fired = {}, [], 0
    for t in ends:
        a, b = cached.process(t), full.process(t)
        assert a.modalities == b.modalities == {"face": True, "eye": True, "fixation": True}
        ref[t] = _outputs(b)
        diffs.append(np.max(np.abs(_outputs(a) - ref[t])))
        fired += a.er_from_face
    assert len(ends) == 53
    assert max(diffs) <= 1e-5, max(diffs)
    # one ResNet pass per grid frame (60 of them), not 8 per window (424)
    assert cached.face_cache.encoded == 60
    assert cached.face_cache.hits == 53 * 8 - 60
    if fallback:
        assert fired > 0

    # the live scheduler's path: each grid frame encoded when its crop is made, windows queued
    # for the model worker (scored here in the worker's place)
    live = _engine(source60, m)
    live.init_schedule() if hasattr(live, "init_schedule") else live._init_schedule()
    got = {}
    while len(got) < len(ends):
        live.step(live.next_due_us())
        while live._pending:
            for p in live.score([live._pending.popleft()]):
                got[p.t_end_us] = _outputs(p)
    assert sorted(got) == ends
    assert max(np.max(np.abs(got[t] - ref[t])) for t in ends) <= 1e-5
    assert live.face_cache.hits == 53 * 8            # every window found all its frames encoded


def test_no_negative_latency_windows_and_trials(random_checkpoint, tmp_path):
    """Drive the engine as a replay does (sliding windows + announced trials) into predictions.tsv:
    every latency column of every row is >= 0, and the stages sum to no more than the total."""
    import pandas as pd

    from emer_live.live.prediction import PredictionLog
    from emer_live.model import load_checkpoint

    torch.set_num_threads(2)
    src = _PhantomSource(24.0, seed=4)
    log = PredictionLog(tmp_path / "predictions.tsv")
    eng = _engine(src, load_checkpoint(random_checkpoint, device="cpu"), log=log)
    preds = []
    eng.callbacks.append(preds.append)
    eng.init_schedule() if hasattr(eng, "init_schedule") else eng._init_schedule()
    trials = [(1, T0 + 2_000_000, T0 + 9_000_000), (2, T0 + 11_000_000, T0 + 20_000_000)]
    announced = set()
    now = T0
    while now < T0 + 23_000_000:
        for trial, on, off in trials:
            if trial not in announced and now >= on:
                eng.schedule_trial(trial, on, off)
                announced.add(trial)
        now = min([eng.next_due_us()] + [on for k, on, _ in trials if k not in announced])
        eng.step(now, sync=True)
    log.close()
    rows = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    assert set(rows["kind"]) == {"window", "trial"} and (rows["kind"] == "trial").sum() == 2
    lat = rows[["lat_assemble_ms", "lat_features_ms", "lat_model_ms", "lat_total_ms"]]
    assert lat.notna().all().all()
    assert (lat.to_numpy() >= 0).all(), rows.loc[(lat < 0).any(axis=1), ["kind"] + list(lat.columns)]
    for p in preds:
        stages = sum(p.latency_ms[k] for k in ("assemble", "features", "queue", "model"))
        assert stages <= p.latency_ms["total"] + 1e-6, p.latency_ms
    assert eng.summary()["slowest_stage"] in ("assemble", "features", "queue", "model")


def test_cache_rows_without_face_or_keys(random_checkpoint):
    """Rows without a face get zeros and frames without keys are encoded but not kept - as
    EMERT.encode_face gives them; a repeated key within one batch is encoded once."""
    from emer_live.model import load_checkpoint
    from emer_live.model.frame_cache import FaceFeatureCache

    torch.set_num_threads(2)
    m = load_checkpoint(random_checkpoint, device="cpu")
    c = FaceFeatureCache(m)
    face = np.random.default_rng(0).random((3, 8, 3, 112, 112), dtype=np.float32)
    face[2] = face[0]
    keys = [list(range(8)), None, list(range(8))]
    present = np.array([True, True, False])
    out = c.window_features(face, keys, present=present)
    mask = torch.tensor([[True, True, True], [True, True, True], [False, True, True]])
    with torch.inference_mode():
        ref = m.model.encode_face(torch.from_numpy(face), mask)
    assert float((out - ref).abs().max()) <= 1e-5
    assert float(out[2].abs().max()) == 0.0
    assert c.encoded == 16 and len(c) == 8 and c.hits == 0
    out2 = c.window_features(face[:1], keys[:1])       # all 8 frames cached now
    assert c.encoded == 16 and c.hits == 8 and float((out2[0] - ref[0]).abs().max()) <= 1e-5


@pytest.mark.slow
def test_fast_replay_equals_offline_windows(recorded20, random_checkpoint, tmp_path):
    """``live --speed max`` of a recording (direct reading, grid crops made ahead in a second
    thread, windows scored in batches) gives the predictions of the recording's windows built
    offline and scored one by one."""
    import json

    from emer_live.cli import main
    from emer_live.devices.replay import ReplaySource
    from emer_live.features.windows import RecordingSource
    from emer_live.live.engine import LiveEngine
    from emer_live.model import load_checkpoint
    from emer_live.recording import SessionReader

    out = tmp_path / "R.jsonl"
    assert main(["live", "--headless", "--quiet", "--tracker", f"replay:{recorded20}", "--camera", "replay",
                 "--speed", "max", "--checkpoint", str(random_checkpoint), "--out", str(out)]) == 0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(got) >= 11
    origin = ReplaySource(recorded20, speed=None).t_start_us
    b = WindowBuilder(RecordingSource(SessionReader(recorded20)), spec=WindowSpec(8.0, 1.0), grid_origin_us=origin)
    eng = LiveEngine(builder=b, model=load_checkpoint(random_checkpoint, device="cpu"),
                     clock=ReplayClock(origin, speed=None), t_origin_us=origin, face_cache=False)
    for q in got:
        p = eng.process(q["t_end_us"])
        np.testing.assert_allclose(q["er7"], p.er7, atol=1e-5)
        np.testing.assert_allclose(q["fer7"], p.fer7, atol=1e-5)
        assert q["quality"] == p.quality and q["modalities"] == p.modalities
