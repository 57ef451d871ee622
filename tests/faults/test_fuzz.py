"""Property-based fuzzing (hypothesis) of the session reader and the stimulus manifest parser:
whatever bytes a folder or manifest holds, reading it succeeds, warns, or raises the project's
own error (one line for the operator) - never another exception (a traceback)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emer_live.errors import EmerError
from emer_live.recording import SessionReader
from emer_live.recording.repair import repair_session
from emer_live.session.stimuli import emer_design_clips, load_manifest, parse_manifest, write_manifest

try:
    from tests.fakes.sessions import make_session
except ImportError:  # pragma: no cover
    from fakes.sessions import make_session

FUZZ = settings(max_examples=int(os.environ.get("EMER_FUZZ_EXAMPLES", "120")), deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_counts = {"reader": {"ok": 0, "flagged": 0, "error": 0, "traceback": 0},
           "repair": {"ok": 0, "error": 0, "traceback": 0}, "manifest": {"ok": 0, "error": 0, "traceback": 0}}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "s"
    make_session(p, participant="P01", seconds=3, trials=1)
    from emer_live.session.sam import SamAnswer, SamTable

    with SamTable(p / "sam.tsv") as t:
        t.append(trial=1, stimulus_id="hap_01", category="happiness", answer=SamAnswer(7, 5, 5, "happiness", "ok"),
                 answered_t_us=2_000_000)
    return p


FILES = ["session.json", "gaze.tsv", "events.tsv", "sam.tsv", "trials/01_hap_01/face_frames.tsv",
         "trials/01_hap_01/face.mjpeg", "between/00_baseline/face_frames.tsv"]


@st.composite
def mutation(draw):
    name = draw(st.sampled_from(FILES))
    op = draw(st.sampled_from(["truncate", "insert", "overwrite", "dup_line", "drop_line", "swap_lines", "delete"]))
    pos = draw(st.floats(0, 1))
    blob = draw(st.one_of(st.binary(min_size=1, max_size=64),
                          st.text(alphabet="0123456789\t\n-.eEnaNif{}\":,[]", min_size=1, max_size=64)
                          .map(lambda s: s.encode())))
    return name, op, pos, blob


def apply(folder: Path, name: str, op: str, pos: float, blob: bytes) -> None:
    p = folder / name
    if op == "delete":
        p.unlink()
        return
    data = p.read_bytes()
    at = int(pos * len(data))
    if op == "truncate":
        data = data[:at]
    elif op == "insert":
        data = data[:at] + blob + data[at:]
    elif op == "overwrite":
        data = data[:at] + blob + data[at + len(blob):]
    else:
        lines = data.split(b"\n")
        i = min(int(pos * len(lines)), len(lines) - 1)
        if op == "dup_line":
            lines.insert(i, lines[i])
        elif op == "drop_line":
            del lines[i]
        else:
            j = (i + 7) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        data = b"\n".join(lines)
    p.write_bytes(data)


def read_everything(folder: Path) -> bool:
    """Everything a tool reads; returns True when the reader flagged a problem."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = SessionReader(folder)
        r.summary()
        r.events()
        r.stimulus_intervals()
        r.sam()
        flagged = bool(r.problems())
        if r.has_gaze():
            r.gaze()
        for seg in r.segments():
            for _ in r.iter_frames(seg):
                pass
    return flagged or bool(w)


@FUZZ
@given(mutations=st.lists(mutation(), min_size=1, max_size=3))
def test_reader_fuzz(pristine, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        s = Path(tmp) / "s"
        shutil.copytree(pristine, s)
        for m in mutations:
            if (s / m[0]).exists():
                apply(s, *m)
        try:
            _counts["reader"]["flagged" if read_everything(s) else "ok"] += 1
        except EmerError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
            _counts["reader"]["error"] += 1
        except Exception:
            _counts["reader"]["traceback"] += 1
            raise
        try:  # repair of the same folder: cuts crash damage, refuses the rest with one line
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                repair_session(s)
            _counts["repair"]["ok"] += 1
        except EmerError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
            _counts["repair"]["error"] += 1
        except Exception:
            _counts["repair"]["traceback"] += 1
            raise


@pytest.fixture(scope="module")
def manifest_text(tmp_path_factory):
    p = tmp_path_factory.mktemp("manifest") / "manifest.toml"
    write_manifest(p, emer_design_clips(), placeholder=True)
    return p.read_bytes()


@FUZZ
@given(data=st.data())
def test_manifest_fuzz(manifest_text, data):
    kind = data.draw(st.sampled_from(["mutate", "mutate", "random_text", "random_bytes"]))
    if kind == "mutate":
        text = manifest_text
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(text)))
            blob = data.draw(st.one_of(st.binary(max_size=16),
                                       st.text(alphabet="[]=\"'#.,-+0123456789abcdefinatrue \n", max_size=24)
                                       .map(lambda s: s.encode())))
            cut = data.draw(st.integers(0, 24))
            text = text[:at] + blob + text[at + cut:]
    elif kind == "random_text":
        text = data.draw(st.text(max_size=400)).encode("utf-8", "surrogatepass")
    else:
        text = data.draw(st.binary(max_size=400))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "manifest.toml"
        p.write_bytes(text)
        try:
            parsed = parse_manifest(p)                  # collects problems, never raises for content
            assert parsed.library is not None or parsed.problems
            load_manifest(p)
            _counts["manifest"]["ok"] += 1
        except EmerError as exc:
            assert str(exc)
            _counts["manifest"]["error"] += 1
        except Exception:
            _counts["manifest"]["traceback"] += 1
            raise


def test_fuzz_table(fault_table):
    """One row per fuzz target in the fault table (after the fuzz tests in this module ran)."""
    r, m = _counts["reader"], _counts["manifest"]
    if not sum(r.values()) or not sum(m.values()):
        pytest.skip("run with the fuzz tests of this module")
    fault_table.add("fuzz: session reader", f"{sum(r.values())} folders, 1-3 random byte/line mutations",
                    f"{r['error']} clear errors, {r['flagged']} flagged reads, {r['ok']} clean reads, "
                    f"{r['traceback']} tracebacks", None, "only EmerError or warnings")
    rp = _counts["repair"]
    fault_table.add("fuzz: repair", f"the same {sum(rp.values())} folders", f"{rp['error']} clear refusals, "
                    f"{rp['ok']} repaired or nothing to do, {rp['traceback']} tracebacks", None, "only EmerError")
    fault_table.add("fuzz: stimulus manifest", f"{sum(m.values())} manifests (mutated, random text, bytes)",
                    f"{m['error']} clear errors, {m['ok']} accepted, {m['traceback']} tracebacks", None, "only EmerError")
    assert r["traceback"] == 0 and m["traceback"] == 0 and rp["traceback"] == 0
