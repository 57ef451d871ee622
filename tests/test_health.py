"""The console's health panel tells lateness from loss (issue 21, item 5): rates come from the
records' own time stamps over a stable window; a stream delivered late in bursts but complete
is amber, never a red problem; a real loss (missing samples, device drops) or a rate drop is red."""

from __future__ import annotations

import numpy as np
import pytest

from emer_live.streams import Stream

pytest.importorskip("pytestqt")

from emer_live.ui.colors import BAD_COLOR, OK_COLOR, WARN_COLOR  # noqa: E402
from emer_live.ui.panels import HealthPanel, stream_health  # noqa: E402

FPS = 30.0
PERIOD_US = int(round(1e6 / FPS))
CAM_DT = np.dtype([("t_us", np.int64), ("frame_index", np.int64)])


class FakeClock:
    def __init__(self) -> None:
        self.t = 0

    def now_us(self) -> int:
        return self.t


class FakeRun:
    """What HealthPanel.refresh reads of a run."""

    def __init__(self, streams) -> None:
        self.streams = streams
        self.clock = FakeClock()
        self.running = True
        self.engine = None
        self.session_dir = None
        self.elapsed_s = 0.0


def _frames(t_us) -> np.ndarray:
    r = np.zeros(len(t_us), CAM_DT)
    r["t_us"] = t_us
    r["frame_index"] = np.arange(len(t_us))
    return r


def _state(panel: HealthPanel, name: str):
    row = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())].index(name)
    item = panel.table.item(row, panel.table.columnCount() - 1)
    return item.text(), item.foreground().color().name().lower()


def _play(panel, run, stream, stamps, *, burst_s: float, lag_s: float, until_s: float):
    """Deliver ``stamps`` in bursts every ``burst_s``: at each burst time the frames captured up
    to ``lag_s`` before it arrive together (a camera whose frames reach the app late, in
    batches). Refresh the panel between bursts, as the console's timer does; returns the states
    seen after the first 6 s."""
    seen = []
    sent = 0
    t = 0
    while t <= until_s * 1e6:
        run.clock.t = t
        run.elapsed_s = t / 1e6
        upto = int(np.searchsorted(stamps, t - lag_s * 1e6, side="right"))
        if upto > sent:
            stream.extend(_frames(stamps[sent:upto]))
            sent = upto
        panel.refresh(run)
        if t >= 6_000_000:
            seen.append((_state(panel, "camera"), list(panel.problems), panel.rates["camera"]))
        t += int(burst_s * 1e6 / 3)          # three refreshes per burst
    return seen


@pytest.fixture
def panel(qtbot):
    p = HealthPanel()
    qtbot.addWidget(p)
    return p


def test_late_bursts_of_a_complete_stream_are_not_loss(panel):
    """A 30 fps camera whose frames arrive 0.4-0.9 s late in bursts, none lost: the rate stays
    30 Hz, the state is amber 'late', nothing is a problem. (Before, the rate was counted up to
    'now' and the panel showed a red 'camera LOW RATE (86 % of nominal)'.)"""
    cam = Stream("camera", CAM_DT, 1000, nominal_rate_hz=FPS)
    run = FakeRun({"camera": cam})
    stamps = np.arange(0, 20_000_000, PERIOD_US, dtype=np.int64)
    seen = _play(panel, run, cam, stamps, burst_s=0.5, lag_s=0.4, until_s=16)
    assert seen
    for (text, colour), problems, rate in seen:
        assert not problems, problems
        assert colour in (OK_COLOR.lower(), WARN_COLOR.lower()), (text, colour)
        assert "LOSS" not in text and "DROP" not in text, text
        assert rate == pytest.approx(FPS, rel=0.01)
    assert any("late" in text and colour == WARN_COLOR.lower() for (text, colour), _, _ in seen)
    assert cam.counters.missing == 0


def test_a_real_loss_is_red_with_numbers(panel):
    """The same late, bursty camera, but 10 frames (a third of a second) never arrive: red LOSS
    with the count, in the problems the console's banner shows."""
    cam = Stream("camera", CAM_DT, 1000, nominal_rate_hz=FPS)
    run = FakeRun({"camera": cam})
    stamps = np.arange(0, 20_000_000, PERIOD_US, dtype=np.int64)
    stamps = np.delete(stamps, np.arange(300, 310))           # frames 300-309 (10.0-10.3 s) lost
    seen = _play(panel, run, cam, stamps, burst_s=0.5, lag_s=0.4, until_s=12)
    red = [(text, problems) for (text, colour), problems, _ in seen if colour == BAD_COLOR.lower()]
    assert red, seen[-3:]
    text, problems = red[0]
    assert "LOSS: 10 of" in text and "samples missing" in text, text
    assert any(p.startswith("camera: LOSS") for p in problems)


def test_device_drops_are_loss_and_a_steady_low_rate_is_a_rate_drop(panel):
    cam = Stream("camera", CAM_DT, 1000, nominal_rate_hz=FPS)
    gaze = Stream("gaze", CAM_DT, 5000, nominal_rate_hz=250.0)
    run = FakeRun({"camera": cam, "gaze": gaze})
    # the camera delivers every frame at 25 Hz (no single step over 1.5 periods): a rate drop
    cam.extend(_frames(np.arange(0, 6_000_000, 40_000, dtype=np.int64)))
    gaze.extend(_frames(np.arange(0, 6_000_000, 4_000, dtype=np.int64)))
    run.clock.t = 6_000_000
    run.elapsed_s = 6.0
    panel.refresh(run)
    text, colour = _state(panel, "camera")
    assert "RATE DROP" in text and "83 %" in text and colour == BAD_COLOR.lower(), text
    assert _state(panel, "gaze") == ("ok", OK_COLOR.lower())
    # the tracker reports 5 samples dropped: red while the loss is recent
    gaze.count_dropped(5)
    panel.refresh(run)
    text, colour = _state(panel, "gaze")
    assert "LOSS" in text and colour == BAD_COLOR.lower(), text
    assert any(p.startswith("gaze: LOSS") for p in panel.problems)


def test_stream_health_separates_rate_lateness_and_holes():
    cam = Stream("camera", CAM_DT, 1000, nominal_rate_hz=FPS)
    stamps = np.arange(0, 10_000_000, PERIOD_US, dtype=np.int64)
    # jitter alone: one frame 20 ms late, the next on time - a hole of 1.6 periods, no shortfall
    jitter = stamps.copy()
    jitter[200] += 20_000
    cam.extend(_frames(jitter))
    h = stream_health(cam, int(jitter[-1]) + 700_000)
    assert h.late_s == pytest.approx(0.7)
    assert h.rate_hz == pytest.approx(FPS, rel=0.01)
    assert h.missing == 1 and h.shortfall == 0
