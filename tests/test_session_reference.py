"""The running per-session eye reference (``--eye-reference session``): statistics, causality,
and that the training samples carry exactly the reference the live engine would compute."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from emer_live.features.session_reference import (MIN_VALID_STEPS, RunningStats, SessionReference,
                                                  apply_reference, reference_kind, reference_series)


def test_running_stats_equal_pooled_statistics():
    rng = np.random.default_rng(0)
    stats = RunningStats(3)
    pooled = []
    for k in range(5):
        x = rng.normal(10.0 * k, 1.0 + k, size=(32, 3))
        x[rng.random((32, 3)) < 0.1] = np.nan       # NaN values are ignored
        m = rng.random(32) < 0.8                    # invalid steps are ignored
        stats.add(x, m)
        pooled.append(x[m])
    p = np.concatenate(pooled)
    mean, sd = stats.mean_sd(1)
    np.testing.assert_allclose(mean, np.nanmean(p, axis=0), rtol=1e-5)
    np.testing.assert_allclose(sd, np.nanstd(p, axis=0), rtol=1e-5)
    assert stats.mean_sd(int(np.isfinite(p).sum(axis=0).min()) + 1) is None


class _FakeBuilder:
    """Windows whose every step holds the window's end time in seconds (eye) / 0.5 (fixation)."""

    def __init__(self, valid=True):
        self.calls = []
        self.valid = valid

    def build(self, t_end_us, *, t_start_us=None):
        self.calls.append((t_start_us, t_end_us))
        v = t_end_us / 1e6
        return SimpleNamespace(eye=np.full((32, 39), v, np.float32), eye_mask=np.full(32, self.valid),
                               fixation=np.full((32, 2), 0.5, np.float32), fixation_mask=np.full(32, self.valid))


def test_reference_is_causal_on_its_grid_and_waits_for_enough_data():
    b = _FakeBuilder()
    ref = SessionReference(b, origin_us=1_000_000)
    assert ref.at(8_999_999) is None and not b.calls           # first window ends at origin + 8 s
    assert ref.at(9_000_000) is None                           # 32 valid steps < MIN_VALID_STEPS
    assert b.calls == [(1_000_000, 9_000_000)]
    cur = ref.at(17_000_000)                                   # two windows: 64 steps
    assert MIN_VALID_STEPS == 64 and cur is not None
    np.testing.assert_allclose(cur[0], 13.0)                   # mean of 9 s and 17 s
    np.testing.assert_allclose(cur[1], 4.0)
    ref.at(41_000_000)
    # asked late for an earlier time: the reference as of that time, not the newest one
    np.testing.assert_allclose(ref.at(20_000_000)[0], 13.0)
    np.testing.assert_allclose(ref.at(41_000_000)[0], np.mean([9, 17, 25, 33, 41]))
    assert [c[1] for c in b.calls] == [9_000_000, 17_000_000, 25_000_000, 33_000_000, 41_000_000]
    # no valid gaze: never a reference
    assert SessionReference(_FakeBuilder(valid=False), 0).at(100_000_000) is None


def test_reference_series_matches_stepwise_queries_in_any_order():
    ends = [30_000_000, 9_000_000, 17_500_000, 60_000_000]
    s = reference_series(_FakeBuilder(), 1_000_000, ends)
    assert np.isnan(s["eye_mean"][1]).all()
    np.testing.assert_allclose(s["eye_mean"][2], 13.0)
    np.testing.assert_allclose(s["eye_mean"][0], np.mean([9, 17, 25]))
    np.testing.assert_allclose(s["eye_mean"][3], np.mean([9, 17, 25, 33, 41, 49, 57]))
    np.testing.assert_allclose(s["fixation_sd"][3], 0.0)


def test_apply_reference_only_centres_constant_features():
    x = np.array([[[1.0, 5.0], [3.0, 5.0]]], np.float32)
    y = apply_reference(x, np.array([2.0, 5.0]), np.array([0.5, 0.0]))
    np.testing.assert_allclose(y, [[[-2.0, 0.0], [2.0, 0.0]]])


def test_reference_kind_reads_norm_stats():
    assert reference_kind({}) == "none" and reference_kind(None) == "none"
    assert reference_kind({"reference": {"kind": "session_baseline"}}) == "baseline"
    assert reference_kind({"reference": {"kind": "session_running"}}) == "session"


@pytest.fixture(scope="module")
def long_session(tmp_path_factory):
    """One synthetic participant, 2 trials at time scale 0.3 (an 18 s baseline first)."""
    from emer_live import cli

    root = tmp_path_factory.mktemp("sref")
    assert cli.main(["collect-synthetic", "--participants", "1", "--trials", "2", "--time-scale", "0.3",
                     "--size", "320x240", "--seed", "3", "--jobs", "1", "--out", str(root)]) == 0
    return next(root.glob("P01/*/session.json")).parent


def test_samples_carry_the_running_reference_of_their_end(long_session):
    from emer_live.features.windows import RecordingSource, WindowBuilder, WindowSpec
    from emer_live.recording.reader import SessionReader
    from emer_live.training.dataset import (SampleSpec, fit_norm_stats, modality_mask, normalize_samples,
                                            session_samples)

    s = session_samples(long_session, SampleSpec(kind="both", window_s=8.0, hop_s=4.0, use_face=False))
    has = np.isfinite(s["eye_sref_mean"]).all(axis=1)
    assert has.all(), "the baseline phase gives every stimulus window a reference"
    # independently: pool the valid steps of the 8 s grid windows from the first gaze sample
    r = SessionReader(long_session)
    src = RecordingSource(r)
    t0 = src.t_range[0]
    b = WindowBuilder(src, spec=WindowSpec(window_s=8.0, hop_s=8.0), use_face=False)
    for i in (0, len(s) - 1, int(np.argmin(s["t_end_us"]))):
        t_end = int(s["t_end_us"][i])
        ws = [b.build(e, t_start_us=e - 8_000_000) for e in range(t0 + 8_000_000, t_end + 1, 8_000_000)]
        steps = np.concatenate([w.eye[w.eye_mask] for w in ws])
        np.testing.assert_allclose(s["eye_sref_mean"][i], steps.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s["eye_sref_sd"][i], steps.std(axis=0), rtol=1e-3, atol=1e-4)
    ns = fit_norm_stats(s, reference="session")
    assert ns["reference"]["kind"] == "session_running"
    eye, fix = normalize_samples(s, ns)
    z = apply_reference(s["eye"], s["eye_sref_mean"], s["eye_sref_sd"])
    expect = (z - np.array(ns["eye"]["mean"], np.float32)) / np.array(ns["eye"]["std"], np.float32)
    np.testing.assert_allclose(eye, np.nan_to_num(expect), rtol=1e-4, atol=1e-4)
    assert modality_mask(s, ("eye", "fixation"), ns)[:, 1].all()
    # a sample without a reference is scored without its eyes
    s.arrays["eye_sref_mean"][0] = np.nan
    assert not modality_mask(s, ("eye", "fixation"), ns)[0, 1]
    assert (normalize_samples(s, ns)[0][0] == 0).all()
