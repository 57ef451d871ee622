"""``emer-live train`` under torchrun: DistributedDataParallel with 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.torch


def test_two_cpu_processes_train_one_epoch(training_corpus, tmp_path):
    pytest.importorskip("torch")
    from emer_live.model import load_checkpoint

    corpus = training_corpus
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "emer_live.cli", "train", "--data", str(corpus), "--folds", "3", "--run-folds", "1",
           "--epochs", "1", "--batch-size", "2", "--task", "multi", "--face-train", "none",
           "--device", "cpu", "--threads", "1", "--save-folds", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "x2 processes" in log
    # only rank 0 prints and writes
    assert log.count("| epoch   1/1 |") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.fold1.pt", "ddp.pt"]
    m = load_checkpoint(out, device="cpu")
    assert m.provenance["training"]["world_size"] == 2
    # face + eyes: every process tuned the face fallback on the validation participants (none waits
    # for rank 0 at the next gather), rank 0 logged and stored it
    assert log.count("face fallback on") == 1
    assert m.inference["face_fallback"]["participants"] == sorted(m.provenance["split"]["val_participants"])
    assert m.provenance["split"]["test_participants"]
    assert not set(m.provenance["split"]["test_participants"]) & set(m.provenance["split"]["train_participants"])
