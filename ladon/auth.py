"""Application-level packet authentication: per-robot HMAC-SHA256 keys (optional, off by default).

Works on any RMW (it needs no DDS security). The robot holds one key and signs each packet
(:class:`Signer`); the server holds the keys of the robots it serves (:class:`Verifier`) and checks the tag before
anything of the packet is decoded. The tag travels in the packet format's flagged trailer (:mod:`ladon.packet`).

Key files hold the key as hexadecimal text (at least ``MIN_KEY_BYTES`` bytes, i.e. 64 hex digits). They must be
regular files, owned by the user who reads them (or root), with no permission bits for group or other (mode
``0600`` or ``0400``); anything else is refused with :class:`~ladon.errors.InsecureKeyFileError`, like ``ssh``
refuses a readable private key. :func:`generate_key_file` writes one correctly.

What this does not do: it does not stop *replay* of a captured genuine packet (the format has no sequence number)
and it does not encrypt; use SROS2 where the DDS has security (``docs/security.md``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Collection, Mapping
from pathlib import Path

from .errors import (
    InsecureKeyFileError,
    KeyFileError,
    LadonError,
    MissingTagError,
    TagMismatchError,
    UnknownKeyError,
)
from .packet import AUTH_TAG_BYTES, MAX_KEY_ID_BYTES, Packet, check_key_id

MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 1024
KEY_SUFFIX = ".key"
MAX_KEYS = 4096
"""A key directory holding more ``*.key`` files than this is refused (nothing unbounded is loaded)."""

__all__ = [
    "KEY_SUFFIX",
    "MAX_KEY_BYTES",
    "MIN_KEY_BYTES",
    "Signer",
    "Verifier",
    "compute_tag",
    "generate_key_file",
    "load_key",
    "load_keys_dir",
]


def compute_tag(key: bytes, packet: Packet, key_id: str) -> bytes:
    """HMAC-SHA256 under ``key`` over ``packet.signing_input(key_id)``."""
    return hmac.new(key, packet.signing_input(key_id), hashlib.sha256).digest()


def _check_mode(st: os.stat_result, what: str, *, allow_group_read: bool = False) -> None:
    if st.st_uid not in (os.geteuid(), 0):
        raise InsecureKeyFileError(f"{what} is owned by uid {st.st_uid}, not by this user ({os.geteuid()}) or root")
    forbidden = 0o077 if not allow_group_read else 0o022
    if st.st_mode & forbidden:
        raise InsecureKeyFileError(f"{what} has mode {stat.S_IMODE(st.st_mode):04o}: group/other must have no "
                                   f"{'access' if not allow_group_read else 'write access'} (chmod "
                                   f"{'600' if not allow_group_read else '700'})")


def load_key(path: str | os.PathLike) -> bytes:
    """Read a key file (hex text, strict permissions); raise :class:`~ladon.errors.KeyFileError` subclasses."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:  # ELOOP: a symlink (O_NOFOLLOW); EACCES ...
        raise KeyFileError(f"cannot open key file {path} (symlinks are refused): {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # checks what was opened, not the name (no race with a swapped file)
        if not stat.S_ISREG(st.st_mode):
            raise InsecureKeyFileError(f"key file {path} is not a regular file")
        _check_mode(st, f"key file {path}")
        raw = os.read(fd, 4 * MAX_KEY_BYTES + 2)
    finally:
        os.close(fd)
    if len(raw) > 2 * MAX_KEY_BYTES + 2:
        raise KeyFileError(f"key file {path} is larger than a {MAX_KEY_BYTES}-byte key in hex")
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"key file {path} must hold the key as hexadecimal text") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"key in {path} is {len(key)} bytes, at least {MIN_KEY_BYTES} are required")
    return key


