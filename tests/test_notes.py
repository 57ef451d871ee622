"""Operator notes: stored as `note` events in events.tsv (with the trial during a session), the
console's note entry stamps a note when typing begins, and a note that looks like a name or an
e-mail address is held back once with a warning (participants are pseudonymous)."""

import json
import threading
import time

import pytest

from emer_live.app import PhaseChanged, Run, RunConfig, drive
from emer_live.errors import ConfigError
from emer_live.recording import SessionReader
from emer_live.session.ids import IdentifyingTextWarning


def _notes(folder):
    return [e for e in SessionReader(folder).events() if e["kind"] == "note" and e["detail"].get("source") == "operator"]


def _record(tmp_path, seconds=30):
    run = Run(RunConfig(kind="record", out=str(tmp_path / "S"), camera="none", mic="none", rate=60, duration_s=seconds))
    run.start()
    return run


def test_run_stores_operator_notes_and_refuses_bad_ones(tmp_path):
    run = _record(tmp_path)
    try:
        time.sleep(0.3)
        t_seen = run.clock.now_us()
        time.sleep(0.2)
        t1 = run.add_note("participant sneezed", t_us=t_seen)
        assert t1 == t_seen
        t2 = run.add_note("  door opened  \n")
        assert t2 > t1
        with pytest.warns(IdentifyingTextWarning, match="e-mail"):
            run.add_note("send the data to anna.schmidt@example.org")
        for bad, err in (("", ConfigError), ("   ", ConfigError), ("x" * 2001, ConfigError)):
            with pytest.raises(err):
                run.add_note(bad)
        with pytest.raises(ConfigError, match="between the run's start and now"):
            run.add_note("from the future", t_us=run.clock.now_us() + 10_000_000)
    finally:
        run.stop()
        while run.poll():
            threading.Event().wait(0.01)
    with pytest.raises(RuntimeError, match="not running"):
        run.add_note("too late")
    notes = _notes(tmp_path / "S")
    assert [(n["t_us"], n["detail"]["text"]) for n in notes] == [
        (t1, "participant sneezed"), (t2, "door opened"), (notes[2]["t_us"], "send the data to anna.schmidt@example.org")]
    assert all(n["trial"] is None for n in notes)


def test_a_note_during_a_session_carries_the_trial_of_its_moment(tmp_path):
    """A note carries the trial running at its time stamp: one begun during trial 1's clip and
    stored once trial 2 has begun still belongs to trial 1."""
    run = Run(RunConfig(kind="session", participant="P04", out_root=str(tmp_path), camera="none", rate=60,
                        n_trials=2, time_scale=0.05, seed=3, fast=True))
    seen, said = {}, []

    def on_event(ev):
        if isinstance(ev, PhaseChanged) and ev.phase == "stimulus" and ev.trial == 1:
            seen["t"] = ev.t_us                   # the operator starts typing here ...
        if isinstance(ev, PhaseChanged) and ev.phase == "fixation" and ev.trial == 2 and not said:
            said.append(run.add_note("participant looked away during the clip", t_us=seen["t"]))  # ... Enter
            said.append(run.add_note("trial 2 began"))

    run.subscribe(on_event)
    drive(run, signals=False)
    assert run.status == "complete" and len(said) == 2
    first, second = _notes(run.session_dir)
    assert (first["t_us"], first["trial"]) == (seen["t"], 1)
    assert second["trial"] == 2


def test_note_entry_stamps_when_typing_begins_and_holds_an_identifying_note_once(qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from PyQt6 import QtCore

    from emer_live.ui.panels import NoteEntry

    entry = NoteEntry()
    qtbot.addWidget(entry)
    entry.show()
    assert not entry.edit.isEnabled()                      # nothing records yet
    run = _record(tmp_path)
    try:
        entry.set_run(run)
        assert entry.edit.isEnabled()
        t_before = run.clock.now_us()
        qtbot.keyClicks(entry.edit, "fire alarm")
        t_typed = run.clock.now_us()
        qtbot.wait(300)                                     # the operator takes a moment to finish
        qtbot.keyClick(entry.edit, QtCore.Qt.Key.Key_Return)
        (t, text), = entry.stored
        assert text == "fire alarm" and t_before <= t <= t_typed   # stamped at the first key, not at Enter
        assert entry.edit.text() == "" and "stored at" in entry.status.text()
        # an identifying note: held back once with the reason, stored on the second Enter
        qtbot.keyClicks(entry.edit, "spoke to Dr Weber about it")
        qtbot.keyClick(entry.edit, QtCore.Qt.Key.Key_Return)
        assert len(entry.stored) == 1 and "Not stored yet" in entry.status.text()
        assert "title and a name" in entry.status.text()
        qtbot.keyClick(entry.edit, QtCore.Qt.Key.Key_Return)
        assert len(entry.stored) == 2
    finally:
        run.stop()
        while run.poll():
            threading.Event().wait(0.01)
    entry.set_run(run)
    assert not entry.edit.isEnabled() and not entry.button.isEnabled()
    assert [n["detail"]["text"] for n in _notes(tmp_path / "S")] == ["fire alarm", "spoke to Dr Weber about it"]
    meta = json.loads((tmp_path / "S" / "session.json").read_text())
    assert meta["status"] == "aborted"
