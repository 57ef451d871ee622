"""CLI: ``emer-live import-official`` and ``emer-live model-info``.

Importable without torch (``emer-live --help`` must work on a torch-less Python); torch is
imported inside the command functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CheckpointError, ConfigError, EmerError
from .config import OFFICIAL_VARIANTS


def _need_torch(command: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EmerError(f"{command} needs PyTorch, which is not installed in this Python; "
                        "install torch (pip install torch) or use the project's .venv") from None


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add the model sub-commands."""
    p = subparsers.add_parser(
        "import-official",
        help="convert an official EMERT checkpoint (.pth) into an emer_live checkpoint",
        description="Convert one official EMERT checkpoint (github.com/kejun1/EMER; one per task and fold) "
                    "into an emer_live checkpoint. The state dict must match the variant's layout exactly; "
                    "the first missing, unexpected or mis-shaped key is reported.",
    )
    p.add_argument("input", metavar="IN.pth", help="official checkpoint (state dict; wrapped or "
                                                   "'module.'-prefixed is fine)")
    p.add_argument("--variant", required=True, choices=OFFICIAL_VARIANTS,
                   help="which official model: discrete (7-class), valence, arousal, intensity")
    p.add_argument("--out", required=True, metavar="OUT.pt", help="checkpoint to write (never overwritten)")
    p.add_argument("--task", choices=("er", "fer"), default="er",
                   help="label family of the discrete/valence/arousal head (default: er); "
                        "intensity is always fer")
    p.add_argument("--classes", metavar="NAMES",
                   help="comma-separated 7 class names in the checkpoint's index order "
                        "(default: happiness,sadness,fear,surprise,disgust,anger,neutral)")
    p.add_argument("--fold", type=int, metavar="K", help="cross-validation fold (1-5), recorded in provenance")
    p.set_defaults(func=_cmd_import_official)

    q = subparsers.add_parser(
        "model-info",
        help="show an emer_live checkpoint's id, heads, provenance and norm stats",
        description="Load a checkpoint safely (weights_only) and print what it is.",
    )
    q.add_argument("checkpoint", metavar="CKPT.pt")
    q.add_argument("--json", action="store_true", help="print machine-readable JSON")
    q.set_defaults(func=_cmd_model_info)


def _cmd_import_official(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        raise CheckpointError(f"{out}: already exists; refusing to overwrite (choose another --out)")
    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",")]
        if len(classes) != 7 or len(set(classes)) != 7 or not all(classes):
            raise ConfigError(f"--classes needs 7 distinct comma-separated names, got {args.classes!r}")
    _need_torch("import-official")
    from .official import import_official

    imp = import_official(args.input, variant=args.variant, task=args.task, class_names=classes, fold=args.fold)
    ckpt_id = imp.save(out, overwrite=False)
    print(f"wrote {out} (id {ckpt_id}): official {args.variant} -> heads {', '.join(imp.config.heads)}, "
          f"{imp.model.num_parameters():,} parameters")
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    _need_torch("model-info")
    from .checkpoint import load_checkpoint

    lm = load_checkpoint(args.checkpoint, device="cpu")
    info = {
        "path": str(lm.path),
        "id": lm.id,
        "format_version": lm.format_version,
        "heads": list(lm.config.heads),
        "parameters": lm.model.num_parameters(),
        "config": lm.config.to_dict(),
        "label_maps": lm.label_maps,
        "provenance": lm.provenance,
        "norm_stats": lm.norm_stats,
        "inference": lm.inference,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{lm.path}  id {lm.id}  (format v{lm.format_version})")
    print(f"  heads: {', '.join(lm.config.heads)}   parameters: {info['parameters']:,}   "
          f"width: {lm.config.model_dim}   face channels: {lm.config.face_channel_order}")
    ref = lm.norm_stats.get("reference") if isinstance(lm.norm_stats, dict) else None
    print(f"  eye reference: {ref.get('kind') if isinstance(ref, dict) else 'none'}")
    ff = lm.inference.get("face_fallback")
    t = lm.face_fallback
    print("  face fallback: " + ("none" if not ff else
                                 f"off (tuned on {', '.join(ff.get('participants') or [])}: no threshold helped)"
                                 if t is None else
                                 f"threshold {t:.2f} (ER from the face alone where it is that sure; tuned on "
                                 f"{', '.join(ff.get('participants') or []) or '?'})"))
    for key, value in lm.provenance.items():
        print(f"  {key}: {_short(value)}")
    print("  (long values shortened; --json prints everything)")
    return 0


def _short(value, limit: int = 160) -> str:
    """One line for the text view: a long list or dict (the training history, the session list)
    is cut with a count of what is left out."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    if len(text) <= limit:
        return text
    n = len(value) if isinstance(value, (list, dict)) else None
    return text[:limit].rstrip() + f" ... ({n} items)" if n is not None else text[:limit] + " ..."
