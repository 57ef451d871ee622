"""Trial plans: which clips a participant sees, in which order (scheme ``latin-rotation-v1``).

The scheme, in short (``docs/stimuli.md`` has the long form):

* Trials come in *blocks* of up to 7, one clip of every category per full block. Participant
  index ``p`` (0, 1, 2, ...) and block ``b`` put category ``base[(m_b * j + s_b + p) mod 7]`` at
  position ``j`` of the block, where ``base`` is a seeded permutation of the 7 categories and
  ``m_b`` (1..6, all different for the first 6 blocks) and ``s_b`` are seeded per block. For every
  block this is a 7x7 Latin square over participants: over 7 consecutive participant indices every
  category takes every serial position exactly once, so order effects are balanced.
* No category follows itself: inside a block the step ``m_b`` is non-zero mod 7, and ``s_b`` is
  chosen so the first category of a block differs from the last of the previous one (this holds
  for every ``p``).
* With ``n_trials`` a multiple of 7 every category appears ``n_trials / 7`` times; otherwise the
  last block is cut short and the left-out categories rotate with the participant.
* Clips within a category are used in rotation: the participant's ``t``-th clip of category ``c``
  is clip ``(o_c + u_c(p) + t) mod K`` of that category (manifest order), where ``o_c`` is a seeded
  offset and ``u_c(p)`` counts how often category ``c`` was shown to participants ``0..p-1``.
  So clip use is as even as possible over consecutive participants, and a participant sees no
  clip twice while ``n_trials <= 7 * K``.

``seed`` is the **study** seed: give all participants of a study the same seed and their own
``participant_index``, otherwise the balance across participants does not hold. The plan is a pure
function of (library clip ids, n_trials, seed, participant_index) and is saved in
``session.json`` (:meth:`TrialPlan.to_dict`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .ids import validate_participant_id
from ..labels import ER7_CLASSES
from .stimuli import StimulusLibrary

__all__ = ["Trial", "TrialPlan", "make_plan", "default_participant_index",
           "position_groups", "category_sequence", "SCHEME"]

SCHEME = "latin-rotation-v1"
_N_CAT = len(ER7_CLASSES)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One planned trial.

    Attributes
    ----------
    number : int
        1-based trial number (also the ``NN`` of ``trials/<NN>_<stimulus_id>/``).
    clip_id : str
        The stimulus id in the manifest.
    category : str
        The clip's intended category.
    block : int
        0-based block of the Latin-square scheme.
    """

    number: int
    clip_id: str
    category: str
    block: int

    def to_dict(self) -> dict:
        return {"trial": self.number, "stimulus_id": self.clip_id, "category": self.category,
                "block": self.block}


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    """A participant's trial plan.

    Attributes
    ----------
    participant : str
        Participant pseudonym.
    participant_index : int
        Row of the Latin square (0-based).
    seed : int
        The study seed.
    n_trials : int
        Number of trials.
    trials : tuple of Trial
        In presentation order.
    scheme : str
        The ordering scheme (:data:`SCHEME`).
    category_order : tuple of str
        The seeded base order of categories (row 0 of the square).
    """

    participant: str
    participant_index: int
    seed: int
    n_trials: int
    trials: Tuple[Trial, ...]
    scheme: str = SCHEME
    category_order: Tuple[str, ...] = ER7_CLASSES

    def __len__(self) -> int:
        return len(self.trials)

    def __iter__(self):
        return iter(self.trials)

    def __getitem__(self, i: int) -> Trial:
        return self.trials[i]

    @property
    def categories(self) -> List[str]:
        return [t.category for t in self.trials]

    @property
    def clip_ids(self) -> List[str]:
        return [t.clip_id for t in self.trials]

    def to_dict(self) -> dict:
        """JSON-ready dict for ``session.json`` (keys: scheme, participant, participant_index,
        seed, n_trials, category_order, trials = list of {trial, stimulus_id, category,
        block})."""
        return {
            "scheme": self.scheme, "participant": self.participant,
            "participant_index": self.participant_index, "seed": self.seed,
            "n_trials": self.n_trials, "category_order": list(self.category_order),
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TrialPlan":
        """Inverse of :meth:`to_dict`; validates the structure (raises :class:`ConfigError`)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a trial plan must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("participant", "participant_index", "seed", "n_trials", "trials")
                   if k not in d]
        if missing:
            raise ConfigError(f"trial plan is missing {missing}")
        trials = []
        for i, t in enumerate(d["trials"], start=1):
            try:
                trial = Trial(number=int(t["trial"]), clip_id=str(t["stimulus_id"]),
                              category=str(t["category"]), block=int(t.get("block", 0)))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"trial plan entry {i} is malformed ({exc!r}): {t!r}") from None
            if trial.number != i:
                raise ConfigError(f"trial plan entry {i} has trial number {trial.number}")
            if trial.category not in ER7_CLASSES:
                raise ConfigError(f"trial plan entry {i}: unknown category {trial.category!r}")
            trials.append(trial)
        if len(trials) != int(d["n_trials"]):
            raise ConfigError(f"trial plan says n_trials = {d['n_trials']} but lists "
                              f"{len(trials)} trials")
        order = tuple(d.get("category_order", ER7_CLASSES))
        return cls(participant=validate_participant_id(d["participant"]),
                   participant_index=int(d["participant_index"]), seed=int(d["seed"]),
                   n_trials=int(d["n_trials"]), trials=tuple(trials),
                   scheme=str(d.get("scheme", SCHEME)), category_order=order)


def default_participant_index(participant: str) -> int:
    """Latin-square row for a participant ID when none is given.

    The trailing number minus one (``P01`` -> 0, ``P07`` -> 6, ``S-12`` -> 11; ``P00`` -> 0), or,
    for an ID without a trailing number, a stable hash of the ID (mod 7). Number participants
    consecutively for balance.
    """
    pid = validate_participant_id(participant)
    m = re.search(r"(\d+)$", pid)
    if m:
        return max(int(m.group(1)) - 1, 0)
    return int.from_bytes(hashlib.sha256(pid.encode()).digest()[:4], "little") % _N_CAT


def _block_params(seed: int, n_blocks: int) -> Tuple[List[str], List[Tuple[int, int]], np.ndarray]:
    """Seeded base order, per-block (step, shift) and per-category clip offsets."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, 0xE3E7])
    base = [ER7_CLASSES[i] for i in rng.permutation(_N_CAT)]
    params: List[Tuple[int, int]] = []
    steps: List[int] = []
    while len(steps) < n_blocks:
        steps.extend(int(s) for s in rng.permutation(np.arange(1, _N_CAT)))
    last_end: Optional[int] = None
    for b in range(n_blocks):
        m = steps[b]
        options = [s for s in range(_N_CAT) if last_end is None or s != last_end]
        s = int(options[int(rng.integers(len(options)))])
        params.append((m, s))
        last_end = (m * (_N_CAT - 1) + s) % _N_CAT
    offsets = rng.integers(0, 1 << 30, size=_N_CAT)
    return base, params, offsets


def category_sequence(*, n_trials: int, seed: int, participant_index: int) -> List[str]:
    """The category of each trial (the ordering half of :func:`make_plan`, no clips)."""
    n_blocks = -(-n_trials // _N_CAT)
    base, params, _ = _block_params(seed, n_blocks)
    out = []
    for j_all in range(n_trials):
        b, j = divmod(j_all, _N_CAT)
        m, s = params[b]
        out.append(base[(m * j + s + participant_index) % _N_CAT])
    return out


def position_groups(n_trials: int) -> List[range]:
    """Serial-position groups used to state (and test) the balance.

    ``min(7, n_trials)`` groups of consecutive positions (0-based), sizes as equal as possible:
    14 trials -> 7 groups of 2; 13 -> one of 1 and six of 2; 28 -> 7 groups of 4. Over 7
    consecutive participant indices with one seed, every category appears in every group.
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials}")
    g = min(_N_CAT, n_trials)
    bounds = [(k * n_trials) // g for k in range(g + 1)]
    return [range(bounds[k], bounds[k + 1]) for k in range(g)]


def make_plan(library: StimulusLibrary, *, participant: str, n_trials: int = 14, seed: int,
              participant_index: Optional[int] = None) -> TrialPlan:
    """Plan a participant's trials (scheme in the module docstring and ``docs/stimuli.md``).

    Parameters
    ----------
    library : StimulusLibrary
        The stimulus library (7 categories x K clips).
    participant : str
        Participant pseudonym (checked by
        :func:`~emer_live.session.ids.validate_participant_id`).
    n_trials : int
        Number of trials, 1 .. number of clips (EMER used about 13; 14 shows every category
        twice; 28 shows every clip once).
    seed : int
        Study seed: the same for every participant of a study.
    participant_index : int, optional
        Latin-square row, >= 0 (default: :func:`default_participant_index` of ``participant``).

    Returns
    -------
    TrialPlan
        Reproducible: the same arguments give the same plan.
    """
    validate_participant_id(participant)
    if not isinstance(library, StimulusLibrary):
        raise ConfigError(f"library must be a StimulusLibrary, got {type(library).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
    n_clips = len(library.clips)
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) \
            or not 1 <= n_trials <= n_clips:
        raise ConfigError(f"n_trials must be 1-{n_clips} (the library has {n_clips} clips), "
                          f"got {n_trials!r}")
    if participant_index is None:
        participant_index = default_participant_index(participant)
    if isinstance(participant_index, bool) or not isinstance(participant_index, numbers.Integral) \
            or participant_index < 0:
        raise ConfigError(f"participant_index must be a whole number >= 0, "
                          f"got {participant_index!r}")
    seed, n_trials, p = int(seed), int(n_trials), int(participant_index)
    by_cat: Dict[str, Sequence] = library.by_category
    for cat in ER7_CLASSES:
        if not by_cat[cat]:
            raise ConfigError(f"{library.manifest_path}: no clips of category {cat!r}")

    n_blocks = -(-n_trials // _N_CAT)
    base, _, offsets = _block_params(seed, n_blocks)
    cats = category_sequence(n_trials=n_trials, seed=seed, participant_index=p)
    # How often each category was shown to participants 0..p-1: the category sequence depends
    # on p only through p mod 7, and a full cycle of 7 participants shows each category
    # n_trials times (every position takes every category once per cycle).
    used_before = {c: (p // _N_CAT) * n_trials for c in ER7_CLASSES}
    for q in range(p % _N_CAT):
        for c in category_sequence(n_trials=n_trials, seed=seed, participant_index=q):
            used_before[c] += 1
    seen: Dict[str, int] = {c: 0 for c in ER7_CLASSES}
    trials = []
    for i, cat in enumerate(cats):
        clips = by_cat[cat]
        k = (int(offsets[ER7_CLASSES.index(cat)]) + used_before[cat] + seen[cat]) % len(clips)
        seen[cat] += 1
        trials.append(Trial(number=i + 1, clip_id=clips[k].id, category=cat,
                            block=i // _N_CAT))
    return TrialPlan(participant=participant, participant_index=p, seed=seed,
                     n_trials=n_trials, trials=tuple(trials), category_order=tuple(base))
