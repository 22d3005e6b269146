"""``ladon set``: write a model set manifest (several betas of one model, for rate adaptation)."""

from __future__ import annotations

import argparse

from ..model_set import load_model_set, write_manifest

HELP = "write a model set manifest (several betas; rate adaptation)"
DESCRIPTION = ("Write a JSON manifest that references model files by relative path and SHA-256 (no weights copied); "
               "the encoder and server nodes take it as their 'model' parameter. See docs/adaptation.md.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon set``."""
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model files (full, or encoder-only for a robot)")
    parser.add_argument("-o", "--output", required=True, metavar="SET.json", help="manifest to write")
    parser.add_argument("--server", action="store_true",
                        help="also check that it serves as a server set (every member a full model)")


def run(args: argparse.Namespace) -> int:
    """Check the members as a set, write the manifest and print its members."""
    doc = write_manifest(args.output, args.models)
    if args.server:
        load_model_set(args.output)
    for row in doc["models"]:
        print(f"beta {row['beta']:g}  {row['model_hash']}  {row['file']}")
    print(f"wrote {args.output} ({len(doc['models'])} models)")
    return 0
