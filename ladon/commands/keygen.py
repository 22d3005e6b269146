"""``ladon keygen``: new per-robot HMAC-SHA256 keys for packet authentication (``ladon.auth``)."""

from __future__ import annotations

import argparse

from .._cli_common import output_dir
from ..auth import KEY_SUFFIX, MIN_KEY_BYTES, generate_key_file
from ..errors import UsageError
from ..packet import check_key_id

HELP = "create per-robot packet-authentication keys (<key_id>.key, mode 0600)"
DESCRIPTION = ("Create one random HMAC-SHA256 key per key id in DIR as <key_id>.key (hex, mode 0600, never "
               "overwritten). Copy a robot's file to that robot (encoder parameter auth.key_file) and the whole "
               "directory to the server (auth.keys_dir).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon keygen``."""
    parser.add_argument("key_ids", nargs="+", metavar="KEY_ID",
                        help="key ids, one per robot: its namespace without the leading / and with / as . "
                             "(/fleet/robot1 -> fleet.robot1)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="key directory (created mode 0700)")
    parser.add_argument("--bytes", type=int, default=MIN_KEY_BYTES, help=f"key size ({MIN_KEY_BYTES})")


def run(args: argparse.Namespace) -> int:
    """Write one key file per key id; refuse existing ones."""
    for key_id in args.key_ids:
        check_key_id(key_id)
    if len(set(args.key_ids)) != len(args.key_ids):
        raise UsageError("key ids must be distinct")
    out = output_dir(args.output)
    out.chmod(0o700)
    for key_id in args.key_ids:
        path = generate_key_file(out / f"{key_id}{KEY_SUFFIX}", args.bytes)
        print(f"{key_id}: {path}")
    return 0
