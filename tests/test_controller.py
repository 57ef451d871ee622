"""SessionController state machine on a manual clock (no devices, no threads)."""

import signal
import subprocess
import sys
import time

import pytest

from emer_live.clock import ReplayClock
from emer_live.recording import Recorder, SessionReader
from emer_live.session.controller import Phase, SessionController, SessionTiming, TrialSpec
from emer_live.session.sam import SamAnswer


def make(tmp_path, n=2, sam_source=None):
    clock = ReplayClock(0, speed=None)
    rec = Recorder(tmp_path / "s", clock=clock)
    rec.start(thread=False)
    trials = [TrialSpec(i + 1, f"clip{i + 1}", "happiness" if i % 2 == 0 else "sadness", duration_s=10.0, fps=10)
              for i in range(n)]
    ctrl = SessionController(recorder=rec, trials=trials,
                             timing=SessionTiming(baseline_s=5, fixation_s=1, rest_s=2), sam_source=sam_source)
    phases = []
    ctrl.listeners.append(lambda ph, tr: phases.append((ph, tr)))
    return clock, rec, ctrl, phases


def run_until(clock, ctrl, t_us, step=10_000):
    while clock.now_us() < t_us:
        clock.advance_to(clock.now_us() + step)
        ctrl.tick()


def test_phases_in_order_and_waits_for_sam(tmp_path):
    clock, rec, ctrl, phases = make(tmp_path)
    ctrl.start()
    run_until(clock, ctrl, 5_000_000 + 1_000_000 + 10_000_000 + 500_000)
    assert ctrl.phase is Phase.SAM                       # no automatic answer: it waits
    run_until(clock, ctrl, 30_000_000)
    assert ctrl.phase is Phase.SAM
    ctrl.submit_sam(SamAnswer(valence=7, arousal=6, dominance=5, emotion="happiness"))
    assert ctrl.phase is Phase.REST
    run_until(clock, ctrl, 60_000_000)
    ctrl.submit_sam(SamAnswer(valence=2, arousal=6, dominance=4, emotion="sadness"))
    assert ctrl.phase is Phase.DONE
    seq = [p for p, _ in phases]
    assert seq == [Phase.BASELINE, Phase.FIXATION, Phase.STIMULUS, Phase.SAM, Phase.REST, Phase.FIXATION,
                   Phase.STIMULUS, Phase.SAM, Phase.DONE]
    ctrl.close()
    rec.stop()
    r = SessionReader(tmp_path / "s")
    ev = [(e["kind"], e["t_us"]) for e in r.events()]
    onset = dict((k, t) for k, t in ev if k == "stimulus_onset")["stimulus_onset"]
    # onset and offset are the first and the last presented frame (100 frames at 10 fps)
    assert ("stimulus_offset", onset + 9_900_000) in ev
    off = [e for e in r.events() if e["kind"] == "stimulus_offset"][-1]["detail"]
    assert off["planned_offset_us"] == onset + 10_000_000       # the clip's planned end, kept apart
    assert (off["frames"], off["frames_dropped"], off["frames_late"]) == (100, 0, 0)
    log = (tmp_path / "s" / "trials" / "01_clip1" / "stimulus_frames.tsv").read_text().splitlines()
    assert len(log) == 1 + 100                              # 10 s at 10 fps presented and logged
    assert len(r.sam()) == 2


def test_pause_resume_restarts_an_interrupted_clip(tmp_path):
    clock, rec, ctrl, phases = make(tmp_path, n=1)
    ctrl.start()
    run_until(clock, ctrl, 5_000_000 + 1_000_000 + 3_000_000)
    assert ctrl.phase is Phase.STIMULUS
    ctrl.pause()
    assert ctrl.phase is Phase.PAUSED
    run_until(clock, ctrl, 60_000_000)                    # paused: nothing advances
    assert ctrl.phase is Phase.PAUSED
    ctrl.resume()
    assert ctrl.phase is Phase.FIXATION                   # the clip starts again after a fixation cross
    run_until(clock, ctrl, 60_000_000 + 1_000_000 + 10_000_000 + 100_000)
    assert ctrl.phase is Phase.SAM
    ctrl.close()
    rec.stop()
    kinds = [e["kind"] for e in SessionReader(tmp_path / "s").events()]
    assert kinds.count("stimulus_onset") == 2 and "pause" in kinds and "resume" in kinds


def test_sam_submitted_outside_sam_phase_is_refused(tmp_path):
    clock, rec, ctrl, _ = make(tmp_path, n=1)
    ctrl.start()
    with pytest.raises(RuntimeError, match="no SAM"):
        ctrl.submit_sam(SamAnswer(valence=5, arousal=5, dominance=5, emotion="neutral"))
    ctrl.abort("test")
    ctrl.close()
    rec.stop(status="aborted")


def test_sigterm_aborts_headless_session_cleanly(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "emer_live.cli", "session", "--headless", "--participant", "P09",
                          "--camera", "none", "--rate", "60", "--trials", "6", "--time-scale", "0.05",
                          "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err     # stopped cleanly, and the exit status says aborted
    (session,) = (tmp_path / "P09").iterdir()
    r = SessionReader(session)
    assert r.status == "aborted"
    st = [t["status"] for t in r.meta["trials"]]
    assert "aborted" in st or st[0] == "not_run"
    assert len(r.sam()) == st.count("complete")
