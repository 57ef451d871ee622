"""Seeding and stateless noise for the phantom.

Everything the phantom draws derives from ``(seed, participant, ...)`` through
:func:`seed_sequence`. Per-sample noise is *counter based*: a hash of the sample's time stamp, so
a sample's value does not depend on how the samples were chunked into calls (the tracker thread
and an offline :meth:`Phantom.generate_gaze` give the same sample for the same time).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

__all__ = ["participant_key", "seed_sequence", "generator", "hash_uniform", "hash_uniforms", "hash_normal",
           "hash_normals", "SmoothNoise", "SmoothBank"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def participant_key(participant: str) -> int:
    """Stable 32-bit key of a participant pseudonym (``hash()`` is salted per process; crc32 is not)."""
    return zlib.crc32(participant.encode("utf-8")) & 0xFFFFFFFF


def seed_sequence(seed: int, participant: str, *path: int) -> np.random.SeedSequence:
    """The seed sequence for ``(seed, participant, *path)``; ``path`` names what is drawn."""
    return np.random.SeedSequence([int(seed), participant_key(participant), *[int(p) & 0xFFFFFFFF for p in path]])


def generator(seed: int, participant: str, *path: int) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, participant, *path))


def _mix64(z: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser; uint64 arithmetic wraps by design
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def hash_uniform(key: int, t_us: np.ndarray, channel: int) -> np.ndarray:
    """Uniform (0, 1) values, one per time stamp, a pure function of ``(key, t_us, channel)``."""
    t = np.asarray(t_us, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        k = np.full(1, (int(key) * 0x100000001B3 + int(channel) * 0x9E3779B1) & 0xFFFFFFFFFFFFFFFF, np.uint64)
        z = _mix64(t * _GOLDEN + k)
        z = _mix64(z ^ k)
    return ((z >> _S11).astype(np.float64) + 0.5) / float(1 << 53)


def hash_uniforms(key: int, t_us: np.ndarray, channels: int) -> np.ndarray:
    """``(n, channels)`` uniforms in one pass; column ``c`` equals ``hash_uniform(key, t_us, c)``."""
    t = np.asarray(t_us, dtype=np.int64).astype(np.uint64)
    ks = [(int(key) * 0x100000001B3 + c * 0x9E3779B1) & 0xFFFFFFFFFFFFFFFF for c in range(channels)]
    k = np.array(ks, np.uint64)[None, :]
    with np.errstate(over="ignore"):
        z = _mix64(t[:, None] * _GOLDEN + k)
        z = _mix64(z ^ k)
    return ((z >> _S11).astype(np.float64) + 0.5) / float(1 << 53)


def hash_normals(key: int, t_us: np.ndarray, channels: int) -> np.ndarray:
    """``(n, channels)`` standard normals in one pass (Box-Muller, both outputs of each pair)."""
    pairs = (channels + 1) // 2
    u = hash_uniforms(key, t_us, 2 * pairs)
    r = np.sqrt(-2.0 * np.log(u[:, :pairs]))
    a = 2.0 * np.pi * u[:, pairs:]
    return np.concatenate([r * np.cos(a), r * np.sin(a)], axis=1)[:, :channels]


def hash_normal(key: int, t_us: np.ndarray, channel: int) -> np.ndarray:
    """Standard normal values per time stamp (Box-Muller on two hashed uniforms)."""
    u1 = hash_uniform(key, t_us, 2 * channel)
    u2 = hash_uniform(key, t_us, 2 * channel + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class SmoothNoise:
    """A smooth, stationary random function of time: a sum of sinusoids with seeded log-uniform
    frequencies in ``[f_lo, f_hi]`` Hz and random phases, scaled to the given RMS.

    Stateless (evaluate at any time, in any order); used for head drift, lighting drift and the
    slow pupil fluctuation (hippus).
    """

    def __init__(self, rng: np.random.Generator, *, rms: float, f_lo: float, f_hi: float, n: int = 6) -> None:
        self.freqs = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), n))
        self.phases = rng.uniform(0.0, 2.0 * np.pi, n)
        amps = rng.uniform(0.5, 1.0, n)
        self.amps = amps * (rms / np.sqrt(np.sum(amps ** 2) / 2.0))

    def __call__(self, t_s) -> np.ndarray:
        t = np.asarray(t_s, dtype=np.float64)
        arg = 2.0 * np.pi * t[..., None] * self.freqs + self.phases
        return np.sum(self.amps * np.sin(arg), axis=-1)


class SmoothBank:
    """Evaluate several :class:`SmoothNoise` functions in one vectorised pass: ``(n, k)``."""

    def __init__(self, parts: Sequence[SmoothNoise]) -> None:
        self.k = len(parts)
        self.m = len(parts[0].freqs)
        self.freqs = np.concatenate([p.freqs for p in parts])
        self.phases = np.concatenate([p.phases for p in parts])
        self.amps = np.concatenate([p.amps for p in parts])

    def __call__(self, t_s) -> np.ndarray:
        t = np.asarray(t_s, dtype=np.float64).reshape(-1)
        x = self.amps * np.sin(2.0 * np.pi * t[:, None] * self.freqs + self.phases)
        return x.reshape(len(t), self.k, self.m).sum(axis=2)


def choice(rng: np.random.Generator, items: Sequence[str], p=None) -> str:
    """``rng.choice`` for a sequence of strings, returning a plain ``str``."""
    return str(items[int(rng.choice(len(items), p=p))])
