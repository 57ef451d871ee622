"""CLI: ``emer-live windows`` - build EMERT inputs from a recorded session into an .npz file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "build_session_windows"]


def register(sub) -> None:
    p = sub.add_parser("windows", help="build model input windows from a recorded session",
                       description="Sliding windows (or one whole-trial window per trial with --per-trial) of "
                                   "face (N,8,3,112,112) RGB in [0,1], eye (N,32,39) and fixation (N,32,2) arrays, with masks, "
                                   "t_end_us, trial and quality columns, saved as .npz.")
    p.add_argument("session", help="session folder")
    p.add_argument("--window", type=float, default=8.0, help="window length in seconds (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="hop between windows in seconds (default 1)")
    p.add_argument("--per-trial", action="store_true",
                   help="one window per trial over the whole stimulus (the paper's sampling)")
    p.add_argument("--no-face", action="store_true", help="skip the face modality (eye-only, much faster)")
    p.add_argument("--out", required=True, help="output .npz (refused if it exists)")
    p.set_defaults(func=cmd_windows)


def build_session_windows(session, *, window_s: float = 8.0, hop_s: float = 1.0, per_trial: bool = False,
                          use_face: bool = True, progress=None) -> dict:
    """Return the arrays ``emer-live windows`` saves (see the command's help)."""
    import numpy as np

    from ..errors import ConfigError
    from ..recording.reader import SessionReader
    from .windows import RecordingSource, WindowBuilder, WindowSpec, window_ends

    reader = session if isinstance(session, SessionReader) else SessionReader(session)
    spec = WindowSpec(window_s=window_s, hop_s=hop_s)
    # a declared stream that is missing, a truncated video or time stamps out of order would
    # give windows that look valid but are not: a clear error instead
    reader.require_intact(("gaze", "camera") if use_face else ("gaze",))
    src = RecordingSource(reader)
    if not reader.has_gaze():
        print(f"warning: {reader.path} has no gaze.tsv - eye and fixation inputs are masked out")
    if use_face and not len(src.frame_times(-2**62, 2**62)):
        print(f"warning: {reader.path} has no video - face inputs are masked out")
        use_face = False
    # The face sample grid (and the window grid) of a live run recorded with the session, so
    # offline windows are the ones the live engine scored; else anchored at the first sample.
    live = reader.meta.get("live") or {}
    t_first, t_last = src.t_range
    origin = int(live.get("t_origin_us", t_first))
    builder = WindowBuilder(src, spec=spec, use_face=use_face, grid_origin_us=origin)
    intervals = reader.stimulus_intervals()
    jobs = []
    if per_trial:
        done = [iv for iv in intervals if iv["offset_us"] is not None]
        if not done:
            raise ConfigError(f"{reader.path}: no presented trials (no stimulus onset/offset events); "
                              "--per-trial needs a session recorded with `emer-live session`")
        jobs = [(iv["offset_us"], iv["onset_us"], iv["trial"]) for iv in done]
    else:
        for t_end in window_ends(origin, t_last, spec):
            t0 = t_end - spec.window_us
            trial = next((iv["trial"] for iv in intervals if iv["offset_us"] is not None
                          and iv["onset_us"] <= t0 and t_end <= iv["offset_us"]), -1)
            jobs.append((t_end, None, trial))
    if not jobs:
        raise ConfigError(f"{reader.path}: shorter than one {window_s:g} s window - nothing to build")
    wins = []
    for k, (t_end, t_start, trial) in enumerate(jobs):
        wins.append(builder.build(t_end, t_start_us=t_start, trial=trial))
        if progress:
            progress(k + 1, len(jobs))
    qkeys = list(wins[0].quality)
    out = {
        "face": np.stack([w.face for w in wins]), "face_mask": np.stack([w.face_mask for w in wins]),
        "eye": np.stack([w.eye for w in wins]), "eye_mask": np.stack([w.eye_mask for w in wins]),
        "fixation": np.stack([w.fixation for w in wins]), "fixation_mask": np.stack([w.fixation_mask for w in wins]),
        "t_start_us": np.array([w.t_start_us for w in wins], np.int64),
        "t_end_us": np.array([w.t_end_us for w in wins], np.int64),
        "trial": np.array([w.trial for w in wins], np.int64),
    }
    for q in qkeys:
        out[q] = np.array([w.quality[q] for w in wins], np.float64)
    return out


def cmd_windows(args) -> int:
    import sys

    import numpy as np

    from ..errors import ConfigError

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite - choose a new --out")
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: must end in .npz")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"--out {out}: {blocking} is a file, not a folder - choose another --out")

    def progress(k, n):
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  window {k}/{n}")

    from ..recording.perms import PRIVATE, make_dirs, open_new
    from ..recording.reader import SessionReader

    reader = SessionReader(args.session)
    arrays = build_session_windows(reader, window_s=args.window, hop_s=args.hop, per_trial=args.per_trial,
                                   use_face=not args.no_face, progress=progress)
    # whose data this is, inside the file: `forget` finds the export whatever it is called
    # (docs/data-rights.md); it holds their face crops and gaze, so it is private like the session
    who = reader.meta.get("participant")
    provenance = {"participant": np.array([who if isinstance(who, str) else ""]),
                  "session_id": np.array([str(reader.meta.get("session_id") or reader.path.name)]),
                  "session": np.array([str(Path(reader.path).resolve())])}
    make_dirs(out.parent, PRIVATE)
    with open_new(out, "xb", PRIVATE) as f:
        np.savez_compressed(f, **arrays, **provenance)
    n = len(arrays["t_end_us"])
    finite = all(np.isfinite(arrays[k]).all() for k in ("face", "eye", "fixation"))
    print(f"\n{out}: {n} windows; face {arrays['face'].shape[1:]}, eye {arrays['eye'].shape[1:]}, "
          f"fixation {arrays['fixation'].shape[1:]}; all finite: {finite}; "
          f"mean valid gaze {arrays['valid_gaze_fraction'].mean():.2f}, "
          f"mean face found {arrays['face_found_fraction'].mean():.2f}")
    return 0
