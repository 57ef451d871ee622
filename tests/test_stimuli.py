"""Stimulus library: manifest validation, placeholder generation and ``emer-live stimuli check``."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path

import numpy as np

import pytest

from emer_live.cli import main
from emer_live.errors import StimulusError
from emer_live.labels import ER7_CLASSES, VA_ANCHORS
from emer_live.session.stimuli import (
    MANIFEST_NAME, Clip, ManifestError, check_library, emer_design_clips, load_manifest,
    probe_video, write_manifest,
)

REPO = Path(__file__).resolve().parents[1]

# Small and short clips keep the suite fast; 2.0 s still exercises the seek-near-the-end check.
PH_ARGS = ["--duration", "2", "--size", "128x96", "--fps", "10"]


@pytest.fixture(scope="module")
def placeholder_set(tmp_path_factory):
    pytest.importorskip("av")
    out = tmp_path_factory.mktemp("ph") / "lib"
    rc = main(["stimuli", "placeholders", "--out", str(out), *PH_ARGS])
    assert rc == 0
    return out


@pytest.fixture
def lib_copy(placeholder_set, tmp_path):
    dst = tmp_path / "lib"
    shutil.copytree(placeholder_set, dst)
    return dst


def run_check(capsys, *argv):
    capsys.readouterr()
    rc = main(["stimuli", "check", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def manifest_text(clips_toml: str, design: str = "") -> str:
    return f"format = 1\n{design}\n{clips_toml}"


def clip_toml(cid, category, *, file=None, duration=90.0, extra=""):
    return (f'[[clip]]\nid = "{cid}"\nfile = "{file or cid + ".mp4"}"\ncategory = "{category}"\n'
            f"valence = 0.1\narousal = 0.2\nduration_s = {duration}\n{extra}\n")


def full_design_toml(replace=None, append=""):
    """The 28 EMER entries as TOML; ``replace`` maps an id to replacement TOML."""
    parts = []
    for c in emer_design_clips():
        parts.append((replace or {}).get(c.id) or clip_toml(c.id, c.category))
    return manifest_text("".join(parts) + append)


# --- manifest ----------------------------------------------------------------------------------

def test_repo_manifest_is_the_emer_design():
    lib = load_manifest(REPO / "stimuli" / MANIFEST_NAME)
    assert len(lib) == 28 and lib.clips_per_category == 4 and not lib.placeholder
    assert [(c.id, c.category) for c in lib] == [(c.id, c.category) for c in emer_design_clips()]
    for cat, clips in lib.by_category.items():
        assert len(clips) == 4
        assert all((c.valence, c.arousal) == VA_ANCHORS[cat] for c in clips)
        assert all(60 <= c.duration_s <= 120 for c in clips)
    assert lib.path_of("hap_01") == REPO / "stimuli" / "hap_01.mp4"
    assert lib.path_of(lib.clips[-1]).name == "neu_04.mp4"
    with pytest.raises(StimulusError, match="no clip with id 'nope'"):
        lib.clip("nope")


def test_manifest_unknown_category(tmp_path):
    m = tmp_path / MANIFEST_NAME
    m.write_text(full_design_toml({"hap_02": clip_toml("hap_02", "joy")}))
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    msg = str(info.value)
    assert str(m) in msg and "clip #2 (id 'hap_02'" in msg and "unknown category 'joy'" in msg
    assert "use one of happiness" in msg
    # the count problem (happiness has 3 known clips) is reported too, naming the ids
    assert any("category 'happiness' has 3 clips (hap_01, hap_03, hap_04)" in str(p)
               for p in info.value.problems)


def test_manifest_duplicate_ids_and_files(tmp_path):
    m = tmp_path / MANIFEST_NAME
    m.write_text(full_design_toml({
        "hap_02": clip_toml("hap_01", "happiness", file="hap_02.mp4"),
        "sad_01": clip_toml("sad_01", "sadness", file="sad_02.mp4"),
    }))
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    reasons = [p.reason for p in info.value.problems]
    assert any(r.startswith("clip #2 (id 'hap_01', file 'hap_02.mp4'): duplicate id, already "
                            "used by clip #1") for r in reasons), reasons
    assert any("file 'sad_02.mp4' is already used by clip #5" in r for r in reasons), reasons
    assert all(p.file == str(m) for p in info.value.problems)


def test_manifest_missing_and_unknown_fields_bad_values(tmp_path):
    m = tmp_path / MANIFEST_NAME
    bad = ('[[clip]]\nid = "hap_01"\nfile = "hap_01.mp4"\ncategroy = "happiness"\n'
           'valence = 1.5\narousal = 0.2\nduration_s = 30\nsha256 = "xyz"\n')
    m.write_text(full_design_toml({"hap_01": bad}))
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    text = "\n".join(map(str, info.value.problems))
    assert "clip #1 (id 'hap_01', file 'hap_01.mp4'): unknown field 'categroy'" in text
    assert "missing field 'category'" in text
    assert "valence = 1.5 must be a number from -1 to 1" in text
    assert "duration_s = 30 is outside 60-120 s" in text and "[design] min_duration_s" in text
    assert "sha256 'xyz' is not 64 hex digits" in text
    # the one-line message names the first problem and says how to list the rest
    assert "more problems" in str(info.value) and "emer-live stimuli check" in str(info.value)


def test_manifest_wrong_counts(tmp_path):
    m = tmp_path / MANIFEST_NAME
    m.write_text(full_design_toml(append=clip_toml("hap_05", "happiness")))
    with pytest.raises(ManifestError, match=r"category 'happiness' has 5 clips \(hap_01, hap_02, "
                                            r"hap_03, hap_04, hap_05\); the design needs 4"):
        load_manifest(m)
    # a design with 2 clips per category is fine when the counts follow it
    parts = [clip_toml(f"{c[:3]}_{k}", c) for c in ER7_CLASSES for k in (1, 2)]
    m.write_text(manifest_text("".join(parts), "[design]\nclips_per_category = 2\n"))
    lib = load_manifest(m)
    assert len(lib) == 14 and all(len(v) == 2 for v in lib.by_category.values())


def test_manifest_syntax_error_and_unsafe_paths(tmp_path):
    m = tmp_path / MANIFEST_NAME
    m.write_text("format = 1\n[[clip]\nid = 'x'\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(m)
    m.write_text(full_design_toml({
        "hap_01": clip_toml("hap_01", "happiness", file="../elsewhere.mp4"),
        "hap_02": clip_toml("hap_02", "happiness", file="/abs/hap_02.mp4"),
        "hap_03": clip_toml("hap 03", "happiness"),
    }))
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    text = "\n".join(map(str, info.value.problems))
    assert "contains '..'" in text and "absolute path" in text
    assert "id 'hap 03' is not valid" in text


def test_missing_stimulus_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(StimulusError, match=re.escape(str(missing)) + ".*does not exist"):
        load_manifest(missing / MANIFEST_NAME)
    rc, out, err = run_check(capsys, missing)
    assert rc != 0 and f"{missing}: stimulus folder does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run_check(capsys, empty)
    assert rc != 0 and f"{empty / MANIFEST_NAME}: no such manifest" in err


def test_write_manifest_round_trip(tmp_path):
    clips = [Clip(id=c.id, file=c.file, category=c.category, valence=c.valence,
                  arousal=c.arousal, duration_s=61.5,
                  source='cut "0:10-1:11"\\ from\ta \u00e9 web video\nline 2')
             for c in emer_design_clips()]
    p = write_manifest(tmp_path / MANIFEST_NAME, clips, title="t\u00eftle")
    lib = load_manifest(p)
    assert list(lib.clips) == clips and lib.title == "t\u00eftle"
    with pytest.raises(StimulusError, match="refusing to overwrite"):
        write_manifest(p, clips)


# --- placeholders + check -------------------------------------------------------------------------

def test_placeholders_then_check_passes(placeholder_set, capsys):
    lib = load_manifest(placeholder_set)
    assert lib.placeholder and len(lib) == 28
    assert all(c.sha256 and abs(c.duration_s - 2.0) < 1e-9 for c in lib)
    rc, out, err = run_check(capsys, placeholder_set)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stimuli OK: 28 placeholder clips")
    assert "28 checksums verified" in lines[0]
    info = probe_video(lib.path_of("fea_02"))
    assert info.video_codec == "h264" and info.has_audio and info.audio_codec == "aac"
    assert (info.width, info.height) == (128, 96) and abs(info.fps - 10) < 1e-6
    assert abs(info.duration_s - 2.0) <= 0.1


def test_check_full_decode(placeholder_set):
    report = check_library(placeholder_set, full=True)
    assert report.ok, [str(p) for p in report.problems]


def test_check_names_deleted_corrupt_and_29th(lib_copy, capsys):
    (lib_copy / "sad_02.mp4").unlink()                                   # deleted
    data = (lib_copy / "fea_03.mp4").read_bytes()
    (lib_copy / "fea_03.mp4").write_bytes(data[: len(data) // 3])        # corrupted (truncated)
    shutil.copy(lib_copy / "hap_01.mp4", lib_copy / "hap_05.mp4")        # a 29th video file
    rc, out, err = run_check(capsys, lib_copy)
    assert rc != 0 and "stimuli OK" not in out
    lines = err.strip().splitlines()
    assert any(ln.startswith(f"{lib_copy / 'sad_02.mp4'}: missing") for ln in lines), err
    fea = [ln for ln in lines if ln.startswith(str(lib_copy / "fea_03.mp4"))]
    assert any("checksum mismatch" in ln for ln in fea), err
    assert any("not a readable video" in ln or "truncated or damaged" in ln for ln in fea), err
    assert any(ln.startswith(f"{lib_copy / 'hap_05.mp4'}: video file not listed in "
                             f"manifest.toml") for ln in lines), err
    assert lines[-1] == f"stimuli check failed: {len(lines) - 1} problems in {lib_copy}"


def test_check_29th_manifest_entry(lib_copy, capsys):
    m = lib_copy / MANIFEST_NAME
    shutil.copy(lib_copy / "hap_01.mp4", lib_copy / "hap_05.mp4")
    m.write_text(m.read_text() + "\n" + clip_toml("hap_05", "happiness", duration=2.0))
    rc, out, err = run_check(capsys, lib_copy)
    assert rc != 0
    assert f"{m}: category 'happiness' has 5 clips (hap_01, hap_02, hap_03, hap_04, hap_05)" in err
    assert "video file not listed" not in err   # hap_05.mp4 is listed now


def test_check_not_video_empty_duration_and_swapped(lib_copy, capsys):
    m = lib_copy / MANIFEST_NAME
    text = m.read_text()
    # drop the checksums of two entries, so the video checks alone must catch their problems
    for cid in ("dis_01", "ang_04"):
        text = re.sub(rf'(id = "{cid}"\n(?:.*\n)*?)sha256 = "[0-9a-f]+"\n', r"\1", text, count=1)
    text = text.replace('id = "neu_02"\nfile = "neu_02.mp4"\ncategory = "neutral"\n'
                        'valence = 0.0\narousal = 0.0\nduration_s = 2.0',
                        'id = "neu_02"\nfile = "neu_02.mp4"\ncategory = "neutral"\n'
                        'valence = 0.0\narousal = 0.0\nduration_s = 5.0')
    m.write_text(text)
    (lib_copy / "dis_01.mp4").write_text("this is not a video\n")
    (lib_copy / "ang_04.mp4").write_bytes(b"")
    a, b = lib_copy / "sur_01.mp4", lib_copy / "sur_02.mp4"
    tmp = lib_copy / "swap.tmp"
    a.rename(tmp), b.rename(a), tmp.rename(b)
    rc, out, err = run_check(capsys, lib_copy)
    assert rc != 0
    assert f"{lib_copy / 'dis_01.mp4'}: not a readable video file" in err
    assert f"{lib_copy / 'ang_04.mp4'}: empty file (0 bytes)" in err
    assert re.search(re.escape(str(lib_copy / "neu_02.mp4")) +
                     r": duration mismatch: the file lasts 2\.\d\d s, manifest.toml says 5 s", err)
    assert f"{a}: checksum mismatch" in err and f"{b}: checksum mismatch" in err
    assert len(err.strip().splitlines()) == 6          # 5 problems + the summary line


def test_check_against_other_manifest(placeholder_set, tmp_path, capsys):
    """--manifest: the repository's manifest (60-120 s) against the 2 s placeholder files."""
    rc, out, err = run_check(capsys, placeholder_set, "--manifest",
                             REPO / "stimuli" / MANIFEST_NAME)
    assert rc != 0
    assert err.count("duration mismatch") == 28 and "hap_01.mp4: duration mismatch" in err


