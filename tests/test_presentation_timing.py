"""Observed stimulus timing (issue 21, item 2): onset and offset in the record are the first and
last presented frames of the presentation log, the plan is kept apart, and each trial's frames
shown / dropped / late reach events.tsv, session.json and `emer-live info`. Manual clock, no Qt."""

import json

import numpy as np
import pytest

from emer_live.clock import ReplayClock
from emer_live.recording import Recorder, SessionReader
from emer_live.recording.presentation import (PresentationTracker, last_presentation, read_presentation_log,
                                              trial_presentation)
from emer_live.session.controller import Phase, SessionController, SessionTiming, SimulatedPresenter, TrialSpec
from emer_live.session.sam import SamAnswer

ANSWER = SamAnswer(valence=5, arousal=5, dominance=5, emotion="neutral")


class ScriptedPresenter(SimulatedPresenter):
    """Presents the frames and times a test gives (offsets from the planned onset, in us)."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)

    def play(self, trial, on_frame, *, onset_us=0):
        self._trial, self._on_frame, self._onset, self._k = trial, on_frame, onset_us, 0

    def poll(self, now_us):
        if self._trial is None:
            return
        while self._k < len(self.script) and self._onset + self.script[self._k][1] <= now_us:
            i, dt = self.script[self._k]
            self._on_frame(i, self._onset + dt)
            self._k += 1


def run_session(tmp_path, presenter, *, duration_s=2.0, fps=10.0):
    clock = ReplayClock(0, speed=None)
    rec = Recorder(tmp_path / "s", clock=clock, meta={"kind": "session"})
    rec.start(thread=False)
    ctrl = SessionController(recorder=rec, trials=[TrialSpec(1, "hap_01", "happiness", duration_s=duration_s, fps=fps)],
                             timing=SessionTiming(baseline_s=1, fixation_s=1, rest_s=1), presenter=presenter,
                             sam_source=lambda n: ANSWER)
    heard = []
    ctrl.presentation_listeners.append(lambda kind, tr: heard.append((kind, tr.t_onset_us, tr.t_offset_us)))
    ctrl.start()
    while not ctrl.finished:
        clock.advance_to(clock.now_us() + 10_000)
        ctrl.tick()
    ctrl.close()
    rec.stop()
    return SessionReader(tmp_path / "s"), heard


def events(reader, kind):
    return [e for e in reader.events() if e["kind"] == kind]


def test_onset_is_the_first_presented_frame_not_the_plan(tmp_path):
    """A display that shows the first frame 120 ms late: events.tsv, session.json and the
    presentation log agree on the observed onset; the plan is kept in its own fields."""
    r, heard = run_session(tmp_path, SimulatedPresenter(first_frame_delay_us=120_000))
    log = read_presentation_log(tmp_path / "s" / "trials" / "01_hap_01" / "stimulus_frames.tsv")
    planned = 2_000_000                                 # baseline 1 s + fixation 1 s
    (on,), (off,) = events(r, "stimulus_onset"), events(r, "stimulus_offset")
    assert on["t_us"] == int(log["t_us"][0]) == planned + 120_000
    assert on["detail"]["planned_onset_us"] == planned
    assert off["t_us"] == int(log["t_us"][-1])          # the last presented frame
    assert off["detail"]["planned_offset_us"] == planned + 2_000_000
    t = r.meta["trials"][0]
    assert (t["t_onset_us"], t["t_offset_us"]) == (on["t_us"], off["t_us"])
    assert (t["planned_onset_us"], t["planned_offset_us"]) == (planned, planned + 2_000_000)
    # the clip stopped at its planned end: the frames due after it were never presented
    assert t["frames_presented"] == len(log) == 19 and t["frames_dropped"] == 1 and t["frames_late"] == 0
    assert t["onset_delay_ms"] == pytest.approx(120.0)
    assert heard == [("onset", on["t_us"], None), ("offset", on["t_us"], off["t_us"])]
    # downstream readers take the observed times
    (iv,) = r.stimulus_intervals()
    assert (iv["onset_us"], iv["offset_us"]) == (on["t_us"], off["t_us"])


def test_dropped_and_late_frames_are_counted_per_trial(tmp_path, capsys):
    """Frames 3-5 never shown (the screen was busy), frame 6 painted 300 ms after frame 2; the
    figures land in events.tsv, session.json and `emer-live info` (a warning too)."""
    script = [(i, i * 100_000) for i in range(3)] + [(i, 500_000 + (i - 6) * 100_000) for i in range(6, 20)]
    r, _ = run_session(tmp_path, ScriptedPresenter(script))
    (off,) = events(r, "stimulus_offset")
    d = off["detail"]
    assert (d["frames"], d["frames_expected"], d["frames_dropped"], d["frames_late"]) == (17, 20, 3, 1)
    assert d["worst_interval_ms"] == pytest.approx(300.0)
    t = r.meta["trials"][0]
    assert (t["frames_presented"], t["frames_dropped"], t["frames_late"]) == (17, 3, 1)
    rows = trial_presentation(r)
    assert rows[0]["frames_dropped"] == 3 and rows[0]["frames_late"] == 1
    assert any("3 of 20 frames dropped" in p for p in rows[0]["problems"])

    from emer_live.cli import main

    assert main(["info", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    line = next(x for x in out.splitlines() if "shown" in x and "hap_01" in x)
    assert "17/20" in line and "dropped   3" in line and "late   1" in line and "PROBLEM" in line
    assert "trial 1 (hap_01): stimulus presentation: 3 of 20 frames dropped" in err
    assert main(["info", "--json", str(tmp_path / "s")]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["presentation"][0]["frames_dropped"] == 3


def test_a_clip_that_never_showed_a_frame_has_no_onset(tmp_path, capsys):
    r, heard = run_session(tmp_path, ScriptedPresenter([]))
    assert not events(r, "stimulus_onset") and not events(r, "stimulus_offset")
    (ns,) = events(r, "stimulus_not_shown")
    assert ns["detail"]["planned_onset_us"] == 2_000_000
    t = r.meta["trials"][0]
    assert t["t_onset_us"] is None and t["planned_onset_us"] == 2_000_000 and t["frames_presented"] == 0
    assert heard == [("offset", None, None)]
    from emer_live.cli import main

    assert main(["info", str(tmp_path / "s")]) == 0
    assert "no frame was presented" in capsys.readouterr().err


def test_headless_session_keeps_equal_plan_and_observation(tmp_path):
    """The simulated presenter shows frames on schedule: onset = plan, every frame, none late."""
    r, _ = run_session(tmp_path, SimulatedPresenter())
    (on,) = events(r, "stimulus_onset")
    assert on["t_us"] == on["detail"]["planned_onset_us"]
    t = r.meta["trials"][0]
    assert (t["frames_presented"], t["frames_dropped"], t["frames_late"]) == (20, 0, 0)


def test_tracker_and_log_helpers():
    tr = PresentationTracker(fps=25.0, frames_expected=5, planned_onset_us=1_000)
    for i, t in [(0, 11_000), (1, 51_000), (3, 131_000), (4, 171_000)]:
        tr.add(i, t)
    s = tr.stats()
    assert (s.frames_shown, s.frames_dropped, s.frames_late, s.worst_interval_ms) == (4, 1, 1, 80.0)
    assert s.onset_delay_ms == 10.0 and tr.last_frame_due_us() == 11_000 + 4 * 40_000
    log = np.array([(0, 1), (1, 2), (0, 10), (1, 11), (2, 12)], dtype=[("frame", np.int64), ("t_us", np.int64)])
    assert list(last_presentation(log)["t_us"]) == [10, 11, 12]        # a clip restarted after a pause


def test_pause_mid_clip_ends_that_presentation_and_restarts(tmp_path):
    clock = ReplayClock(0, speed=None)
    rec = Recorder(tmp_path / "s", clock=clock)
    rec.start(thread=False)
    ctrl = SessionController(recorder=rec, trials=[TrialSpec(1, "c1", "happiness", duration_s=2.0, fps=10)],
                             timing=SessionTiming(baseline_s=1, fixation_s=1, rest_s=1), sam_source=lambda n: ANSWER)
    ctrl.start()
    while clock.now_us() < 2_500_000:
        clock.advance_to(clock.now_us() + 10_000)
        ctrl.tick()
    assert ctrl.phase is Phase.STIMULUS
    ctrl.pause()
    ctrl.resume()
    while not ctrl.finished:
        clock.advance_to(clock.now_us() + 10_000)
        ctrl.tick()
    ctrl.close()
    rec.stop()
    r = SessionReader(tmp_path / "s")
    offs = events(r, "stimulus_offset")
    assert len(events(r, "stimulus_onset")) == 2 and offs[0]["detail"]["interrupted"] == "pause"
    assert offs[0]["detail"]["frames"] == 6 and offs[1]["detail"]["frames"] == 20
    (row,) = trial_presentation(r)
    assert row["frames_shown"] == 20 and row["frames_dropped"] == 0          # the last presentation
    assert r.meta["trials"][0]["t_onset_us"] == events(r, "stimulus_onset")[1]["t_us"]


@pytest.mark.torch
def test_live_whole_trial_prediction_spans_the_presented_frames(tmp_path, random_checkpoint):
    """The live engine hears the observed onset and offset: each whole-trial prediction runs from
    the first to the last presented frame, as session.json and replay have them."""
    import pandas as pd

    from emer_live.app import RunConfig
    from emer_live.session.runner import run_headless_session

    cfg = RunConfig(kind="session", participant="P08", out_root=str(tmp_path), camera="none", rate=60,
                    n_trials=2, time_scale=0.1, seed=8, fast=True, checkpoint=str(random_checkpoint))
    out = run_headless_session(cfg)
    meta = SessionReader(out).meta
    preds = pd.read_csv(out / "predictions.tsv", sep="\t")
    rows = preds[preds["kind"] == "trial"].set_index("trial")
    for t in meta["trials"]:
        log = read_presentation_log(next((out / "trials").glob(f"{t['trial']:02d}_*")) / "stimulus_frames.tsv")
        assert (t["t_onset_us"], t["t_offset_us"]) == (int(log["t_us"][0]), int(log["t_us"][-1]))
        p = rows.loc[t["trial"]]
        assert (p["t_start_us"], p["t_end_us"]) == (t["t_onset_us"], t["t_offset_us"])


def test_replay_shows_the_last_presented_frame_until_the_next_would_come(tmp_path):
    """The record's offset is the last presented frame's time; that frame stays on the screen
    (docs/recording-format.md), so replay must still place the clip there - not show nothing
    for the last frame interval of every trial."""
    from emer_live.app.replay import ReplaySession

    r, _ = run_session(tmp_path, SimulatedPresenter())
    s = ReplaySession(tmp_path / "s")
    (tr,) = [t for t in s.trials if t.onset_us is not None]
    assert tr.offset_us == int(tr.stimulus_frames["t_us"][-1])
    during_last = tr.offset_us + 50_000                 # half of the 100 ms frame interval
    assert s.trial_at(during_last) is tr
    assert s.stimulus_frame_at(during_last) == (tr, 19)
    assert s.trial_at(tr.offset_us + 100_000) is None   # the clip's planned end has passed


def test_presentation_figures_warn_but_an_unreadable_log_is_damage(tmp_path, capsys):
    """Dropped frames are what happened (exit 0, a warning); a log whose header was overwritten
    cannot say what happened (exit 7 like other damage)."""
    from emer_live.cli import main
    from emer_live.recording.commands import DAMAGED_EXIT

    run_session(tmp_path, ScriptedPresenter([(i, i * 100_000) for i in range(0, 20, 2)]))
    assert main(["info", str(tmp_path / "s")]) == 0
    assert "10 of 20 frames dropped" in capsys.readouterr().err
    log = tmp_path / "s" / "trials" / "01_hap_01" / "stimulus_frames.tsv"
    log.write_text("garbage\n" + log.read_text().split("\n", 1)[1])
    assert main(["info", str(tmp_path / "s")]) == DAMAGED_EXIT
    assert "presentation logs not readable" in capsys.readouterr().err


@pytest.mark.torch
def test_reanalysis_scores_each_trial_over_the_span_live_used(tmp_path, random_checkpoint):
    """The live engine announces a clip at its onset with the time its last frame is due and may
    score it before the clip leaves the screen; a last frame painted a few ms late then makes the
    observed offset differ from the span live scored (an app session: 2.5 ms, 1e-2 difference,
    'inputs of trial 1 differed'). predictions.tsv records the span each whole-trial prediction
    used; a re-analysis takes it, so it reproduces the live prediction."""
    from emer_live.app import RunConfig
    from emer_live.app.replay import Reanalysis, ReplaySession
    from emer_live.session.runner import run_headless_session

    cfg = RunConfig(kind="session", participant="P09", out_root=str(tmp_path), size=(160, 120), fps=10.0, rate=60,
                    n_trials=2, time_scale=0.1, seed=9, fast=True, checkpoint=str(random_checkpoint))
    out = run_headless_session(cfg)
    # what live scored when the last frame came 30 ms after it was due: the span ends earlier
    lines = (out / "predictions.tsv").read_text().split("\n")
    head = lines[0].split("\t")
    k_end = head.index("t_end_us")
    spans = {}
    for i, line in enumerate(lines[1:], 1):
        cells = line.split("\t")
        if cells[0] == "trial":
            cells[k_end] = str(int(cells[k_end]) - 30_000)
            spans[int(cells[head.index("trial")])] = (int(cells[head.index("t_start_us")]), int(cells[k_end]))
            lines[i] = "\t".join(cells)
    (out / "predictions.tsv").write_text("\n".join(lines))
    assert spans
    r = Reanalysis(ReplaySession(out), random_checkpoint)
    while r.step():
        pass
    r.close()
    assert r.error is None
    got = {p.trial: (p.t_start_us, p.t_end_us) for p in r.predictions if p.kind == "trial"}
    # (the last clip ends too close to the recording's end for a re-analysis: docs/desktop-app.md)
    assert 1 in got and all(got[n] == spans[n] for n in got), (got, spans)
