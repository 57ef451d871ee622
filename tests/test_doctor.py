"""`emer-live doctor` tells the truth about this machine (each answer checked independently) and
reports trackers/cameras/audio it is given."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from emer_live import doctor
from emer_live.cli import main
from emer_live.errors import ConfigError

try:
    from tests.fakes import fake_tobii_research as fk
    from tests.fakes.fake_camera import FakeCamera
except ImportError:
    from fakes import fake_tobii_research as fk
    from fakes.fake_camera import FakeCamera


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One real run of `emer-live doctor --json` (text mode is checked on the same machine)."""
    rec = tmp_path_factory.mktemp("recordings")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["doctor", "--json", "--recordings", str(rec)])
    return rc, json.loads(buf.getvalue()), rec


def test_exit_code_is_zero_and_shape(report):
    rc, d, _ = report
    assert rc == 0
    assert set(d["checks"]) == {"python", "tobii_sdk", "trackers", "cameras", "audio", "gpu", "face_models", "disk",
                              "privacy"}
    for name, c in d["checks"].items():
        assert c["status"] in ("ok", "warn", "unavailable", "error"), name
        assert c["summary"]
        if c["status"] != "ok":
            assert c["action"], f"{name} is not OK but says nothing to do"
    assert d["ok"] == all(c["status"] == "ok" for c in d["checks"].values())


def test_python_and_sdk_are_true(report):
    _, d, _ = report
    assert d["checks"]["python"]["details"]["version"] == ".".join(map(str, sys.version_info[:3]))
    sdk = d["checks"]["tobii_sdk"]
    if importlib.util.find_spec("tobii_research") is not None:
        import tobii_research

        assert sdk["status"] == "ok" and sdk["details"]["version"] == str(tobii_research.__version__)
        found = tobii_research.find_all_eyetrackers()
        assert len(d["checks"]["trackers"]["details"]["trackers"]) == len(found)
        if not found:
            assert "no Tobii eye tracker found" in d["checks"]["trackers"]["summary"]
    else:
        assert sdk["status"] == "unavailable"
        if sys.version_info[:2] != (3, 10):
            assert "only for CPython 3.10" in sdk["summary"] and "3.10" in sdk["action"]
        else:
            assert "not installed" in sdk["summary"] and "pip install tobii-research" in sdk["action"]
        assert d["checks"]["trackers"]["status"] == "unavailable"


def test_cameras_are_true(report):
    _, d, _ = report
    cams = {c["index"]: c for c in d["checks"]["cameras"]["details"]["cameras"]}
    assert sorted(cams) == [0, 1, 2, 3]
    for i, c in cams.items():
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{i}"):
            assert not c["ok"] and f"/dev/video{i} does not exist" in c["reason"]
    assert (d["checks"]["cameras"]["status"] == "ok") == any(c["ok"] for c in cams.values())


def test_audio_is_true(report):
    _, d, _ = report
    a = d["checks"]["audio"]
    try:
        import sounddevice as sd
    except OSError:
        assert a["status"] == "unavailable" and "PortAudio" in a["summary"]
        return
    inputs = [i for i, dev in enumerate(sd.query_devices()) if dev["max_input_channels"] > 0]
    assert [x["index"] for x in a["details"]["inputs"]] == inputs
    if not inputs:
        assert a["status"] == "unavailable" and "no audio input device" in a["summary"]


def test_gpu_is_true(report):
    _, d, _ = report
    g = d["checks"]["gpu"]
    if importlib.util.find_spec("torch") is None:
        assert g["status"] == "unavailable" and "torch is not installed" in g["summary"]
        return
    import torch

    assert (g["status"] == "ok") == (torch.cuda.is_available() or (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()))
    if g["status"] != "ok" and torch.version.cuda is None:
        assert "CPU-only build" in g["summary"]


def test_disk_is_true(report):
    _, d, rec = report
    disk = d["checks"]["disk"]["details"]
    assert abs(disk["free_bytes"] - shutil.disk_usage(rec).free) < 512 * 2**20
    assert disk["exists"] and disk["writable"]


def test_text_report_and_strict(tmp_path, capsys):
    rc = main(["doctor", "--cameras", "none", "--recordings", str(tmp_path / "not-yet")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("emer-live doctor")
    for name in ("python", "tobii_sdk", "trackers", "cameras", "audio", "gpu", "disk"):
        line = next(ln for ln in lines if ln.split()[1:2] == [name])
        status = line.split()[0]
        assert status in ("OK", "WARN", "--", "FAIL")
        if status != "OK":
            nxt = lines[lines.index(line) + 1]
            assert nxt.strip().startswith("->"), f"no advice under {line!r}"
    assert "not created yet" in out
    rc_strict = main(["doctor", "--strict", "--cameras", "none", "--recordings", str(tmp_path)])
    capsys.readouterr()
    assert rc_strict == 1            # cameras were not probed, so at least that check is not OK


def test_with_a_tracker_camera_and_audio_present():
    fk.fake_reset()
    try:
        fk.fake_add_tracker(eye_openness=False)
        cams = {0: FakeCamera(width=640, height=480, fps=30.0), 1: FakeCamera(present=False)}
        checks = {c.name: c for c in doctor.run_checks(
            recordings=Path("."), camera_indices=[0, 1], sdk=fk,
            capture_factory=lambda src: cams[src].factory(src))}
    finally:
        fk.fake_reset()
    t = checks["trackers"]
    assert t.ok and "Tobii Pro Fusion TPFC2-010202524041" in t.summary and "60/120/250 Hz" in t.summary
    assert "no eye openness" in t.summary and "display area 531x299 mm" in t.summary
    assert checks["tobii_sdk"].ok and fk.__version__ in checks["tobii_sdk"].summary
    c = checks["cameras"]
    assert c.ok and c.summary.startswith("0: 640x480 @ 30.0 fps reported")
    assert not c.details["cameras"][1]["ok"]


def test_parse_indices():
    assert doctor.parse_indices("0-3") == [0, 1, 2, 3]
    assert doctor.parse_indices("0,2") == [0, 2]
    assert doctor.parse_indices("none") == []
    for bad in ("3-1", "a", "-1", "0-40"):
        with pytest.raises(ConfigError):
            doctor.parse_indices(bad)


def test_face_models_check(tmp_path):
    from emer_live.features import _mediapipe as MP

    c = doctor.check_face_models()
    assert c.ok, c.summary                      # set-up fetched them (make setup)
    bad = tmp_path / "third_party"
    bad.mkdir()
    (bad / MP.DETECTOR_FILE).write_bytes(b"not a model")
    c = doctor.check_face_models(bad)
    assert c.status == "error" and "make setup" in c.action
    assert any(MP.LANDMARK_FILE in p and "missing" in p for p in c.details["problems"])
    assert any(MP.DETECTOR_FILE in p and "does not load" in p for p in c.details["problems"])
    assert "fer_mini_xception.pt missing" in c.details["problems"]