def test_placeholders_refuse_to_overwrite(lib_copy, tmp_path, capsys):
    capsys.readouterr()
    assert main(["stimuli", "placeholders", "--out", str(lib_copy), *PH_ARGS]) != 0
    assert "is not empty" in capsys.readouterr().err
    # a lab's library is never replaced, even with --force
    real = tmp_path / "real"
    real.mkdir()
    write_manifest(real / MANIFEST_NAME, emer_design_clips())
    assert main(["stimuli", "placeholders", "--out", str(real), "--force", *PH_ARGS]) != 0
    assert "not a placeholder set" in capsys.readouterr().err
    assert not any(real.glob("*.mp4"))


def test_placeholders_force_replaces_placeholder_set(lib_copy, capsys):
    assert main(["stimuli", "placeholders", "--out", str(lib_copy), "--force",
                 "--duration", "1", "--size", "96x64", "--fps", "8"]) == 0
    lib = load_manifest(lib_copy)
    assert all(c.duration_s == 1.0 for c in lib)
    rc, out, err = run_check(capsys, lib_copy)
    assert rc == 0, err


def test_placeholder_option_errors(tmp_path, capsys):
    capsys.readouterr()
    assert main(["stimuli", "placeholders", "--out", str(tmp_path / "x"), "--duration",
                 "0.1"]) != 0
    assert "duration must be 0.5-120 s" in capsys.readouterr().err
    assert main(["stimuli", "placeholders", "--out", str(tmp_path / "x"), "--size",
                 "101x64"]) != 0
    assert "must be even" in capsys.readouterr().err


