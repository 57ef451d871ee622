"""SAM answers, derived ER labels, the valence/arousal helper and the sam.tsv round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from emer_live.errors import ConfigError, SessionExistsError, SessionFormatError
from emer_live.labels import (
    ER3_CLASSES, ER7_CLASSES, VA_ANCHORS, er3_probs_from_er7, sam_to_unit, to_er3, va_from_probs,
)
from emer_live.session.sam import SAM_COLUMNS, SamAnswer, SamTable, escape_note, read_sam, \
    unescape_note

EXPECTED_ER3 = {"happiness": "positive", "surprise": "positive", "sadness": "negative",
                "fear": "negative", "disgust": "negative", "anger": "negative",
                "neutral": "neutral"}


def test_label_maps():
    assert ER7_CLASSES == ("happiness", "sadness", "fear", "surprise", "disgust", "anger",
                           "neutral")
    assert ER3_CLASSES == ("positive", "negative", "neutral")
    assert {c: to_er3(c) for c in ER7_CLASSES} == EXPECTED_ER3
    assert [sam_to_unit(x) for x in (1, 3, 5, 7, 9)] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    for bad in (0, 10, "5", True, None):
        with pytest.raises(ConfigError):
            sam_to_unit(bad)
    with pytest.raises(ConfigError, match="unknown emotion category 'joy'"):
        to_er3("joy")


def test_sam_answer_derived_labels():
    a = SamAnswer(valence=9, arousal=1, dominance=5, emotion="surprise", note="ok")
    assert (a.er7, a.er3, a.er_valence, a.er_arousal) == ("surprise", "positive", 1.0, -1.0)
    assert a.er7_index == 3
    for emo in ER7_CLASSES:
        b = SamAnswer(valence=6, arousal=2, dominance=8, emotion=emo)
        assert b.er3 == EXPECTED_ER3[emo] and b.er_valence == 0.25 and b.er_arousal == -0.75
    assert SamAnswer(np.int64(3), np.int32(4), 5, "fear").valence == 3   # numpy ints accepted


@pytest.mark.parametrize("kwargs, match", [
    (dict(valence=0), "valence must be a whole number from 1 to 9"),
    (dict(arousal=10), "arousal must be a whole number from 1 to 9"),
    (dict(dominance=5.5), "dominance must be a whole number"),
    (dict(valence=True), "valence"),
    (dict(emotion="joy"), "unknown SAM emotion 'joy'"),
    (dict(emotion="Happiness"), "unknown SAM emotion"),
    (dict(note=3), "note must be text"),
    (dict(note="x" * 2001), "keep it under 2000"),
])
def test_sam_answer_validation(kwargs, match):
    base = dict(valence=5, arousal=5, dominance=5, emotion="neutral")
    base.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        SamAnswer(**base)


def test_va_from_probs():
    for i, c in enumerate(ER7_CLASSES):
        onehot = np.eye(7)[i]
        assert np.allclose(va_from_probs(onehot), VA_ANCHORS[c])
    assert np.allclose(va_from_probs(np.ones(7)), np.mean(list(VA_ANCHORS.values()), axis=0))
    assert np.allclose(va_from_probs({"happiness": 0.5, "sadness": 0.5}),
                       [(0.81 - 0.63) / 2, (0.51 - 0.27) / 2])
    batch = np.random.default_rng(0).dirichlet(np.ones(7), size=(4, 3))
    out = va_from_probs(batch)
    assert out.shape == (4, 3, 2) and np.all(np.abs(out) <= 1)
    assert np.allclose(er3_probs_from_er7(np.eye(7)[3]), [1, 0, 0])
    with pytest.raises(ConfigError, match="last axis of length 7"):
        va_from_probs(np.ones(6))
    with pytest.raises(ConfigError, match="unknown categories"):
        va_from_probs({"joy": 1.0})


NOTES = ["", "plain", "tab\there", "two\nlines\r\nand CR", 'quoted "word"', '"starts quoted',
         "back\\slash \\t literal", "accents \u00e9\u00e8 \u2014 ok", "ctrl\x07bell"]


def test_note_escaping():
    for n in NOTES:
        esc = escape_note(n)
        assert "\t" not in esc and "\n" not in esc and "\r" not in esc
        assert not esc.startswith('"')
        assert unescape_note(esc) == n
    assert escape_note("a\x07b") == "a\\x07b" and unescape_note("a\\x07b") == "a\x07b"
    assert unescape_note(escape_note("\\x07")) == "\\x07"      # a literal backslash-x stays


def _write_rows(path, notes=NOTES):
    rows = []
    with SamTable(path) as table:
        for i, note in enumerate(notes, start=1):
            emo = ER7_CLASSES[i % 7]
            ans = SamAnswer(valence=1 + i % 9, arousal=9 - i % 9, dominance=5, emotion=emo,
                            note=note)
            rows.append(table.append(trial=i, stimulus_id=f"hap_{i:02d}", category="happiness",
                                     answer=ans, answered_t_us=1_000_000 * i + 17))
            # flushed after each row: another reader sees it while the table is open
            assert len(path.read_text(encoding="utf-8").splitlines()) == i + 1
    return rows


def test_sam_tsv_round_trip(tmp_path):
    path = tmp_path / "sam.tsv"
    rows = _write_rows(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].split("\t") == list(SAM_COLUMNS) and lines[-1] == ""
    assert len(lines) == len(NOTES) + 2
    assert sum(ln.startswith("trial\t") for ln in lines) == 1       # header once
    assert read_sam(path) == rows
    assert read_sam(tmp_path) == rows                                  # session folder accepted
    df = read_sam(path, as_dataframe=True)
    assert list(df.columns) == list(SAM_COLUMNS) and len(df) == len(NOTES)
    assert list(df["note"]) == NOTES
    assert list(df["er3"]) == [r.answer.er3 for r in rows]
    # pandas with default settings reads the same table shape
    raw = pd.read_csv(path, sep="\t", keep_default_na=False)
    assert list(raw.columns) == list(SAM_COLUMNS) and len(raw) == len(NOTES)
    assert list(raw["er_valence"]) == [r.answer.er_valence for r in rows]
    assert list(raw["answered_t_us"]) == [r.answered_t_us for r in rows]


def test_sam_table_refuses_overwrite_and_resumes(tmp_path):
    path = tmp_path / "sam.tsv"
    _write_rows(path, notes=["a", "b"])
    before = path.read_bytes()
    with pytest.raises(SessionExistsError, match="never overwritten"):
        SamTable(path)
    assert path.read_bytes() == before
    with SamTable(path, resume=True) as table:
        assert table.rows_written == 2
        table.append(trial=3, stimulus_id="sad_01", category="sadness",
                     answer=SamAnswer(2, 3, 4, "sadness"), answered_t_us=5)
    assert [r.trial for r in read_sam(path)] == [1, 2, 3]
    with pytest.raises(SessionFormatError, match="does not exist"):
        SamTable(tmp_path / "missing" / "sam.tsv")


def test_sam_row_validation(tmp_path):
    with SamTable(tmp_path / "sam.tsv") as table:
        ans = SamAnswer(5, 5, 5, "neutral")
        with pytest.raises(ConfigError, match="trial numbers start at 1"):
            table.append(trial=0, stimulus_id="x", category="neutral", answer=ans,
                         answered_t_us=0)
        with pytest.raises(ConfigError, match="stimulus_id"):
            table.append(trial=1, stimulus_id="a\tb", category="neutral", answer=ans,
                         answered_t_us=0)
        with pytest.raises(ConfigError, match="unknown stimulus category"):
            table.append(trial=1, stimulus_id="x", category="calm", answer=ans, answered_t_us=0)
        with pytest.raises(ConfigError, match="answered_t_us"):
            table.append(trial=1, stimulus_id="x", category="neutral", answer=ans,
                         answered_t_us=1.5)
    assert read_sam(tmp_path / "sam.tsv") == []


def test_read_sam_damaged_files(tmp_path):
    path = tmp_path / "sam.tsv"
    _write_rows(path, notes=["a", "b"])
    good = path.read_text(encoding="utf-8")
    # a crash mid-row: the cut-off last row is skipped with a warning
    path.write_text(good + "3\tfea_01\tfear\t5\t", encoding="utf-8")
    with pytest.warns(UserWarning, match="incomplete last row"):
        assert len(read_sam(path)) == 2
    with pytest.raises(SessionFormatError, match="incomplete row"):
        SamTable(path, resume=True)
    # a stored label that does not follow from the raw answers
    lines = good.split("\n")
    fields = lines[1].split("\t")
    fields[SAM_COLUMNS.index("er3")] = "neutral" if fields[8] != "neutral" else "positive"
    lines[1] = "\t".join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(SessionFormatError, match="line 2: er3="):
        read_sam(path)
    path.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(SessionFormatError, match="missing columns"):
        read_sam(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SessionFormatError, match="no such file"):
            read_sam(tmp_path / "nope.tsv")
