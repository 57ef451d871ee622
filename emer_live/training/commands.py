"""CLI: ``emer-live train``, ``evaluate``, ``compare`` and ``tune-fallback`` (torch is imported only
when they run)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

__all__ = ["register"]

_TASKS = ("er7", "er3", "va", "multi")


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train EMERT on recorded sessions (or the EMER layout), split by participant",
        description="Train EMERT with grouped K-fold cross-validation by participant (no participant in both train "
                    "and test), cosine LR decay, early stopping on a validation group of the training participants, "
                    "resumable state beside the checkpoint. Runs on CUDA with mixed precision when present, else CPU; "
                    "under torchrun it uses DistributedDataParallel. See docs/training.md.")
    p.add_argument("--data", nargs="+", required=True, metavar="ROOT",
                   help="folders of recorded sessions (searched recursively) and/or EMER dataset roots")
    p.add_argument("--task", choices=_TASKS, default="multi",
                   help="er7, er3, va (ER valence/arousal) or multi (ER + FER heads: er7 er3 er_va fer7 fer3 fer_va "
                        "fer_intensity; default)")
    p.add_argument("--folds", type=int, default=5, help="K of grouped K-fold by participant (default 5; 1 = no test "
                                                        "split, train on all)")
    p.add_argument("--run-folds", type=int, default=None, metavar="N",
                   help="train only the first N folds (default all)")
    p.add_argument("--only-fold", type=int, default=None, metavar="K",
                   help="train only fold K (e.g. to spread the folds over machines; --save-folds names it "
                        "<out>.fold<K>.pt, and --out holds it too); seeds and splits are those of the full run")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs per fold (default 30)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size per process (default 16)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate, cosine-decayed (default 1e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--alpha", type=float, default=0.3, help="weight of the adversarial loss (paper: 0.3)")
    p.add_argument("--beta", type=float, default=0.1, help="weight of the task losses (paper: 0.1)")
    p.add_argument("--grad-clip", type=float, default=1.0,
                   help="clip the gradient norm to this (default 1.0; 0 = off)")
    p.add_argument("--modalities", default="face,eye,fixation",
                   help="modalities the model sees, for ablations (default face,eye,fixation)")
    p.add_argument("--samples", choices=("trial", "sliding", "both"), default=None,
                   help="whole-stimulus windows (trial; the paper's protocol, default), sliding windows inside "
                        "stimuli, or both")
    p.add_argument("--per-trial", action="store_true", help="same as --samples trial")
    p.add_argument("--window", type=float, default=8.0, help="sliding-window length in s (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="sliding-window hop in s (default 1)")
    p.add_argument("--eye-reference", choices=("none", "baseline", "session"), default="none",
                   help="remove person-specific eye levels (pupil baseline, blink rate...): 'baseline' subtracts "
                        "the mean over the session's baseline phase; 'session' z-scores every eye/fixation feature "
                        "by the session's running mean and sd so far (the live engine does the same; "
                        "docs/training.md); default none (raw features)")
    p.add_argument("--face-dropout", type=float, default=0.0, metavar="P",
                   help="modality dropout: hide the face of this fraction of training samples that have eyes, so "
                        "the model also learns emotion from the eyes alone (default 0 = the paper's training)")
    p.add_argument("--eye-dropout", type=float, default=0.0, metavar="P",
                   help="modality dropout: hide eyes and fixations of this fraction of training samples that have a "
                        "face, so the face path learns on its own too (default 0)")
    p.add_argument("--face-fallback", choices=("auto", "off"), default="auto",
                   help="auto (default): for a model that sees face and eyes, choose on the validation participants "
                        "whether and when to take the ER answer from the face alone where the face alone is sure "
                        "(stored in the checkpoint; see tune-fallback); off: never")
    p.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="share of training participants held out for validation (default 0.15, at least one)")
    p.add_argument("--final", choices=("fold1", "all"), default="fold1",
                   help="model saved to --out: the best model of fold 1 (default; evaluate scores it on its "
                        "held-out participants) or one more model trained on all participants")
    p.add_argument("--save-folds", action="store_true", help="also save every fold's model as <out>.fold<k>.pt")
    p.add_argument("--face-train", choices=("all", "layer4", "none"), default="all",
                   help="which part of the face ResNet-18 trains: all (default), layer4 (stem..layer3 frozen, their "
                        "activations computed once - much faster on CPU) or none")
    p.add_argument("--split", choices=("auto", "participant", "emer-set"), default="auto",
                   help="folds from participants, or from the EMER emer_set.txt sets (auto: sets when every sample "
                        "has one)")
    p.add_argument("--emer-layout", default=None, metavar="JSON", help="layout/column map for EMER dataset roots")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, initialisation and shuffling (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on with CUDA, off on CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, shared under torchrun)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--cache-dir", default=None,
                   help="keep window caches here instead of SESSION/cache/ (for read-only data)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from <out stem>.train_state.pt")
    p.add_argument("--quiet", action="store_true", help="only the per-epoch and summary lines")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt; refused if it exists)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="evaluate EMERT checkpoint(s): WAR, UAR, F1, MAE/RMSE, confusion matrices",
        description="Score checkpoint(s) on recorded sessions (or an EMER root) over the whole test set: WAR, UAR and "
                    "weighted F1 per class head, MAE/MSE/RMSE for regressions, confusion matrices (PNG with --out-dir). "
                    "A checkpoint from `emer-live train` is scored on its held-out participants; several fold "
                    "checkpoints give per-fold results and mean +- sd. --json prints the report documented in "
                    "docs/training.md.")
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="CKPT", help="checkpoint(s), e.g. the folds")
    p.add_argument("--data", nargs="+", required=True, metavar="ROOT", help="session folders and/or EMER roots")
    p.add_argument("--split", choices=("auto", "test", "all"), default="auto",
                   help="test: the checkpoint's held-out participants; all: every sample (unseen data); auto: test "
                        "when the checkpoint records them (default)")
    p.add_argument("--samples", choices=("trial", "sliding", "both"), default="trial",
                   help="samples to score (default trial: whole-stimulus windows)")
    p.add_argument("--window", type=float, default=8.0, help="sliding-window length in s (default 8)")
    p.add_argument("--hop", type=float, default=1.0, help="sliding-window hop in s (default 1)")
    p.add_argument("--modalities", default=None,
                   help="modalities fed to the model (default: those it was trained with)")
    p.add_argument("--emer-layout", default=None, metavar="JSON", help="layout/column map for EMER dataset roots")
    p.add_argument("--cache-dir", default=None, help="window cache folder (default SESSION/cache/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help="write evaluation.json, predictions.tsv (per sample) and confusion_<head>_fold<k>.png here")
    p.add_argument("--no-face-fallback", action="store_true",
                   help="score the plain fused model even when the checkpoint stores a face fallback "
                        "(see tune-fallback)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "tune-fallback", help="choose a checkpoint's face fallback on its validation participants",
        description="Face fallback: where the model run on the face alone is sure of the ER answer (top ER7 "
                    "probability >= a threshold), take the face's answer; elsewhere (typically a smile or a neutral "
                    "face, the faces people hide behind) the fused face+eyes answer stands. This command picks the "
                    "threshold that maximises ER7 UAR on the checkpoint's validation participants (never its test "
                    "participants), or 'off' when none beats the fused model, and writes a new checkpoint with it; "
                    "the live app and `evaluate` then apply it. `train` does this by itself (--face-fallback auto). "
                    "See docs/training.md.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a face+eyes checkpoint from `emer-live train`")
    p.add_argument("--data", nargs="+", required=True, metavar="ROOT",
                   help="the data it was trained on (its validation participants are taken from there)")
    p.add_argument("--participants", default=None, metavar="P01,P02",
                   help="tune on these participants instead of the checkpoint's validation participants")
    p.add_argument("--samples", choices=("trial", "sliding", "both"), default=None,
                   help="samples to tune on (default: those the checkpoint was trained on)")
    p.add_argument("--window", type=float, default=None, help="sliding-window length in s (default: as trained)")
    p.add_argument("--hop", type=float, default=None, help="sliding-window hop in s (default: as trained)")
    p.add_argument("--cache-dir", default=None, help="window cache folder (default SESSION/cache/)")
    p.add_argument("--emer-layout", default=None, metavar="JSON", help="layout/column map for EMER dataset roots")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", required=True, metavar="CKPT", help="new checkpoint to write (refused if it exists)")
    p.set_defaults(func=cmd_tune_fallback)

    p = sub.add_parser(
        "compare", help="ablation table of several evaluations with participant-bootstrap intervals",
        description="Compare models evaluated on the same held-out samples (each `emer-live evaluate --out-dir DIR`): "
                    "pooled UAR on all, masked-face and unmasked trials, per-fold mean +- sd, and each model's "
                    "difference to a baseline model with a 95% interval from resampling participants (paired). "
                    "Prints a markdown table (--json: the numbers).")
    p.add_argument("evaluations", nargs="+", metavar="NAME=DIR",
                   help="a model's name and the --out-dir of its evaluation (holds predictions.tsv)")
    p.add_argument("--baseline", default=None, metavar="NAME", help="model the others are compared to (default: first)")
    p.add_argument("--head", default="er7", help="class head (default er7)")
    p.add_argument("--samples", choices=("trial", "window", "all"), default="trial",
                   help="whole-trial samples (default, the paper's protocol), sliding windows, or all")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def _need_torch(what: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import EmerError

        raise EmerError(f"`emer-live {what}` needs PyTorch, which is not installed in this Python "
                        f"({sys.version.split()[0]}); install torch (pip install torch) or use the project's "
                        "main environment") from None


def cmd_train(args) -> int:
    from ..errors import ConfigError
    from .dataset import parse_modalities

    _need_torch("train")

    samples = args.samples or "trial"
    if args.per_trial and args.samples not in (None, "trial"):
        raise ConfigError("--per-trial contradicts --samples; give one of them")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be >= 1")
    from .train import TrainConfig, run_training

    cfg = TrainConfig(
        data=tuple(args.data), out=args.out, task=args.task, folds=args.folds, run_folds=args.run_folds,
        only_fold=args.only_fold,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        modalities=parse_modalities(args.modalities), samples=samples, window_s=args.window, hop_s=args.hop,
        seed=args.seed, device=args.device, amp=args.amp, patience=args.patience, val_fraction=args.val_fraction,
        final=args.final, save_folds=args.save_folds, face_train=args.face_train, alpha=args.alpha, beta=args.beta,
        grad_clip=args.grad_clip, eye_reference=args.eye_reference, face_dropout=args.face_dropout,
        eye_dropout=args.eye_dropout, face_fallback=args.face_fallback,
        split=args.split, num_threads=args.threads, cache_dir=args.cache_dir, emer_layout=args.emer_layout,
        resume=args.resume, quiet=args.quiet, workers=args.workers,
        command="emer-live train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None,
    )
    run_training(cfg)
    return 0


def cmd_evaluate(args) -> int:
    _need_torch("evaluate")
    import torch

    from ..errors import ConfigError
    from ..model import select_device
    from .dataset import SampleSpec, load_samples, parse_modalities
    from .evaluate import evaluate_checkpoints, format_report, write_confusion_pngs, write_sample_predictions

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    for c in args.checkpoint:
        if not Path(c).is_file():
            raise ConfigError(f"--checkpoint {c}: no such file")
    mods = parse_modalities(args.modalities) if args.modalities else None
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and (out_dir / "evaluation.json").exists():
        raise ConfigError(f"--out-dir {out_dir} already holds an evaluation.json; choose a new folder")
    if args.device == "auto" and not torch.cuda.is_available():
        select_device("cpu")
    if mods is not None:
        face_needed = "face" in mods
    else:  # the modalities the checkpoints were trained with decide whether face crops are needed
        from ..model import load_checkpoint

        face_needed = False
        for c in args.checkpoint:
            prov = load_checkpoint(c, device="cpu").provenance or {}
            face_needed |= "face" in (prov.get("modalities") or ("face",))
    spec = SampleSpec(kind=args.samples, window_s=args.window, hop_s=args.hop, use_face=None if face_needed else False)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    samples = load_samples(args.data, spec, load_face=face_needed and spec.resolved_face(), cache_dir=args.cache_dir,
                           emer_layout=args.emer_layout, progress=lambda m: log(f"  {m}"))
    log(f"data: {samples.summary()}")
    rows: list = []
    report = evaluate_checkpoints(args.checkpoint, samples, split=args.split, modalities=mods, device=args.device,
                                  batch_size=args.batch_size, data=args.data, sample_spec=spec.to_dict(), log=log,
                                  keep_rows=rows, face_fallback=not args.no_face_fallback)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        pngs = write_confusion_pngs(report, out_dir)
        report["confusion_png"] = [str(p) for p in pngs]
        write_sample_predictions(rows, out_dir / "predictions.tsv")
        (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        log(f"wrote {out_dir / 'evaluation.json'}, predictions.tsv (one row per sample) and {len(pngs)} "
            "confusion-matrix PNG(s)")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def cmd_tune_fallback(args) -> int:
    _need_torch("tune-fallback")
    import torch

    from ..errors import ConfigError
    from ..model import load_checkpoint, select_device
    from .dataset import SampleSpec, load_samples
    from .evaluate import check_fallback_model, tune_face_fallback

    if not Path(args.checkpoint).is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint}: no such file")
    if Path(args.out).exists():
        raise ConfigError(f"--out {args.out} already exists; choose a new file (the input checkpoint is never changed)")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be >= 1")
    # select_device sets the CPU thread count; load on the device it chose so it is not reset
    dev = select_device("auto" if torch.cuda.is_available() else "cpu", num_threads=args.threads)
    loaded = load_checkpoint(args.checkpoint, device=dev)
    check_fallback_model(loaded)  # before the data: building window caches can take minutes
    trained = (loaded.provenance or {}).get("samples") or {}
    spec = SampleSpec(kind=args.samples or trained.get("kind") or "trial",
                      window_s=args.window or trained.get("window_s") or 8.0,
                      hop_s=args.hop or trained.get("hop_s") or 1.0, use_face=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    samples = load_samples(args.data, spec, load_face=spec.resolved_face(), cache_dir=args.cache_dir,
                           emer_layout=args.emer_layout, progress=lambda m: log(f"  {m}"))
    people = [p.strip() for p in args.participants.split(",") if p.strip()] if args.participants else None
    ff = tune_face_fallback(loaded, samples, participants=people, log=log)
    for t, u, share in ff["grid"]:
        print(f"  threshold {t:.2f}: ER7 UAR {u:.3f}, ER from the face on {100 * share:.0f} % of samples")
    cid = loaded.with_inference(args.out, {**loaded.inference, "face_fallback": ff},
                                note="emer-live tune-fallback")
    t = ff["threshold"]
    print(f"wrote {args.out} [{cid}]: face fallback "
          + (f"threshold {t:.2f} (validation ER7 UAR {ff['val_er7_uar_fused']:.3f} fused -> {ff['val_er7_uar']:.3f})"
             if t is not None else f"off (no threshold beat the fused model's validation ER7 UAR "
                                   f"{ff['val_er7_uar_fused']:.3f})"))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .compare import compare_evaluations, format_comparison, read_evaluation, report_json

    evals = []
    for item in args.evaluations:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"{item!r}: give each evaluation as NAME=DIR (e.g. face=eval_face)")
        evals.append(read_evaluation(name, folder, head=args.head, kind=None if args.samples == "all" else args.samples))
    if args.bootstrap < 0:
        raise ConfigError("--bootstrap must be >= 0")
    rep = compare_evaluations(evals, baseline=args.baseline, n_boot=args.bootstrap, seed=args.seed)
    if args.json:
        print(report_json(rep))
    else:
        print(format_comparison(rep, chance=1.0 / len(rep["classes"]) if rep["classes"] else None))
    return 0
