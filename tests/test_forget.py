"""Participant data rights (issue 17): `emer-live forget`, consent metadata, identifying notes."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emer_live import cli
from emer_live.errors import ConfigError
from emer_live.session.consent import consent_meta
from emer_live.session.forget import AUDIT_FILE, _cmd, plan_forget, pseudonym_hash
from emer_live.session.ids import IdentifyingTextWarning, looks_identifying
from emer_live.session.sam import SamAnswer, SamTable, read_sam
from emer_live.training.dataset import _session_cache_dir

try:
    from tests.fakes.sessions import make_session
except ImportError:  # pragma: no cover - rootdir on sys.path differs
    from fakes.sessions import make_session

WHO = "P07"


def grep_tree(root: Path, needle: str):
    """Every path under ``root`` whose name or bytes contain ``needle`` (zip members unpacked;
    UTF-8, and the UTF-16/32 of Windows tools and numpy string arrays)."""
    hits, raws = [], [needle.encode(e) for e in ("utf-8", "utf-16-le", "utf-32-le")]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if needle in name:
                hits.append(p)
            elif p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                if any(r in data for r in raws):
                    hits.append(p)
                elif zipfile.is_zipfile(p):
                    with zipfile.ZipFile(p) as z:
                        if any(r in z.read(n) for n in z.namelist() for r in raws):
                            hits.append(p)
    return hits


@pytest.fixture
def corpus(tmp_path):
    """Two participants' sessions and the derived files a lab accumulates around them."""
    root = tmp_path / "recordings"
    for who in (WHO, "P08"):
        for k in (1, 2):
            make_session(root / who / f"S2026120{k}-100000", participant=who)
    # a session of P07 filed elsewhere (`record --out` anywhere): found by its session.json
    make_session(root / "pilot" / "rec_a", participant=WHO)
    # a SAM table with a note, inside P07's session
    with SamTable(root / WHO / "S20261201-100000" / "sam.tsv") as t:
        t.append(trial=1, stimulus_id="hap_01", category="happiness",
                 answer=SamAnswer(7, 5, 5, "happiness", "laughed"), answered_t_us=2_000_000)
    # window caches kept outside the sessions (--cache-dir): named by the real naming function
    for who in (WHO, "P08"):
        c = _session_cache_dir(root / who / "S20261201-100000", root / "wcache")
        c.mkdir(parents=True)
        np.savez_compressed(c / "windows_w8-h1-face_abc.npz", eye=np.zeros((2, 3)))
    # evaluation output naming both participants; a compressed npz that carries the pseudonym inside
    ev = root / "eval_mine"
    ev.mkdir()
    # (the formats emer_live writes: an evaluation report, its per-sample table, window arrays)
    (ev / "evaluation.json").write_text(json.dumps({"format": "emer_live.evaluation", "participants": [WHO, "P08"],
                                                    "uar": 0.4}))
    header = "fold\tparticipant\tsession\tkind\ttrial\tt_end_us\tmasked\tscored"
    (ev / "predictions.tsv").write_text(f"{header}\n1\t{WHO}\tS1\twindow\t1\t8\t0\t1\n1\tP08\tS1\twindow\t1\t8\t0\t1\n")
    np.savez_compressed(root / "samples_export.npz", participant=np.array([WHO, "P08"]), t_end_us=np.zeros(2))
    ev2 = root / "eval_p08_only"
    ev2.mkdir()
    (ev2 / "evaluation.json").write_text(json.dumps({"format": "emer_live.evaluation", "participants": ["P08"]}))
    # a link named after the participant pointing out of the root: a person made it (emer_live
    # makes no links), so it is listed for the lab and neither it nor its target is touched
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{WHO} key file of the lab (not under the root)\n")
    os.symlink(outside, root / f"{WHO}_consent_scan.txt")
    # a near miss that must stay: another pseudonym that only starts like it
    make_session(root / "P070" / "S20261201-100000", participant="P070")
    return root


