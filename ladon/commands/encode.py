"""``ladon encode``: robot side, images -> packet files (only the robot-side weights are loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._cli_common import (
    add_force_option,
    add_model_options,
    check_model_options,
    output_dir,
    safe_output_path,
    set_threads,
    unique_path,
    write_output,
)
from ..auth import Signer
from ..errors import UsageError
from ..model import build_model, load_encoder
from .inputs import PACKET_SUFFIX, read_input

HELP = "robot side: encode images into packet files (.ldnp)"
DESCRIPTION = "Encode images into packet files; only the robot-side weights are loaded."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon encode``."""
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files")
    add_model_options(parser, "full or encoder-only; server weights are never read")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for <stem>.ldnp packet files")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    parser.add_argument("--sign-key", metavar="KEY_FILE",
                        help="sign every packet with this HMAC-SHA256 key file (ladon keygen; mode 0600)")
    parser.add_argument("--key-id", metavar="ID", help="key id written into signed packets (default: the key file "
                        "name without .key)")
    add_force_option(parser)


def run(args: argparse.Namespace) -> int:
    """Encode every image into ``<output>/<stem>.ldnp`` and print its size."""
    check_model_options(args)
    set_threads(args.threads)
    images = []
    for path in args.images:
        item = read_input(path)
        if item.image is None:
            raise UsageError(f"{path} is a packet file; `ladon encode` takes images")
        images.append((path, item.image))
    out_dir = output_dir(args.output)
    used: set[Path] = set()
    targets = [unique_path(out_dir, Path(path).stem, PACKET_SUFFIX, used) for path, _ in images]
    for target in targets:  # refuse existing outputs before any work is done
        safe_output_path(out_dir, target.name, args.force)
    signer = Signer.from_file(args.sign_key, args.key_id) if args.sign_key else None
    encoder = build_model(seed=0).encoder if args.random_weights else load_encoder(args.model)
    for (path, image), target in zip(images, targets):
        (packet,) = encoder.encode([image])
        data = packet.to_bytes() if signer is None else signer.sign_bytes(packet)
        write_output(out_dir, target.name, data, force=args.force)
        h, w = image.shape[:2]
        shape = "x".join(str(v) for v in packet.latent_shape)
        print(f"{path}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp ({w}x{h} px), latent {shape} "
              f"-> {target}")
    return 0
