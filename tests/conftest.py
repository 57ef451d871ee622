"""Shared fixtures. Qt must never open a window in tests."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


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
