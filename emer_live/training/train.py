"""``emer-live train``: EMERT on recorded sessions (or the EMER layout), the paper's protocol.

* Splits are **by participant**: grouped K-fold (``--folds K``), each fold's test participants
  never seen in its training; inside the training participants a validation group
  (``--val-fraction``) drives early stopping. ``--folds 1`` trains one model on all
  participants (validation group only, no test).
* AdamW, cosine learning-rate decay per step (``lr * (1 + cos(pi * step / total)) / 2``), seeded
  (model init, shuffling, splits), loss ``alpha * L_adv + beta * (L_er + L_fer)``.
* One progress line per epoch (loss, train and validation metrics); early stopping on the
  validation score (mean UAR of the class heads, else minus mean MAE) with ``--patience``; the
  best validation epoch's weights are kept.
* Resumable: the full training state is written every epoch to ``<CKPT stem>.train_state.pt``
  beside the checkpoint; ``--resume`` continues an interrupted run with the same options. The
  state file is removed when the run completes.
* Saved model (``--out CKPT``): by default the best model of fold 1, whose held-out participants
  are recorded in the checkpoint's provenance (``evaluate`` scores it on exactly those);
  ``--final all`` trains one more model on all participants and saves that instead (for
  deployment; it then has no held-out participants). ``--save-folds`` also writes every fold's
  model as ``<CKPT stem>.fold<k>.pt`` for ``evaluate`` with mean +- sd over folds.
* CUDA when present (mixed precision: bfloat16 autocast where supported, else float16 with a
  gradient scaler), else CPU with ``torch.set_num_threads``.
* Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DistributedDataParallel: gloo on CPU, nccl on
  GPU, a DistributedSampler for training, validation/test predictions gathered from all ranks so
  every rank takes the same early-stopping decision; only rank 0 writes files and prints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as tdist
from torch.utils.data import DataLoader, Subset

from .. import __version__
from ..errors import CheckpointError, ConfigError
from ..model import EMERT, EMERTConfig, emert_loss, save_checkpoint, select_device
from ..model.config import DEFAULT_HEADS, default_label_maps, head_kind
from ._face_trunk import FACE_TRAIN_CHOICES, FaceTrunk
from ._torchdata import WindowDataset, collate
from .dataset import (MODALITIES, SampleSpec, Samples, fit_norm_stats, has_any_target, head_targets,
                      load_samples, modality_mask, participant_folds, split_validation)
from ..model.fallback import applies
from .evaluate import compute_metrics, describe_fallback, fallback_on_samples, score_of, summarize_folds

__all__ = ["TASK_HEADS", "TrainConfig", "run_training", "state_path_for", "fold_checkpoint_path"]

TASK_HEADS: Dict[str, Tuple[str, ...]] = {
    "er7": ("er7",),
    "er3": ("er3",),
    "va": ("er_va",),
    "multi": DEFAULT_HEADS,
}
STATE_FORMAT = "emer_live.train_state"
STATE_VERSION = 1
# Options that may differ between a run and its --resume.
_RESUME_FREE = ("resume", "quiet", "device", "num_threads", "amp", "workers", "cache_dir", "emer_layout", "command")


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (the CLI flags of ``emer-live train``)."""

    data: Tuple[str, ...]
    out: str
    task: str = "multi"
    folds: int = 5
    run_folds: Optional[int] = None
    only_fold: Optional[int] = None
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-4
    modalities: Tuple[str, ...] = MODALITIES
    samples: str = "trial"
    window_s: float = 8.0
    hop_s: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: Optional[bool] = None
    patience: int = 8
    val_fraction: float = 0.15
    final: str = "fold1"
    save_folds: bool = False
    face_train: str = "all"
    alpha: float = 0.3
    beta: float = 0.1
    grad_clip: float = 1.0
    eye_reference: str = "none"
    face_dropout: float = 0.0
    eye_dropout: float = 0.0
    face_fallback: str = "auto"
    split: str = "auto"
    num_threads: Optional[int] = None
    cache_dir: Optional[str] = None
    emer_layout: Optional[str] = None
    resume: bool = False
    quiet: bool = False
    workers: int = 0
    command: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if not self.data:
            raise ConfigError("no data given: pass --data ROOT")
        if self.task not in TASK_HEADS:
            raise ConfigError(f"--task must be one of {', '.join(TASK_HEADS)}, got {self.task!r}")

        def check_int(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")

        for name, lo in (("folds", 1), ("epochs", 1), ("batch_size", 1), ("patience", 1), ("workers", 0)):
            check_int(name, lo)
        if self.run_folds is not None:
            check_int("run_folds", 1)
        if self.only_fold is not None:
            check_int("only_fold", 1)
            if self.only_fold > self.folds:
                raise ConfigError(f"--only-fold {self.only_fold}: there are only --folds {self.folds}")
            if self.run_folds is not None:
                raise ConfigError("--only-fold and --run-folds exclude each other")
        for name in ("lr", "weight_decay", "alpha", "beta", "val_fraction", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr!r}")
        if self.val_fraction >= 1:
            raise ConfigError("--val-fraction must be below 1")
        for name in ("face_dropout", "eye_dropout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a probability in [0, 1), got {v!r}")
        if self.face_dropout + self.eye_dropout >= 1.0:
            raise ConfigError("--face-dropout + --eye-dropout must stay below 1 (some samples keep everything)")
        if self.face_fallback not in ("auto", "off"):
            raise ConfigError(f"--face-fallback must be auto or off, got {self.face_fallback!r}")
        if self.final not in ("fold1", "all"):
            raise ConfigError(f"--final must be fold1 or all, got {self.final!r}")
        if self.face_train not in FACE_TRAIN_CHOICES:
            raise ConfigError(f"--face-train must be one of {', '.join(FACE_TRAIN_CHOICES)}")
        if self.eye_reference not in ("none", "baseline", "session"):
            raise ConfigError(f"--eye-reference must be none, baseline or session, got {self.eye_reference!r}")
        if self.split not in ("auto", "participant", "emer-set"):
            raise ConfigError(f"--split must be auto, participant or emer-set, got {self.split!r}")
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise ConfigError(f"--modalities must be a non-empty subset of {','.join(MODALITIES)}")
        SampleSpec(kind=self.samples, window_s=self.window_s, hop_s=self.hop_s)  # validates
        out = Path(self.out)
        if out.suffix != ".pt":
            raise ConfigError(f"--out {out}: the checkpoint file must end in .pt")

    @property
    def heads(self) -> Tuple[str, ...]:
        return TASK_HEADS[self.task]

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = list(self.data)
        d["modalities"] = list(self.modalities)
        return d


def state_path_for(out: Any) -> Path:
    """Where the resumable training state of ``--out CKPT`` lives."""
    out = Path(out)
    return out.with_name(f"{out.stem}.train_state.pt")


def fold_checkpoint_path(out: Any, fold: int) -> Path:
    """``--save-folds`` file of fold ``fold``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.fold{fold}.pt")


# --------------------------------------------------------------------------------------------
# distributed context
# --------------------------------------------------------------------------------------------
@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def gather(self, obj: Any) -> List[Any]:
        if not self.enabled:
            return [obj]
        out: List[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _setup_dist(cfg: TrainConfig) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        threads = cfg.num_threads or max(1, _cpu_count())
        dev = select_device(cfg.device, num_threads=threads)
        return _Dist(device=dev)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available on this machine")
    backend = "nccl" if want_cuda else "gloo"
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
        torch.set_num_threads(cfg.num_threads or max(1, _cpu_count() // world))
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return _Dist(world=world, rank=rank, local_rank=local_rank, device=dev)


# --------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------
class _Log:
    def __init__(self, enabled: bool, quiet: bool) -> None:
        self.enabled = enabled
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(msg, flush=True)

    def detail(self, msg: str) -> None:
        if self.enabled and not self.quiet:
            print(msg, flush=True)

    def progress(self, msg: str) -> None:
        if self.enabled and self.tty and not self.quiet:
            sys.stderr.write("\r" + msg[:150].ljust(150))
            sys.stderr.flush()

    def end_progress(self) -> None:
        if self.enabled and self.tty and not self.quiet:
            sys.stderr.write("\r" + " " * 150 + "\r")
            sys.stderr.flush()


def _metrics_brief(metrics: Dict[str, Any]) -> str:
    parts = []
    for h, m in metrics.items():
        if not m.get("n"):
            continue
        if "uar" in m:
            parts.append(f"{h} UAR {m['uar']:.3f}")
        elif "mae" in m:
            parts.append(f"{h} MAE {m['mae']:.3f}")
    return " ".join(parts) if parts else "-"


# --------------------------------------------------------------------------------------------
# one training run (a fold, or the final all-participant model)
# --------------------------------------------------------------------------------------------
@dataclass
class _RunSpec:
    name: str                  # "fold1", ..., or "all"
    fold: Optional[int]        # 1-based fold number, None for the all-participant model
    train_p: List[str]
    val_p: List[str]
    test_p: List[str]


def _amp_settings(cfg: TrainConfig, dev: torch.device) -> Tuple[bool, Optional[torch.dtype], bool]:
    """(autocast on, dtype, use a GradScaler)."""
    on = dev.type == "cuda" if cfg.amp is None else bool(cfg.amp)
    if on and dev.type != "cuda":
        on = False  # mixed precision is a CUDA feature here; CPU trains in float32
    if not on:
        return False, None, False
    if torch.cuda.is_bf16_supported():
        return True, torch.bfloat16, False
    return True, torch.float16, True


def _drop_modalities(mask: torch.Tensor, p_face: float, p_eye: float, gen: torch.Generator) -> torch.Tensor:
    """Modality dropout on samples that have both a face and eyes: hide the face of a random
    fraction ``p_face`` (the network must recognise emotion from the eyes alone - what it needs
    when the face hides the felt emotion or is missing) and the eyes and fixations of another
    fraction ``p_eye`` (so the face path cannot leave the work to the eyes, which fit the
    training participants faster)."""
    both = mask[:, 0] & mask[:, 1:].any(dim=1)
    u = torch.rand(mask.shape[0], generator=gen)
    drop_face = both & (u < p_face)
    drop_eye = both & (u >= p_face) & (u < p_face + p_eye)
    if not (drop_face.any() or drop_eye.any()):
        return mask
    out = mask.clone()
    out[drop_face, 0] = False
    out[drop_eye, 1:] = False
    return out


def _build_model(cfg: TrainConfig, seed: int) -> EMERT:
    torch.manual_seed(seed)
    return EMERT(EMERTConfig(heads=cfg.heads))


def _predict(model: torch.nn.Module, ds: WindowDataset, idx: np.ndarray, *, dist: _Dist, batch_size: int,
             amp: Tuple[bool, Optional[torch.dtype], bool]) -> Dict[str, np.ndarray]:
    """Predictions for ``ds[idx]``, sharded over ranks and gathered (every rank gets all)."""
    heads = ds.heads
    shard = idx[dist.rank::dist.world] if dist.enabled else idx
    res: Dict[str, List[np.ndarray]] = {h: [] for h in heads}
    got_idx: List[np.ndarray] = []
    model.eval()
    net = model.module if hasattr(model, "module") else model
    if len(shard):
        loader = DataLoader(Subset(ds, shard.tolist()), batch_size=batch_size, shuffle=False, collate_fn=collate)
        with torch.inference_mode():
            for batch in loader:
                dev = dist.device
                with torch.autocast(device_type=dev.type, dtype=amp[1], enabled=amp[0]):
                    out = net(batch["face"].to(dev), batch["eye"].to(dev), batch["fixation"].to(dev),
                              modality_mask=batch["modality_mask"].to(dev))
                got_idx.append(batch["index"].numpy())
                for h in heads:
                    y = out[h].float()
                    if head_kind(h)[0] == "class":
                        y = torch.softmax(y, dim=-1)
                    res[h].append(y.cpu().numpy())
    local = {"index": np.concatenate(got_idx) if got_idx else np.zeros(0, np.int64),
             **{h: (np.concatenate(v) if v else None) for h, v in res.items()}}
    parts = dist.gather(local)
    index = np.concatenate([p["index"] for p in parts])
    order = np.argsort(index, kind="stable")
    out_preds = {"index": index[order]}
    for h in heads:
        arrs = [p[h] for p in parts if p[h] is not None]
        out_preds[h] = np.concatenate(arrs)[order] if arrs else np.zeros((0,), np.float32)
    return out_preds


def _eval_metrics(model, ds: WindowDataset, idx: np.ndarray, *, dist: _Dist, batch_size: int, amp,
                  label_maps) -> Dict[str, Any]:
    if not len(idx):
        return {}
    preds = _predict(model, ds, idx, dist=dist, batch_size=batch_size, amp=amp)
    sel = preds.pop("index")
    targets = {h: ds.targets[h].numpy()[sel] for h in ds.heads}
    return compute_metrics(preds, targets, label_maps=label_maps)


def _state_dict_cpu(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    net = model.module if hasattr(model, "module") else model
    return {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}


class _Trainer:
    """Trains the runs of one ``emer-live train`` invocation."""

    def __init__(self, cfg: TrainConfig, dist: _Dist, log: _Log) -> None:
        self.cfg = cfg
        self.dist = dist
        self.log = log
        self.amp = _amp_settings(cfg, dist.device)
        self.label_maps = default_label_maps(cfg.heads)
        self.state_path = state_path_for(cfg.out)

    # ------------------------------------------------------------------ state file
    def save_state(self, payload: Dict[str, Any]) -> None:
        if not self.dist.main:
            return
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, self.state_path)

    def load_state(self) -> Optional[Dict[str, Any]]:
        p = self.state_path
        if not p.is_file():
            raise ConfigError(f"--resume: no training state {p} to resume from (run without --resume)")
        try:
            st = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable state is a user-facing problem
            raise CheckpointError(f"{p}: cannot read the training state ({type(exc).__name__}: {exc}); "
                                  "delete it and train again") from None
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{p}: not an emer_live training state")
        if st.get("version") != STATE_VERSION:
            raise CheckpointError(f"{p}: training state version {st.get('version')!r} is not supported")
        mine = {k: v for k, v in self.cfg.to_dict().items() if k not in _RESUME_FREE}
        theirs = {k: v for k, v in (st.get("config") or {}).items() if k not in _RESUME_FREE}
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ConfigError(f"--resume: options differ from the interrupted run ({', '.join(diff)}); "
                              f"rerun with the same options or delete {p}")
        return st

    # ------------------------------------------------------------------ one run
    def train_run(self, run: _RunSpec, samples: Samples, norm_stats: Dict[str, Any], *, seed: int,
                  resume: Optional[Dict[str, Any]], completed: List[Dict[str, Any]],
                  kept_states: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
        cfg, dist, log = self.cfg, self.dist, self.log
        t_start = time.perf_counter()
        heads = cfg.heads
        train_s = samples.of_participants(run.train_p)
        val_s = samples.of_participants(run.val_p) if run.val_p else Samples.empty()
        targets = head_targets(train_s, heads)
        usable = has_any_target(targets) & modality_mask(train_s, cfg.modalities, norm_stats).any(axis=1)
        if not usable.any():
            raise ConfigError(f"{run.name}: no training sample has both a label for --task {cfg.task} and one of "
                              f"the modalities {','.join(cfg.modalities)}")
        train_s = train_s.subset(usable)
        val_usable = (has_any_target(head_targets(val_s, heads)) & modality_mask(val_s, cfg.modalities, norm_stats).any(axis=1)
                      if len(val_s) else np.zeros(0, bool))
        val_s = val_s.subset(val_usable) if len(val_s) else val_s

        model = _build_model(cfg, seed)
        has_faces = "face" in cfg.modalities and train_s.face_bank is not None and bool((train_s["face_row"] >= 0).any())
        trunk = FaceTrunk(model, cfg.face_train if has_faces else "all")
        if "face" not in cfg.modalities:
            for p in model.face_encoder.parameters():  # never used: do not let weight decay change it
                p.requires_grad_(False)
        model.to(dist.device)
        if resume is not None and resume.get("model") is not None:
            model.load_state_dict(resume["model"])

        face_tr = face_val = None
        if trunk.caching:
            t0 = time.perf_counter()
            log.detail(f"{run.name}: computing frozen face-encoder activations ({cfg.face_train} trains) ...")
            face_tr = trunk.precompute(train_s.face_bank, train_s["face_row"], device=dist.device,
                                       progress=lambda k, n: log.progress(f"  frozen face trunk {k}/{n}"))
            if len(val_s):
                face_val = trunk.precompute(val_s.face_bank, val_s["face_row"], device=dist.device)
            log.end_progress()
            log.detail(f"{run.name}: frozen activations ready in {time.perf_counter() - t0:.0f} s")
        ds_tr = WindowDataset(train_s, heads=heads, norm_stats=norm_stats, modalities=cfg.modalities,
                              face_override=face_tr)
        ds_val = (WindowDataset(val_s, heads=heads, norm_stats=norm_stats, modalities=cfg.modalities,
                                face_override=face_val) if len(val_s) else None)

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(ds_tr)
        per_rank = math.ceil(n / dist.world)
        steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch_size))
        total = cfg.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
        scaler = torch.amp.GradScaler("cuda") if self.amp[2] else None
        net: torch.nn.Module = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
                      # batches without a face skip the face encoder; otherwise every parameter is used
                      find_unused_parameters="face" in cfg.modalities)

        start_epoch, best, bad, history = 0, {"score": -math.inf, "epoch": 0, "state": None}, 0, []
        if resume is not None:
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            if scaler is not None and resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
            start_epoch = int(resume["epoch"])
            best = dict(resume["best"])
            bad = int(resume["bad_epochs"])
            history = list(resume["history"])
            log(f"{run.name}: resuming after epoch {start_epoch}")

        log(f"{run.name}: train {len(ds_tr)} samples ({len(run.train_p)} participants), validation "
            f"{len(val_s)} ({len(run.val_p)}), test participants {', '.join(run.test_p) or '-'}; "
            f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs on {dist.device}"
            f"{' x' + str(dist.world) + ' processes' if dist.enabled else ''}"
            f"{' (amp ' + str(self.amp[1]).replace('torch.', '') + ')' if self.amp[0] else ''}")
        dev = dist.device
        stopped_early = False
        if dist.enabled:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(ds_tr, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=seed)
        else:
            sampler = None
        if resume is not None and resume.get("torch_rng") is not None:
            torch.set_rng_state(resume["torch_rng"])
        for epoch in range(start_epoch, cfg.epochs):
            t_ep = time.perf_counter()
            g_drop = torch.Generator()
            g_drop.manual_seed(seed * 7_919 + epoch * 31 + dist.rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
                loader = DataLoader(ds_tr, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                                    num_workers=cfg.workers)
            else:
                g = torch.Generator()
                g.manual_seed(seed * 100_003 + epoch)
                loader = DataLoader(ds_tr, batch_size=cfg.batch_size, shuffle=True, generator=g, collate_fn=collate,
                                    num_workers=cfg.workers)
            net.train()
            trunk.set_train_mode()
            loss_sum, loss_n = 0.0, 0
            tr_preds: Dict[str, List[np.ndarray]] = {h: [] for h in heads if head_kind(h)[0] == "class"}
            tr_idx: List[np.ndarray] = []
            trunk.activate()
            for step, batch in enumerate(loader):
                mmask = batch["modality_mask"]
                if cfg.face_dropout > 0 or cfg.eye_dropout > 0:
                    mmask = _drop_modalities(mmask, cfg.face_dropout, cfg.eye_dropout, g_drop)
                with torch.autocast(device_type=dev.type, dtype=self.amp[1], enabled=self.amp[0]):
                    out = net(batch["face"].to(dev), batch["eye"].to(dev), batch["fixation"].to(dev),
                              modality_mask=mmask.to(dev))
                    losses = emert_loss(out, {h: batch[h].to(dev) for h in heads}, alpha=cfg.alpha, beta=cfg.beta)
                loss = losses["total"]
                if not torch.isfinite(loss):
                    raise RuntimeError(f"{run.name}: the loss became {loss.item()} at epoch {epoch + 1}; "
                                       "lower --lr or check the data")
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                sched.step()
                nb = len(batch["index"])
                loss_sum += float(loss.detach()) * nb
                loss_n += nb
                tr_idx.append(batch["index"].numpy())
                for h in tr_preds:
                    tr_preds[h].append(out[h].detach().float().argmax(-1).cpu().numpy())
                log.progress(f"  {run.name} epoch {epoch + 1}/{cfg.epochs} step {step + 1}/{steps_per_epoch} "
                             f"loss {loss_sum / max(loss_n, 1):.4f}")
            log.end_progress()
            # training metrics from the batches (dropout on): a rough guide
            tr_m: Dict[str, Any] = {}
            if tr_idx:
                idx_all = np.concatenate(tr_idx)
                parts = dist.gather({"idx": idx_all, **{h: np.concatenate(v) for h, v in tr_preds.items() if v},
                                     "loss": (loss_sum, loss_n)})
                idx_all = np.concatenate([p["idx"] for p in parts])
                loss_sum = sum(p["loss"][0] for p in parts)
                loss_n = sum(p["loss"][1] for p in parts)
                preds = {h: np.concatenate([p[h] for p in parts]) for h in tr_preds if all(h in p for p in parts)}
                tgt = {h: ds_tr.targets[h].numpy()[idx_all] for h in preds}
                tr_m = compute_metrics(preds, tgt, label_maps=self.label_maps)
            # validation on the full networks (frozen trunk: packed activations of val samples)
            val_m = (_eval_metrics(net, ds_val, np.arange(len(ds_val)), dist=dist, batch_size=max(cfg.batch_size, 32),
                                   amp=self.amp, label_maps=self.label_maps) if ds_val is not None else {})
            trunk.deactivate()
            score = score_of(val_m) if val_m else float("nan")
            improved = False
            if ds_val is None or not math.isfinite(score):
                best = {"score": score, "epoch": epoch + 1, "state": None}  # last epoch wins
                improved = True
            elif score > best["score"] + 1e-9:
                best = {"score": score, "epoch": epoch + 1, "state": _state_dict_cpu(net)}
                improved = True
            bad = 0 if improved else bad + 1
            rec = {"epoch": epoch + 1, "loss": loss_sum / max(loss_n, 1), "lr": float(sched.get_last_lr()[0]),
                   "train": _metrics_brief(tr_m), "val": _metrics_brief(val_m), "val_score": score,
                   "seconds": round(time.perf_counter() - t_ep, 2)}
            history.append(rec)
            log(f"{run.name} | epoch {epoch + 1:>3}/{cfg.epochs} | loss {rec['loss']:.4f} | train {rec['train']} | "
                f"val {rec['val']}{' *' if improved and ds_val is not None else ''} | lr {rec['lr']:.2e} | "
                f"{rec['seconds']:.0f} s")
            done = epoch + 1 == cfg.epochs or bad >= cfg.patience
            if not done:
                self.save_state({
                    "format": STATE_FORMAT, "version": STATE_VERSION, "config": cfg.to_dict(),
                    "run": run.name, "epoch": epoch + 1, "model": _state_dict_cpu(net),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "best": best, "bad_epochs": bad, "history": history, "completed": completed,
                    "kept_states": kept_states, "torch_rng": torch.get_rng_state(),
                })
            if bad >= cfg.patience:
                log(f"{run.name}: early stop after epoch {epoch + 1} (no validation gain for {cfg.patience} epochs)")
                stopped_early = True
                break
        final_state = best["state"] if best["state"] is not None else _state_dict_cpu(net)
        trunk.deactivate()
        info = {"run": run.name, "fold": run.fold, "train_participants": run.train_p,
                "val_participants": run.val_p, "test_participants": run.test_p,
                "n_train": len(ds_tr), "n_val": len(val_s), "best_epoch": int(best["epoch"]),
                "epochs_run": len(history), "stopped_early": stopped_early,
                "val_score": None if not math.isfinite(best["score"]) else float(best["score"]),
                "history": history, "seconds": round(time.perf_counter() - t_start, 1)}
        return final_state, info

    # ------------------------------------------------------------------ test metrics
    def test_metrics(self, state: Dict[str, torch.Tensor], samples: Samples, test_p: Sequence[str],
                     norm_stats: Dict[str, Any]) -> Dict[str, Any]:
        if not test_p:
            return {}
        model = EMERT(EMERTConfig(heads=self.cfg.heads))
        model.load_state_dict(state)
        model.to(self.dist.device)
        test_s = samples.of_participants(test_p)
        ds = WindowDataset(test_s, heads=self.cfg.heads, norm_stats=norm_stats, modalities=self.cfg.modalities)
        scored = modality_mask(test_s, self.cfg.modalities, norm_stats).any(axis=1)
        metrics = _eval_metrics(model, ds, np.flatnonzero(scored), dist=self.dist,
                                batch_size=max(self.cfg.batch_size, 32), amp=self.amp, label_maps=self.label_maps)
        sub = {}
        masked = test_s["masked"]
        if np.any(masked == 1) and np.any(masked == 0):
            for name, sel in (("masked", masked == 1), ("unmasked", masked == 0)):
                m = _eval_metrics(model, ds, np.flatnonzero(scored & sel), dist=self.dist,
                                  batch_size=max(self.cfg.batch_size, 32), amp=self.amp, label_maps=self.label_maps)
                sub[name] = {h: v for h, v in m.items() if head_kind(h)[0] == "class"}
        return {"n_samples": int(len(test_s)), "n_scored": int(scored.sum()), "heads": metrics, "subsets": sub}


# --------------------------------------------------------------------------------------------
# provenance and saving
# --------------------------------------------------------------------------------------------
def _git_commit() -> Optional[str]:
    import subprocess

    try:
        root = Path(__file__).resolve().parents[2]
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = res.stdout.strip()
    if res.returncode != 0 or len(sha) < 7:
        return None
    return sha + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _plain(obj: Any) -> Any:
    """Make ``obj`` plain data for checkpoints (floats for numpy scalars, NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)  # exact str: a str subclass (e.g. torch.__version__) is not weights_only-loadable
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    return obj


def _provenance(cfg: TrainConfig, samples: Samples, run_info: Dict[str, Any], folds: List[List[str]],
                fold_results: List[Dict[str, Any]], spec: Dict[str, Any], split_method: str,
                dist: _Dist, amp) -> Dict[str, Any]:
    from ..features.eye import EyeConfig

    sessions = sorted(set(zip(samples["participant"].tolist(), samples["session"].tolist())))
    summary = summarize_folds([r["test"]["heads"] for r in fold_results if r.get("test")])
    return _plain({
        "kind": "emer_live.train",
        "task": cfg.task,
        "heads": list(cfg.heads),
        "modalities": list(cfg.modalities),
        "data": [str(Path(d).resolve()) for d in cfg.data],
        "sessions": [f"{p}/{s}" for p, s in sessions],
        "participants": samples.participants,
        "samples": spec,
        "n_samples": len(samples),
        "split": {
            "method": split_method,
            "folds": cfg.folds,
            "seed": cfg.seed,
            "fold_test_participants": folds,
            "fold": run_info.get("fold"),
            "train_participants": run_info["train_participants"],
            "val_participants": run_info["val_participants"],
            "test_participants": run_info["test_participants"],
        },
        "training": {
            "epochs": cfg.epochs, "best_epoch": run_info["best_epoch"], "epochs_run": run_info["epochs_run"],
            "batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "schedule": "cosine per step", "optimizer": "AdamW", "alpha": cfg.alpha, "beta": cfg.beta,
            "grad_clip": cfg.grad_clip,
            "patience": cfg.patience, "val_fraction": cfg.val_fraction, "face_train": cfg.face_train,
            "face_dropout": cfg.face_dropout, "eye_dropout": cfg.eye_dropout, "seed": cfg.seed,
            "device": str(dist.device), "world_size": dist.world,
            "amp": str(amp[1]).replace("torch.", "") if amp[0] else None, "seconds": run_info["seconds"],
            "history": run_info["history"], "torch": str(torch.__version__),
        },
        "window": {"window_s": cfg.window_s, "hop_s": cfg.hop_s, "samples": cfg.samples,
                   "eye_config": EyeConfig().to_dict()},
        "eye_reference": cfg.eye_reference,
        "metrics": {
            "folds": [{"fold": r["fold"], "test_participants": r["test_participants"],
                       "best_epoch": r["best_epoch"], "val_score": r["val_score"], **(r.get("test") or {})}
                      for r in fold_results],
            "summary": summary,
        },
        "command": cfg.command,
        "git_commit": _git_commit(),
        "software_version": __version__,
        "notes": f"saved model: {run_info['run']} (--final {cfg.final})",
    })


def _save(path: Path, cfg: TrainConfig, state: Dict[str, torch.Tensor], norm_stats: Dict[str, Any],
          provenance: Dict[str, Any], label_maps: Dict[str, Any], *, overwrite: bool,
          face_fallback: Optional[Dict[str, Any]] = None) -> str:
    model = EMERT(EMERTConfig(heads=cfg.heads))
    model.load_state_dict(state)
    if face_fallback and isinstance(provenance.get("metrics"), dict):
        provenance = {**provenance, "metrics": {
            **provenance["metrics"], "face_fallback": "not applied here: these test metrics are the fused model's; "
                                                      "`emer-live evaluate` and the live app apply the stored face "
                                                      "fallback (--no-face-fallback: without it)"}}
    return save_checkpoint(path, model, norm_stats=norm_stats, provenance=provenance, label_maps=label_maps,
                           inference={"face_fallback": face_fallback} if face_fallback else None,
                           overwrite=overwrite)


def _tune_fallback(cfg: TrainConfig, run: "_RunSpec", state: Dict[str, torch.Tensor], samples: Samples,
                   norm_stats: Dict[str, Any], device: torch.device, log) -> Optional[Dict[str, Any]]:
    """--face-fallback auto: choose the face-fallback threshold on the run's validation participants
    (models that see face and eyes and have an er7 head; None otherwise)."""
    if cfg.face_fallback != "auto" or not applies(cfg.modalities, cfg.heads) or not run.val_p:
        return None
    val_s = samples.of_participants(run.val_p)
    if not len(val_s) or not np.any(head_targets(val_s, ["er7"])["er7"] >= 0):
        return None
    model = EMERT(EMERTConfig(heads=cfg.heads))
    model.load_state_dict(state)
    model.to(device).eval()
    try:
        return fallback_on_samples(model, val_s, norm_stats=norm_stats, modalities=cfg.modalities, device=device,
                                   batch_size=max(cfg.batch_size, 32))
    except ConfigError as exc:
        log(f"{run.name}: face fallback not tuned: {exc}")
        return None


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _folds_for(cfg: TrainConfig, samples: Samples) -> Tuple[List[List[str]], str]:
    people = samples.participants
    sets = samples["emer_set"]
    use_sets = cfg.split == "emer-set" or (cfg.split == "auto" and len(sets) and np.all(sets >= 1))
    if cfg.split == "emer-set" and not np.all(sets >= 1):
        raise ConfigError("--split emer-set: some samples have no EMER set (emer_set.txt); use --split participant")
    if use_sets and cfg.folds > 1:
        groups = []
        for s in sorted(set(sets.tolist())):
            groups.append(sorted(set(samples["participant"][sets == s].tolist())))
        seen: Dict[str, int] = {}
        for gi, g in enumerate(groups):
            for p in g:
                if p in seen:
                    raise ConfigError(f"the EMER split puts participant {p} in sets {seen[p] + 1} and {gi + 1}; "
                                      "that would leak a participant between train and test - use --split participant")
                seen[p] = gi
        if cfg.folds != len(groups):
            raise ConfigError(f"--folds {cfg.folds}: the EMER split (emer_set.txt) has {len(groups)} sets; "
                              f"use --folds {len(groups)} or --split participant")
        return groups, "emer_set.txt sets (participant-disjoint, checked)"
    if cfg.folds == 1:
        return [], "none (all participants train; validation group only)"
    if len(people) < 2:
        raise ConfigError(f"only {len(people)} participant in the data; cross-validation by participant needs "
                          "at least 2 (or use --folds 1)")
    return participant_folds(people, cfg.folds, seed=cfg.seed), "grouped k-fold by participant"


def run_training(cfg: TrainConfig) -> Dict[str, Any]:
    """Run ``emer-live train`` with ``cfg``; returns a summary dict (on rank 0; others get {}).

    Raises
    ------
    ConfigError
        Bad options, bad or empty data, an existing output without ``--resume``.
    """
    out = Path(cfg.out)
    dist = _setup_dist(cfg)
    log = _Log(dist.main, cfg.quiet)
    try:
        return _run(cfg, out, dist, log)
    finally:
        if dist.enabled and tdist.is_initialized():
            tdist.destroy_process_group()


def _run(cfg: TrainConfig, out: Path, dist: _Dist, log: _Log) -> Dict[str, Any]:
    if out.exists():
        raise ConfigError(f"--out {out} already exists; refusing to overwrite - choose a new file")
    trainer = _Trainer(cfg, dist, log)
    resume_state = trainer.load_state() if cfg.resume else None
    if not cfg.resume and trainer.state_path.exists():
        raise ConfigError(f"{trainer.state_path} holds an interrupted run of the same --out; continue it with "
                          "--resume or delete that file")
    t0 = time.perf_counter()
    spec = SampleSpec(kind=cfg.samples, window_s=cfg.window_s, hop_s=cfg.hop_s,
                      use_face=None if "face" in cfg.modalities else False)
    if "face" in cfg.modalities and not spec.resolved_face():
        raise ConfigError("--modalities includes face but the face pipeline (emer_live.features.face) is not "
                          "installed; use --modalities eye,fixation")
    load_face = "face" in cfg.modalities

    def progress(msg: str) -> None:
        log.detail(f"  {msg}")

    # rank 0 builds the window caches first; the others then read them
    err: Optional[str] = None
    samples = None
    if dist.main:
        try:
            samples = load_samples(cfg.data, spec, load_face=load_face, cache_dir=cfg.cache_dir, progress=progress,
                                   emer_layout=cfg.emer_layout)
        except ConfigError as exc:
            err = str(exc)
    err = dist.broadcast(err)
    if err is not None:
        raise ConfigError(err)
    if not dist.main:
        samples = load_samples(cfg.data, spec, load_face=load_face, cache_dir=cfg.cache_dir,
                               emer_layout=cfg.emer_layout)
    assert samples is not None
    log(f"data: {samples.summary()} ({time.perf_counter() - t0:.0f} s)")

    folds, split_method = _folds_for(cfg, samples)
    people = samples.participants
    runs: List[_RunSpec] = []
    n_run = len(folds) if cfg.run_folds is None else min(cfg.run_folds, len(folds))
    fold_ids = range(n_run) if cfg.only_fold is None else [cfg.only_fold - 1]
    for i in fold_ids:
        test_p = folds[i]
        rest = [p for p in people if p not in test_p]
        tr, va = split_validation(rest, fraction=cfg.val_fraction, seed=cfg.seed + i + 1)
        runs.append(_RunSpec(name=f"fold{i + 1}", fold=i + 1, train_p=tr, val_p=va, test_p=test_p))
    if cfg.final == "all" or not folds:
        tr, va = split_validation(people, fraction=cfg.val_fraction, seed=cfg.seed)
        runs.append(_RunSpec(name="all", fold=None, train_p=tr, val_p=va, test_p=[]))

    completed: List[Dict[str, Any]] = []
    kept: Dict[str, Any] = {}
    if resume_state is not None:
        completed = list(resume_state.get("completed") or [])
        kept = dict(resume_state.get("kept_states") or {})
    done_runs = {c["run"] for c in completed}
    spec_d = spec.to_dict()
    norm_cache: Dict[str, Dict[str, Any]] = {}
    for i, run in enumerate(runs):
        if run.name in done_runs:
            log(f"{run.name}: already completed (resumed)")
            continue
        train_s = samples.of_participants(run.train_p)
        # fitted on the run's training participants only
        norm = fit_norm_stats(train_s, reference=cfg.eye_reference)
        norm_cache[run.name] = norm
        rs = resume_state if (resume_state is not None and resume_state.get("run") == run.name) else None
        # a fold's seed depends on the fold, not on which folds this process runs (--only-fold)
        run_seed = cfg.seed * 1000 + (run.fold - 1 if run.fold is not None else i)
        state, info = trainer.train_run(run, samples, norm, seed=run_seed, resume=rs,
                                        completed=completed, kept_states=kept)
        # every process tunes (the same, deterministic result) so none waits at the next gather
        ff = _tune_fallback(cfg, run, state, samples, norm, dist.device, log)
        if ff is not None:
            info["face_fallback"] = ff
            log(f"{run.name}: {describe_fallback(ff)} (stored in the checkpoint; `evaluate` and the live app "
                "apply it, the TEST line below is the fused model alone)")
        if run.test_p:
            info["test"] = trainer.test_metrics(state, samples, run.test_p, norm)
            t = info["test"]
            log(f"{run.name} TEST ({len(run.test_p)} participants, {t['n_scored']} samples): "
                f"{_metrics_brief(t['heads'])}"
                + "".join(f" | {k}: {_metrics_brief(v)}" for k, v in t["subsets"].items()))
        info["norm_stats"] = norm
        completed.append(_plain({k: v for k, v in info.items() if k != "norm_stats"}) | {"norm_stats": norm})
        keep_this = (cfg.final == "fold1" and run is runs[0] and run.fold is not None) or run.name == "all"
        if keep_this:
            kept[run.name] = state
        if cfg.save_folds and run.fold is not None and dist.main:
            fp = fold_checkpoint_path(out, run.fold)
            prov = _provenance(cfg, samples, info, folds, [info], spec_d, split_method, dist, trainer.amp)
            cid = _save(fp, cfg, state, norm, prov, trainer.label_maps, overwrite=True,
                        face_fallback=info.get("face_fallback"))
            log(f"{run.name}: saved {fp} [{cid}]")
        if i + 1 < len(runs):  # checkpoint between runs so --resume skips finished folds
            trainer.save_state({"format": STATE_FORMAT, "version": STATE_VERSION, "config": cfg.to_dict(),
                                "run": None, "epoch": 0, "model": None, "completed": completed,
                                "kept_states": kept})

    fold_results = [c for c in completed if c.get("fold") is not None]
    # --final fold1: the first fold run (fold K with --only-fold K)
    final_name = "all" if (cfg.final == "all" or not folds) else runs[0].name
    final_info = next(c for c in completed if c["run"] == final_name)
    summary: Dict[str, Any] = {}
    if dist.main:
        prov = _provenance(cfg, samples, final_info, folds, fold_results, spec_d, split_method, dist, trainer.amp)
        cid = _save(out, cfg, kept[final_name], final_info["norm_stats"], prov, trainer.label_maps, overwrite=False,
                    face_fallback=final_info.get("face_fallback"))
        if trainer.state_path.exists():
            trainer.state_path.unlink()
        if len(fold_results) > 1:
            log(f"test mean +- sd over {len(fold_results)} folds:")
            for h, m in prov["metrics"]["summary"].items():
                key = "uar" if "uar" in m else "mae"
                mm = m[key]
                if mm["mean"] is not None:
                    log(f"  {h:<14} {key.upper()} {mm['mean']:.3f} +- {mm['sd']:.3f}")
        log(f"saved {out} [{cid}] = the {final_name} model "
            f"(best epoch {final_info['best_epoch']}), {time.perf_counter() - t0:.0f} s in total")
        summary = {"checkpoint": str(out), "id": cid, "provenance": prov}
    dist.barrier()
    return summary
