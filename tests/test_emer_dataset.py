"""The EMER dataset loader on a tiny fake tree in the documented layout (the real dataset is
licensed and not available here): labels, split, column map, faces from images and video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emer_live import cli
from emer_live.errors import ConfigError
from emer_live.features.eye import EYE_FEATURE_NAMES
from emer_live.labels import ER7_CLASSES
from emer_live.training.emer_dataset import (is_emer_root, load_emer_samples, map_eye_table, read_emer_split,
                                             read_layout, openpyxl_available)
from emer_live.training.dataset import SampleSpec, load_samples

# id, participant-from-id, ER (name), ER valence/arousal, FER (index in the layout's class order), intensity, set
ROWS = [
    ("1_film_happy", "Happy", 0.5, 0.5, 0, 2.5, 1),
    ("1_film_sad", "sad", -0.75, 0.0, 6, 0.0, 1),
    ("2_sport_anger", "Angry", -1.0, 1.0, 5, 1.55, 2),
    ("2_film_fear", "fear", -0.5, 0.5, 6, 0.0, 2),
    ("3_film_disgust", "disgust", -0.25, 0.0, 4, 1.48, 3),
    ("3_film_surprise", "Surprise", 0.25, 0.25, 3, 2.58, 3),
]


def _eye_table(rng, n: int, seed_shift: float) -> pd.DataFrame:
    types = rng.choice(["Fixation", "Saccade", "EyesNotFound"], size=n, p=[0.7, 0.2, 0.1])
    gx = rng.uniform(200, 1700, n)
    gy = rng.uniform(100, 1000, n)
    return pd.DataFrame({
        "Recording timestamp": np.arange(n) * 4000,
        "Gaze point X": gx, "Gaze point Y": gy,
        "Gaze point left X": gx - 5, "Gaze point left Y": gy, "Gaze point right X": gx + 5, "Gaze point right Y": gy,
        "Pupil diameter left": 3.0 + seed_shift + rng.normal(0, 0.05, n),
        "Pupil diameter right": 3.1 + seed_shift + rng.normal(0, 0.05, n),
        "Validity left": np.where(types == "EyesNotFound", "Invalid", "Valid"),
        "Validity right": "Valid",
        "Eye movement type": types,
        "Gaze event duration": rng.uniform(20, 400, n),
        "Fixation point X": np.where(types == "Fixation", gx, np.nan),
        "Fixation point Y": np.where(types == "Fixation", gy, np.nan),
    })


@pytest.fixture
def emer_tree(tmp_path) -> Path:
    import cv2

    root = tmp_path / "EMER"
    (root / "labels").mkdir(parents=True)
    eye_dir = root / "data" / "eye_movement"
    eye_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pd.DataFrame({"ID": [r[0] for r in ROWS], "ER_7": [r[1] for r in ROWS], "ER_Valence": [r[2] for r in ROWS],
                  "ER_Arousal": [r[3] for r in ROWS], "FER_7": [r[4] for r in ROWS],
                  "FER_Intensity": [r[5] for r in ROWS]}).to_csv(root / "labels" / "EMER_label.csv", index=False)
    # split: the "<ID> <set>" form for two sets and the header form for the third
    lines = [f"{r[0]}\tset{r[6]}" for r in ROWS if r[6] != 3] + ["# third set", "set3:"] + \
            [r[0] for r in ROWS if r[6] == 3]
    (root / "labels" / "emer_set.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for k, r in enumerate(ROWS):
        _eye_table(rng, 64 + 10 * k, 0.1 * k).to_csv(eye_dir / f"{r[0]}.csv", index=False)
    # aligned face images for all but one sample, which has a face video instead
    for k, r in enumerate(ROWS[:-1]):
        d = root / "data" / "face_light_align" / f"set{r[6]}" / r[0]
        d.mkdir(parents=True)
        for i in range(12):
            img = np.full((128, 128, 3), 20 * k + i, np.uint8)
            img[:, :, 2] = 200  # red channel (BGR order on disk)
            cv2.imwrite(str(d / f"{i}.png"), img)
    vdir = root / "data" / "face_video"
    vdir.mkdir(parents=True)
    vw = cv2.VideoWriter(str(vdir / f"{ROWS[-1][0]}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for i in range(20):
        vw.write(np.full((96, 96, 3), 10 * i, np.uint8))
    vw.release()
    return root


def test_split_file_forms(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a_1, 1\nb 2\n[set3]\nc with space\n", encoding="utf-8")
    assert read_emer_split(p) == {"a_1": 1, "b": 2, "c with space": 3}
    p.write_text("just-an-id\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        read_emer_split(p)
    p.write_text("a 1\na 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sets 1 and 2"):
        read_emer_split(p)


def test_loader_reads_labels_split_eye_and_faces(emer_tree):
    assert is_emer_root(emer_tree) and not is_emer_root(emer_tree / "data")
    with pytest.warns(UserWarning, match="gaze_ucs_left_x"):
        s = load_emer_samples(emer_tree)
    assert len(s) == 6
    order = np.argsort(s["session"])
    ids = sorted(r[0] for r in ROWS)
    assert list(s["session"][order]) == ids
    by_id = {r[0]: r for r in ROWS}
    for i in order:
        r = by_id[s["session"][i]]
        er_name = {"Happy": "happiness", "sad": "sadness", "Angry": "anger", "fear": "fear", "disgust": "disgust",
                   "Surprise": "surprise"}[r[1]]
        assert ER7_CLASSES[s["er7"][i]] == er_name
        assert s["fer7"][i] == r[4]                              # default class order = ours
        np.testing.assert_allclose(s["er_va"][i], [r[2], r[3]])
        assert s["fer_intensity"][i] == pytest.approx(r[5])
        assert s["emer_set"][i] == r[6]
        assert s["participant"][i] == f"emer-{r[0].split('_')[0]}"
        assert s["kind"][i] == "emer"
    assert s["eye"].shape == (6, 32, 39) and s["fixation"].shape == (6, 32, 2)
    assert s["eye_mask"].all()
    # pupil left is feature 24: mean of the table's column, bin by bin
    first = int(np.flatnonzero(s["session"] == ROWS[0][0])[0])
    table = pd.read_csv(emer_tree / "data" / "eye_movement" / f"{ROWS[0][0]}.csv")
    assert s["eye"][first, 0, EYE_FEATURE_NAMES.index("pupil_left")] == pytest.approx(
        table["Pupil diameter left"][:2].mean(), rel=1e-5)    # 64 rows -> 2 rows per bin
    assert s["eye"][first, :, EYE_FEATURE_NAMES.index("gaze_display_mean_x")].max() <= 1.0
    fix_ok = s["fixation_mask"][first]
    assert fix_ok.any() and np.all((s["fixation"][first][fix_ok] >= 0) & (s["fixation"][first][fix_ok] <= 1))
    # faces: 5 from images (RGB, so the on-disk red channel comes first), 1 from the video
    assert s.face_bank is not None and s.face_bank.dtype == np.uint8 and len(s.face_bank) == 6
    f = s.face(first)
    assert f.shape == (8, 3, 112, 112) and f[:, 0].mean() == pytest.approx(200 / 255, abs=1e-3)
    assert s["face_mask"].all()


def test_layout_override_and_bad_layouts(emer_tree, tmp_path):
    lay = {"eye_columns": {"gaze_velocity": {"column": "Gaze event duration", "scale": 0.5}},
           "labels": {"fer7": "FER_7"}, "class_order": list(reversed(ER7_CLASSES))}
    (emer_tree / "emer_layout.json").write_text(json.dumps(lay), encoding="utf-8")
    with pytest.warns(UserWarning):
        s = load_emer_samples(emer_tree)
    i = int(np.flatnonzero(s["session"] == ROWS[0][0])[0])
    assert ER7_CLASSES[s["fer7"][i]] == list(reversed(ER7_CLASSES))[ROWS[0][4]]
    v = EYE_FEATURE_NAMES.index("gaze_velocity")
    d = EYE_FEATURE_NAMES.index("event_duration")
    np.testing.assert_allclose(s["eye"][i, :, v], 0.5 * s["eye"][i, :, d], rtol=1e-5)
    for bad, msg in (({"nonsense": 1}, "unknown key"), ({"eye_columns": {"pupil_size": "x"}}, "unknown feature"),
                     ({"class_order": ["a"]}, "class_order")):
        (emer_tree / "emer_layout.json").write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(ConfigError, match=msg):
            read_layout(emer_tree)
    (emer_tree / "emer_layout.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_layout(emer_tree)


def test_unmappable_tables_and_xlsx_are_reported(emer_tree):
    lay = read_layout(emer_tree)
    with pytest.raises(ConfigError, match="none of the eye_columns"):
        map_eye_table(pd.DataFrame({"foo": [1.0, 2.0]}), lay)
    (emer_tree / "labels" / "EMER_label.csv").unlink()
    (emer_tree / "labels" / "EMER_label.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    if openpyxl_available():
        with pytest.raises(ConfigError):
            load_emer_samples(emer_tree)
    else:
        with pytest.raises(ConfigError, match="openpyxl"):
            load_emer_samples(emer_tree)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:.*the column map fills no data")
def test_participant_in_two_sets_is_refused_for_set_folds(emer_tree, tmp_path, capsys):
    split = emer_tree / "labels" / "emer_set.txt"
    split.write_text(split.read_text().replace(f"{ROWS[1][0]}\tset1", f"{ROWS[1][0]}\tset2"))
    assert cli.main(["train", "--data", str(emer_tree), "--folds", "3", "--modalities", "eye,fixation",
                     "--out", str(tmp_path / "x.pt")]) == 2
    assert "leak" in capsys.readouterr().err


@pytest.mark.torch
def test_train_one_epoch_on_emer_sets(emer_tree, tmp_path):
    torch = pytest.importorskip("torch")
    from emer_live.model import load_checkpoint

    torch.set_num_threads(1)
    out = tmp_path / "emer.pt"
    with pytest.warns(UserWarning):
        rc = cli.main(["train", "--data", str(emer_tree), "--folds", "3", "--run-folds", "1", "--epochs", "1",
                       "--batch-size", "2", "--task", "multi", "--modalities", "face,eye,fixation",
                       "--face-train", "none", "--threads", "1", "--quiet", "--out", str(out)])
    assert rc == 0
    prov = load_checkpoint(out, device="cpu").provenance
    assert prov["split"]["method"].startswith("emer_set.txt")
    assert prov["split"]["test_participants"] == ["emer-1"]            # set 1
    assert prov["split"]["fold_test_participants"] == [["emer-1"], ["emer-2"], ["emer-3"]]
    with pytest.warns(UserWarning):   # load_samples dispatches EMER roots to this loader
        s = load_samples([emer_tree], SampleSpec(use_face=False), load_face=False)
    assert len(s) == 6 and s.face_bank is None