def test_check_with_opencv_fallback(tmp_path, monkeypatch, capsys):
    """Without PyAV, files are probed with OpenCV (here: mp4v clips written by OpenCV)."""
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setitem(sys.modules, "av", None)          # `import av` -> ImportError
    lib = tmp_path / "cvlib"
    lib.mkdir()
    clips = []
    for c in emer_design_clips():
        writer = cv2.VideoWriter(str(lib / c.file), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        for i in range(20):
            writer.write(np.full((48, 64, 3), i * 10, np.uint8))
        writer.release()
        clips.append(dataclasses.replace(c, duration_s=2.0))
    write_manifest(lib / MANIFEST_NAME, clips, min_duration_s=1.0)
    rc, out, err = run_check(capsys, lib)
    assert rc == 0, err
    assert probe_video(lib / "hap_01.mp4").backend == "cv2"
    (lib / "dis_02.mp4").write_bytes(b"garbage" * 100)
    rc, out, err = run_check(capsys, lib)
    assert rc != 0 and f"{lib / 'dis_02.mp4'}: not a readable video file" in err
    capsys.readouterr()
    assert main(["stimuli", "placeholders", "--out", str(tmp_path / "p")]) != 0
    assert "needs PyAV: pip install av" in capsys.readouterr().err


def test_plan_refuses_a_library_with_bad_clips(clip_library, tmp_path, capsys):
    """`stimuli plan` on a library with a missing, a 0-byte and a text-only clip: no plan, exit 2,
    one line per bad clip (issue 21); a good library plans as before."""
    lib = tmp_path / "lib"
    shutil.copytree(clip_library, lib)
    (lib / "hap_01.mp4").unlink()
    (lib / "sad_01.mp4").write_bytes(b"")
    (lib / "fea_01.mp4").write_text("this is not a video\n")
    args = ["stimuli", "plan", str(lib), "--participant", "P01", "--seed", "0"]
    capsys.readouterr()
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 4, lines
    for name, why in (("hap_01", "missing"), ("sad_01", "empty file"), ("fea_01", "not a readable video")):
        assert sum(name in line for line in lines[:3]) == 1 and any(why in line for line in lines[:3])
    assert lines[3].startswith("emer-live: error: no plan: 3 bad files")
    assert main(["stimuli", "plan", str(clip_library), "--participant", "P01", "--seed", "0", "--trials", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4


def test_plan_names_a_missing_manifest_and_points_a_design_without_videos_to_manifest_only(tmp_path, capsys):
    """No manifest: its own one line (not "1 bad file"); a manifest whose every clip is missing
    (a design before its videos arrive) is told about --manifest-only, which plans from it."""
    capsys.readouterr()
    assert main(["stimuli", "plan", str(tmp_path), "--participant", "P01", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such manifest" in err[0] and "bad file" not in err[0]
    design = tmp_path / "design"
    design.mkdir()
    shutil.copy(REPO / "stimuli" / "manifest.toml", design / "manifest.toml")
    assert main(["stimuli", "plan", str(design), "--participant", "P01", "--seed", "0"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("emer-live: error: no plan: 28 bad files") and last.endswith(
        "--manifest-only plans from the manifest alone")
    assert main(["stimuli", "plan", str(design), "--participant", "P01", "--seed", "0", "--manifest-only"]) == 0
