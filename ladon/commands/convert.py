"""``ladon convert``: compose the authors' per-task checkpoints into one Ladon model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._cli_common import add_force_option, output_dir, safe_output_path, save_output
from ..checkpoints import load_authors_checkpoints

HELP = "compose the authors' per-task checkpoints into one model file"
DESCRIPTION = "Compose the authors' per-task checkpoints into one Ladon model file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon convert``."""
    parser.add_argument("--classification", required=True, metavar="CKPT", help="ImageNet checkpoint (required)")
    parser.add_argument("--detection", metavar="CKPT", help="COCO checkpoint")
    parser.add_argument("--segmentation", metavar="CKPT", help="PASCAL VOC checkpoint")
    parser.add_argument("--backbone", default="resnet50", help="backbone name (resnet50)")
    parser.add_argument("--channels", type=int, metavar="C",
                        help="bottleneck channels (default: read from the weights)")
    parser.add_argument("--beta", type=float, help="rate weight (default: the beta<value> in the classification name)")
    parser.add_argument("--model-id", metavar="ID", help="model id carried in packets (default: derived)")
    parser.add_argument("--body-norm", choices=("classification", "segmentation"), default="classification",
                        help="BatchNorm statistics of the shared body (classification)")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL", help="output model file (.pt)")
    add_force_option(parser)


def run(args: argparse.Namespace) -> int:
    """Compose the checkpoints, save the model file and print its identity."""
    out = Path(args.output)
    safe_output_path(output_dir(out.parent), out.name, args.force)  # before the (slow) conversion
    model = load_authors_checkpoints(args.classification, args.detection, args.segmentation,
                                     backbone=args.backbone, num_bottleneck_channels=args.channels, beta=args.beta,
                                     model_id=args.model_id or "", body_norm=args.body_norm)
    save_output(out.parent, out.name, model.save, force=args.force)
    c = model.config
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    print(f"  model id   {c.model_id}")
    print(f"  model hash {model.model_hash.hex()}")
    print(f"  tasks      {', '.join(model.server.tasks)}")
    print(f"  backbone   {c.backbone}, C={c.num_bottleneck_channels}, beta={c.beta:g}, body norm {args.body_norm}")
    return 0