def generate_key_file(path: str | os.PathLike, nbytes: int = MIN_KEY_BYTES) -> Path:
    """Write a new random key (``secrets``) as hex to ``path`` with mode 0600; never overwrites or follows links."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise KeyFileError(f"key size must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, got {nbytes}")
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists (refusing to overwrite a key)") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(nbytes) + "\n")
    return path


def load_keys_dir(directory: str | os.PathLike) -> dict[str, bytes]:
    """Every ``<key_id>.key`` file in ``directory`` (the directory must not be group/other-writable)."""
    directory = Path(directory)
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise KeyFileError(f"cannot read key directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"key directory {directory} is not a directory")
    _check_mode(st, f"key directory {directory}", allow_group_read=True)
    keys: dict[str, bytes] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.name.endswith(KEY_SUFFIX):
            continue
        key_id = entry.name[: -len(KEY_SUFFIX)]
        try:
            check_key_id(key_id)
        except LadonError:
            raise KeyFileError(f"key file name {entry.name!r}: the key id must be 1..{MAX_KEY_ID_BYTES} characters "
                               "from [A-Za-z0-9._-]") from None
        if len(keys) >= MAX_KEYS:
            raise KeyFileError(f"key directory {directory} holds more than {MAX_KEYS} keys")
        keys[key_id] = load_key(entry.path)
    if not keys:
        raise KeyFileError(f"key directory {directory} holds no *{KEY_SUFFIX} files")
    return keys


class Signer:
    """Robot side: attaches ``key_id`` and an HMAC-SHA256 tag to each packet."""

    def __init__(self, key_id: str, key: bytes) -> None:
        check_key_id(key_id)
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise KeyFileError(f"key must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, got {len(key)}")
        self.key_id = key_id
        self._key = bytes(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike, key_id: str | None = None) -> Signer:
        """Load the key from ``path``; the key id defaults to the file name without ``.key``."""
        path = Path(path)
        return cls(key_id if key_id else path.name.removesuffix(KEY_SUFFIX), load_key(path))

    def sign(self, packet: Packet) -> Packet:
        """``packet`` with this signer's trailer (an existing trailer is replaced)."""
        return packet.with_tag(self.key_id, compute_tag(self._key, packet, self.key_id))

    def sign_bytes(self, packet: Packet) -> bytes:
        """The wire bytes of :meth:`sign`."""
        return self.sign(packet).to_bytes()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"


class Verifier:
    """Server side: checks a packet's HMAC-SHA256 tag against the key its key id names (constant-time compare).

    ``required=True`` rejects packets without a tag (:class:`~ladon.errors.MissingTagError`); with
    ``required=False`` they pass unchecked (a migration mode), while tagged packets are always checked.
    """

    def __init__(self, keys: Mapping[str, bytes], *, required: bool = True) -> None:
        if not keys:
            raise KeyFileError("a verifier needs at least one key")
        for key_id, key in keys.items():
            check_key_id(key_id)
            if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
                raise KeyFileError(f"key {key_id!r} must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, got {len(key)}")
        self._keys = {k: bytes(v) for k, v in keys.items()}
        self.required = bool(required)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, *, required: bool = True) -> Verifier:
        """All ``<key_id>.key`` files of ``directory`` (see :func:`load_keys_dir`)."""
        return cls(load_keys_dir(directory), required=required)

    @property
    def key_ids(self) -> frozenset[str]:
        """The key ids this verifier holds."""
        return frozenset(self._keys)

    def verify(self, packet: Packet | bytes | bytearray | memoryview,
               allowed_key_ids: Collection[str] | None = None) -> Packet:
        """Return the parsed packet if its tag is valid (or it has none and tags are not required); raise an
        :class:`~ladon.errors.AuthenticationError` subclass otherwise. Only the header and trailer are parsed
        (caps and CRC checked); the payload is not decoded. ``allowed_key_ids`` restricts which keys may sign
        (e.g. only the sending robot's own key)."""
        if isinstance(packet, Packet):
            signed = None
        else:
            raw = bytes(packet)
            packet = Packet.from_bytes(raw)
            signed = raw[: len(raw) - 4 - AUTH_TAG_BYTES] if packet.authenticated else None
        if not packet.authenticated:
            if self.required:
                raise MissingTagError(f"packet from model {packet.model_id!r} is not authenticated, and "
                                      "authentication is required")
            return packet
        key_id = packet.key_id
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKeyError(f"packet is signed with key id {key_id!r}, which this server does not hold")
        if allowed_key_ids is not None and key_id not in allowed_key_ids:
            raise UnknownKeyError(f"key id {key_id!r} is not allowed for this sender (allowed: "
                                  f"{sorted(allowed_key_ids)})")
        if signed is None:
            signed = packet.signing_input(key_id)
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, packet.tag):
            raise TagMismatchError(f"packet's HMAC-SHA256 tag does not match under key {key_id!r} (tampered or "
                                   "signed with another key)")
        return packet

    def __repr__(self) -> str:
        return f"Verifier(key_ids={sorted(self._keys)}, required={self.required})"