def test_forget_leaves_nothing_that_mentions_the_pseudonym(corpus, capsys):
    assert grep_tree(corpus, WHO)  # the corpus does mention it
    p08_before = sorted(p.relative_to(corpus) for p in (corpus / "P08").rglob("*"))
    outside = corpus.parent / "outside.txt"
    assert cli.main(["forget", WHO, "--root", str(corpus), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "removed 3 session(s)" in out
    left = [p for p in grep_tree(corpus, WHO) if "P070" not in str(p.relative_to(corpus))]
    assert left == [corpus / f"{WHO}_consent_scan.txt"]      # the lab's link, listed (LAB)
    assert f"LAB      {WHO}_consent_scan.txt" in out
    # other participants' data untouched; the near miss kept; the link target kept
    assert sorted(p.relative_to(corpus) for p in (corpus / "P08").rglob("*")) == p08_before
    assert (corpus / "P070" / "S20261201-100000" / "session.json").exists()
    assert (corpus / "eval_p08_only" / "evaluation.json").exists()
    assert len(list((corpus / "wcache").iterdir())) == 1
    assert outside.read_text().startswith(WHO)
    # the audit line: no pseudonym, a hash, counts
    audit = (corpus / AUDIT_FILE).read_text().splitlines()
    assert len(audit) == 3 and WHO not in "".join(audit[1:])     # header, planned, done
    planned = dict(zip(audit[0].split("\t"), audit[1].split("\t")))
    row = dict(zip(audit[0].split("\t"), audit[2].split("\t")))
    assert (planned["stage"], row["stage"]) == ("planned", "done")
    assert planned["files_removed"] == row["files_removed"]
    assert row["participant_sha256_16"] == pseudonym_hash(WHO)
    assert row["sessions_removed"] == "3" and int(row["files_removed"]) > 15 and row["failed"] == "0"
    assert row["utc_date"] == dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")


def test_dry_run_lists_and_changes_nothing(corpus, capsys):
    before = sorted(str(p) for p in corpus.rglob("*"))
    assert cli.main(["forget", WHO, "--root", str(corpus), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sorted(str(p) for p in corpus.rglob("*")) == before
    for item in (f"session  {WHO}/S20261201-100000/", "session  pilot/rec_a/", "eval_mine/evaluation.json",
                 "samples_export.npz", f"{WHO}_consent_scan.txt", "dry run"):
        assert item in out, item
    assert "P08/" not in out and "P070" not in out and "eval_p08_only" not in out
    assert not (corpus / AUDIT_FILE).exists()


def _args(root, who=WHO, **kw):
    return types.SimpleNamespace(participant=who, root=str(root), dry_run=False, yes=False, **kw)


def test_confirmation_by_typing_the_pseudonym(corpus, capsys):
    # no stdin: refused with a clear message, nothing removed
    with pytest.raises(ConfigError, match="no confirmation on stdin; nothing was removed"):
        _cmd(_args(corpus), stdin=io.StringIO(""))
    # a wrong answer: exit 1, nothing removed
    assert _cmd(_args(corpus), stdin=io.StringIO("y\n")) == 1
    assert (corpus / WHO).exists() and not (corpus / AUDIT_FILE).exists()
    assert _cmd(_args(corpus), stdin=io.StringIO(f"{WHO}\n")) == 0
    assert not (corpus / WHO).exists() and (corpus / AUDIT_FILE).exists()


def test_cli_without_stdin_refuses(corpus):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", "forget", WHO, "--root", str(corpus)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("emer-live: error: forget: no confirmation")
    assert (corpus / WHO).exists()


def test_mentions_in_another_participants_session_are_listed_for_review(corpus, capsys):
    with SamTable(corpus / "P08" / "S20261202-100000" / "sam.tsv") as t:
        t.append(trial=1, stimulus_id="hap_01", category="happiness",
                 answer=SamAnswer(5, 5, 5, "neutral", f"sat next to {WHO}"), answered_t_us=2_000_000)
    plan = plan_forget(corpus, WHO)
    assert [p.name for p, _ in plan.review] == ["sam.tsv"]
    assert cli.main(["forget", WHO, "--root", str(corpus), "--yes"]) == 0
    assert "review them" in capsys.readouterr().out
    assert (corpus / "P08" / "S20261202-100000" / "sam.tsv").exists()
    lines = (corpus / AUDIT_FILE).read_text().splitlines()
    row = dict(zip(lines[0].split("\t"), lines[-1].split("\t")))
    assert row["left_for_review"] == "1" and row["stage"] == "done"


def test_root_inside_the_participants_folder_is_refused(corpus):
    for root in (corpus / WHO, corpus / WHO / "S20261201-100000", corpus / "pilot" / "rec_a"):
        with pytest.raises(ConfigError, match="the participant's own folder or session"):
            plan_forget(root, WHO)
    assert (corpus / WHO / "S20261201-100000" / "session.json").exists()


def test_bad_pseudonym_and_root(tmp_path):
    with pytest.raises(ConfigError, match="pseudonyms"):
        plan_forget(tmp_path, "../etc")
    with pytest.raises(ConfigError, match="not a folder"):
        plan_forget(tmp_path / "nope", "P01")


def test_consent_meta():
    today = dt.date(2026, 12, 3)
    assert consent_meta("v2.1", "2026-11-30", today=today) == {"consent": {"version": "v2.1", "date": "2026-11-30"}}
    assert consent_meta("2026-03", today=today)["consent"]["date"] == "2026-12-03"
    for bad_version in ("", "two words", "x" * 41, None):
        with pytest.raises(ConfigError, match="consent version"):
            consent_meta(bad_version, today=today)
    with pytest.raises(ConfigError, match="in the future"):
        consent_meta("v1", "2026-12-04", today=today)
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        consent_meta("v1", "30.11.2026", today=today)


@pytest.mark.parametrize("text", ["anna.schmidt@uni-x.de", "My name is Anna", "talked to Anna Schmidt after",
                                  "Maria Gonzalez", "call +49 170 1234567", "Dr Weber was present"])
def test_identifying_text_is_flagged(text):
    assert looks_identifying(text)


@pytest.mark.parametrize("text", ["", "felt sad, the clip was long", "I am tired", "Very Sad. Then relief",
                                  "laughed at 0:42", "P01 fidgeted", "Happy"])
def test_ordinary_notes_are_not_flagged(text):
    assert looks_identifying(text) is None


def test_sam_note_warns_at_entry_not_at_read(tmp_path):
    with pytest.warns(IdentifyingTextWarning, match="SAM note: it contains an e-mail address"):
        a = SamAnswer(5, 5, 5, "neutral", "write to a.b@c.de")
    with SamTable(tmp_path / "sam.tsv") as t:
        t.append(trial=1, stimulus_id="x", category="neutral", answer=a, answered_t_us=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_sam(tmp_path / "sam.tsv")[0].answer.note == "write to a.b@c.de"


def test_checkpoint_trained_on_the_participant_is_removed(corpus, capsys):
    """A checkpoint's provenance names its training participants (inside torch's zip archive)."""
    torch = pytest.importorskip("torch", reason="checkpoints need torch (the 3.10 SDK lane has none)")
    from emer_live.model.checkpoint import identity_norm_stats, save_checkpoint
    from emer_live.model.config import EMERTConfig
    from emer_live.model.emert import EMERT

    torch.manual_seed(0)
    cfg = EMERTConfig()
    models = corpus / "models"
    models.mkdir()
    for name, people in (("mine.pt", [WHO, "P08"]), ("other.pt", ["P08", "P070"])):
        save_checkpoint(models / name, EMERT(cfg).eval(), norm_stats=identity_norm_stats(cfg),
                        provenance={"split": {"train_participants": people}})
    plan = plan_forget(corpus, WHO)
    assert [p.name for p, _ in plan.files if p.parent == models] == ["mine.pt"]
    assert cli.main(["forget", WHO, "--root", str(corpus), "--yes"]) == 0
    assert not (models / "mine.pt").exists() and (models / "other.pt").exists()
