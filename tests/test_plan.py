"""Trial plans: reproducible, balanced over participants, no category twice in a row."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emer_live.cli import main
from emer_live.errors import ConfigError
from emer_live.labels import ER7_CLASSES
from emer_live.session.plan import (
    TrialPlan, category_sequence, default_participant_index, make_plan, position_groups,
)
from emer_live.session.stimuli import Clip, StimulusLibrary, emer_design_clips, load_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library():
    return load_manifest(REPO / "stimuli" / "manifest.toml")


def plans_for(library, n, seed, first=0, count=7):
    return [make_plan(library, participant=f"P{i + 1:02d}", n_trials=n, seed=seed)
            for i in range(first, first + count)]


def test_position_groups():
    assert [len(g) for g in position_groups(14)] == [2] * 7
    assert [len(g) for g in position_groups(28)] == [4] * 7
    assert sorted(len(g) for g in position_groups(13)) == [1] + [2] * 6
    assert [len(g) for g in position_groups(5)] == [1] * 5
    for n in (1, 5, 13, 14, 28):
        assert [j for g in position_groups(n) for j in g] == list(range(n))


@pytest.mark.parametrize("n", [13, 14, 28])
@pytest.mark.parametrize("seed", [0, 12345])
@pytest.mark.parametrize("first", [0, 7])      # participants P01-P07 and P08-P14
def test_plans_balanced_over_7_participants(library, n, seed, first):
    plans = plans_for(library, n, seed, first)
    assert [p.participant_index for p in plans] == list(range(first, first + 7))
    for plan in plans:
        cats = plan.categories
        assert len(plan) == n and [t.number for t in plan] == list(range(1, n + 1))
        assert all(a != b for a, b in zip(cats, cats[1:])), cats       # never twice in a row
        assert len(set(plan.clip_ids)) == n                            # no clip twice
        assert all(library.clip(t.clip_id).category == t.category for t in plan)
        counts = Counter(cats)
        if n % 7 == 0:
            assert set(counts.values()) == {n // 7} and len(counts) == 7
        else:   # 13: one category once, the others twice
            assert sorted(counts.values()) == [1] + [2] * 6
    # every category in every serial-position group (and in fact in every position)
    for group in position_groups(n):
        seen = {p.categories[j] for p in plans for j in group}
        assert seen == set(ER7_CLASSES), (group, seen)
    for j in range(n - n % 7):
        assert {p.categories[j] for p in plans} == set(ER7_CLASSES)
    # the clips of a category are used evenly over the 7 participants
    uses = Counter(cid for p in plans for cid in p.clip_ids)
    for cat, clips in library.by_category.items():
        counts = [uses[c.id] for c in clips]
        assert max(counts) - min(counts) <= 1, (cat, counts)
    if n == 13:   # the category left out rotates: each is shown once to exactly one participant
        once = [next(c for c, k in Counter(p.categories).items() if k == 1) for p in plans]
        assert sorted(once) == sorted(ER7_CLASSES)


def test_plan_reproducible_and_seeded(library):
    a = make_plan(library, participant="P03", n_trials=14, seed=99)
    b = make_plan(library, participant="P03", n_trials=14, seed=99)
    assert a == b
    others = {tuple(make_plan(library, participant="P03", n_trials=14, seed=s).clip_ids)
              for s in range(5)}
    assert len(others) > 1
    # participant index defaults to the ID's number minus one
    assert a.participant_index == 2
    assert make_plan(library, participant="lab-x", n_trials=14, seed=99,
                     participant_index=2).clip_ids == a.clip_ids


def test_plan_to_from_dict(library):
    plan = make_plan(library, participant="P05", n_trials=13, seed=3)
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["trials"][0].keys() == {"trial", "stimulus_id", "category", "block"}
    assert TrialPlan.from_dict(d) == plan
    d["trials"] = d["trials"][:-1]
    with pytest.raises(ConfigError, match="n_trials = 13 but lists 12"):
        TrialPlan.from_dict(d)
    with pytest.raises(ConfigError, match="missing"):
        TrialPlan.from_dict({"participant": "P01"})


def test_clip_rotation_with_2_clips_per_category(tmp_path):
    clips = [Clip(id=f"{c[:3]}_{k}", file=f"{c[:3]}_{k}.mp4", category=c, valence=0.0,
                  arousal=0.0, duration_s=90.0) for c in ER7_CLASSES for k in (1, 2)]
    lib = StimulusLibrary(manifest_path=tmp_path / "manifest.toml", root=tmp_path,
                          clips=tuple(clips), clips_per_category=2)
    for i in range(7):
        plan = make_plan(lib, participant=f"S{i}", n_trials=14, seed=1, participant_index=i)
        assert sorted(plan.clip_ids) == sorted(c.id for c in clips)   # all 14 clips, once each


def test_plan_input_errors(library):
    for n in (0, 29, 2.5, True):
        with pytest.raises(ConfigError, match="n_trials must be 1-28"):
            make_plan(library, participant="P01", n_trials=n, seed=1)
    with pytest.raises(ConfigError, match="pseudonyms like P01"):
        make_plan(library, participant="Jane Doe", seed=1)
    with pytest.raises(ConfigError, match="seed"):
        make_plan(library, participant="P01", seed=-1)
    with pytest.raises(ConfigError, match="participant_index"):
        make_plan(library, participant="P01", seed=1, participant_index=-2)


def test_default_participant_index():
    assert [default_participant_index(f"P{i:02d}") for i in range(1, 8)] == list(range(7))
    assert default_participant_index("P00") == 0
    assert default_participant_index("abc") == default_participant_index("abc")
    assert 0 <= default_participant_index("abc") < 7


def test_category_sequence_matches_plan(library):
    plan = make_plan(library, participant="P02", n_trials=28, seed=8)
    assert category_sequence(n_trials=28, seed=8, participant_index=1) == plan.categories
    assert len(set(emer_design_clips())) == 28


def test_cli_plan(capsys):
    capsys.readouterr()
    assert main(["stimuli", "plan", str(REPO / "stimuli"), "--participant", "P02", "--seed",
                 "4", "--json", "--manifest-only"]) == 0      # the design's manifest, no videos
    d = json.loads(capsys.readouterr().out)
    assert d["participant"] == "P02" and len(d["trials"]) == 14
