"""Shared fixtures. Qt must never open a window in tests."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
_not_collected = []


def pytest_ignore_collect(collection_path, config):
    """On a torch-less Python (the 3.10 SDK lane) whole torch modules are not collected - and
    said so at the end - instead of being imported and skipped one by one."""
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if "pytestmark = pytest.mark.torch" in collection_path.read_text(encoding="utf-8"):
        _not_collected.append(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    if _not_collected:
        terminalreporter.write_line(f"not collected - they need torch, which this Python lacks: "
                                    f"{', '.join(sorted(set(_not_collected)))}")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (disk-full tests), unmounted afterwards. Mounting needs root; CI runs as root."""
    import shutil
    import subprocess

    d = tmp_path / "disk"
    d.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and `mount` (the disk-full tests run as root in CI)")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture(scope="session")
def clip_library(tmp_path_factory):
    """28 real placeholder clips (H.264 + AAC), 2 s each at 25 fps, 128x96; shared read-only -
    a test that damages a clip copies the library first."""
    pytest.importorskip("av")
    from emer_live.cli import main

    d = tmp_path_factory.mktemp("lib") / "lib"
    assert main(["stimuli", "placeholders", "--out", str(d), "--duration", "2", "--size", "128x96",
                 "--fps", "25"]) == 0
    return d


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """A randomly initialised multi-task EMERT checkpoint (pipeline tests; predictions meaningless)."""
    torch = pytest.importorskip("torch")
    from emer_live.model.checkpoint import identity_norm_stats, save_checkpoint
    from emer_live.model.config import EMERTConfig
    from emer_live.model.emert import EMERT

    torch.manual_seed(0)
    cfg = EMERTConfig()
    model = EMERT(cfg).eval()
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(path, model, norm_stats=identity_norm_stats(cfg), provenance={"data": "random init (tests)"})
    return path


@pytest.fixture(scope="session")
def recorded20(tmp_path_factory):
    """A 20 s synthetic recording (250 Hz gaze, 30 fps 1280x720 video, 48 kHz audio) via the CLI."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("rec") / "s20"
    p = subprocess.run([sys.executable, "-m", "emer_live.cli", "record", "--tracker", "synthetic", "--camera",
                        "synthetic", "--mic", "synthetic", "--rate", "250", "--duration", "20", "--out", str(d),
                        "--quiet"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    return d


@pytest.fixture(scope="session")
def training_corpus(tmp_path_factory):
    """A tiny synthetic corpus (3 participants x 3 trials, virtual clock) shared by the training,
    evaluation and DDP tests; recorded once per test session."""
    from emer_live import cli

    root = tmp_path_factory.getbasetemp() / "training_corpus"
    assert cli.main(["collect-synthetic", "--participants", "3", "--trials", "3", "--time-scale", "0.03",
                     "--size", "320x240", "--seed", "5", "--mask-rate", "0.5", "--jobs", "1",
                     "--out", str(root)]) == 0
    return root


@pytest.fixture(autouse=True)
def _close_question_answers_abort(request, monkeypatch):
    """A test that leaves a session running in an operator console is torn down by pytest-qt
    closing the window; the console then asks the operator (a modal box) and would wait forever.
    Such tests get "abort" as the answer; tests/test_console_close.py answers the real box."""
    import sys

    console = sys.modules.get("emer_live.ui.console")
    if console is None or request.module.__name__.endswith("test_console_close"):
        return
    monkeypatch.setattr(console.OperatorConsole, "confirm_close", lambda self: True)
