"""Application-level authentication: the flagged HMAC trailer in the packet format, key files, signer, verifier."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib

import pytest

from ladon.auth import MIN_KEY_BYTES, Signer, Verifier, generate_key_file, load_key, load_keys_dir
from ladon.errors import (
    AuthenticationError,
    ChecksumError,
    InconsistentPacketError,
    InsecureKeyFileError,
    KeyFileError,
    LadonError,
    MissingTagError,
    PacketError,
    PacketLimitError,
    TagMismatchError,
    TruncatedPacketError,
    UnknownKeyError,
)
from ladon.geometry import Geometry
from ladon.packet import AUTH_TAG_BYTES, FLAG_AUTHENTICATED, Packet

# The layout of ladon/packet.py's docstring, written out independently of the implementation.
HEAD = struct.Struct("<4sBBH16sf3H6HB")
U32 = struct.Struct("<I")
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
PINNED_UNSIGNED_SHA256 = "09d26e7465fed88c797383fa32da92f8512c5149303ce39adc4960d2c2555878"


def make_packet(**overrides) -> Packet:
    fields = dict(model_id="ladon-test", model_hash=bytes(range(16)), beta=0.5, latent_shape=(8, 5, 7),
                  geometry=Geometry((64, 96), (277, 416), (288, 416)), data=bytes(range(40)))
    fields.update(overrides)
    return Packet(**fields)


def hand_built(packet: Packet, *, flags: int, trailer: bytes = b"") -> bytes:
    g = packet.geometry
    mid = packet.model_id.encode()
    body = HEAD.pack(b"LDNP", 1, flags, 1, packet.model_hash, packet.beta, *packet.latent_shape, *g.original_size,
                     *g.resized_size, *g.padded_size, len(mid)) + mid + U32.pack(len(packet.data)) + packet.data
    body += trailer
    return body + U32.pack(zlib.crc32(body))


def with_crc(body_without_crc: bytes) -> bytes:
    return body_without_crc + U32.pack(zlib.crc32(body_without_crc))


# ------------------------------------------------------------------------------------------------ format
def test_unauthenticated_packets_keep_their_exact_bytes():
    p = make_packet()
    assert not p.authenticated
    assert p.to_bytes() == hand_built(p, flags=0)
    assert p.nbytes == len(p.to_bytes())
    # pinned: SHA-256 of this packet's bytes as written by main before the extension existed
    assert hashlib.sha256(p.to_bytes()).hexdigest() == PINNED_UNSIGNED_SHA256
    assert Packet.from_bytes(p.to_bytes()) == p


def test_signed_packet_layout_and_round_trip():
    p = make_packet()
    signed = Signer("robot1", KEY_A).sign(p)
    wire = signed.to_bytes()
    head_with_flag = hand_built(p, flags=FLAG_AUTHENTICATED)[:-4]  # header .. payload, flags bit 0 set
    covered = head_with_flag + bytes((6,)) + b"robot1"
    tag = hmac.new(KEY_A, covered, hashlib.sha256).digest()
    assert wire == with_crc(covered + tag)
    assert signed.nbytes == len(wire) == p.nbytes + 1 + 6 + AUTH_TAG_BYTES
    parsed = Packet.from_bytes(wire)
    assert parsed == signed and parsed.key_id == "robot1" and parsed.tag == tag
    assert parsed.without_tag() == p
    assert Verifier({"robot1": KEY_A}).verify(wire) == signed
    assert Verifier({"robot1": KEY_A}).verify(parsed) == signed


def test_tampering_any_byte_raises_a_typed_error():
    """Every single-byte change of a signed packet is rejected, with the CRC fixed (a deliberate forger) or not."""
    verifier = Verifier({"r": KEY_A})
    wire = Signer("r", KEY_A).sign_bytes(make_packet())
    # model hash, model id, payload, tag: a change keeps the structure valid, only the HMAC can catch it
    hmac_only = {*range(8, 24), *range(47, 57), *range(61, 101), *range(len(wire) - 36, len(wire) - 4)}
    for i in range(len(wire)):
        forged = bytearray(wire)
        forged[i] ^= 0x5A
        with pytest.raises(LadonError):  # stale CRC: ChecksumError or an earlier structural error
            verifier.verify(bytes(forged))
        if i < len(wire) - 4:
            refixed = with_crc(bytes(forged[:-4]))
            with pytest.raises(LadonError) as info:
                verifier.verify(refixed)
            assert not isinstance(info.value, ChecksumError)
            if i in hmac_only:
                assert isinstance(info.value, TagMismatchError), (i, info.value)


def test_wrong_key_unknown_key_and_foreign_robot():
    wire = Signer("robot1", KEY_B).sign_bytes(make_packet())
    with pytest.raises(TagMismatchError, match="robot1"):
        Verifier({"robot1": KEY_A}).verify(wire)
    with pytest.raises(UnknownKeyError, match="robot1"):
        Verifier({"robot2": KEY_B}).verify(wire)
    verifier = Verifier({"robot1": KEY_B, "robot2": KEY_A})
    assert verifier.verify(wire, allowed_key_ids=("robot1",)).key_id == "robot1"
    with pytest.raises(UnknownKeyError, match="not allowed"):  # robot1's key used on robot2's topic
        verifier.verify(wire, allowed_key_ids=("robot2",))


def test_missing_tag_when_required_and_migration_mode():
    wire = make_packet().to_bytes()
    with pytest.raises(MissingTagError):
        Verifier({"r": KEY_A}).verify(wire)
    assert Verifier({"r": KEY_A}, required=False).verify(wire) == make_packet()
    # a tagged packet is still checked when tags are optional
    with pytest.raises(TagMismatchError):
        Verifier({"r": KEY_A}, required=False).verify(Signer("r", KEY_B).sign_bytes(make_packet()))
    # stripping the trailer (flags cleared, CRC recomputed) gives an untagged packet: required -> rejected
    stripped = Signer("r", KEY_A).sign(make_packet()).without_tag().to_bytes()
    with pytest.raises(MissingTagError):
        Verifier({"r": KEY_A}).verify(stripped)
    assert issubclass(MissingTagError, AuthenticationError) and issubclass(AuthenticationError, LadonError)


@pytest.mark.parametrize("kid_len, error", [(0, PacketLimitError), (33, PacketLimitError), (200, PacketLimitError)])
def test_forged_key_id_length_is_capped(kid_len, error):
    p = make_packet()
    body = hand_built(p, flags=FLAG_AUTHENTICATED)[:-4] + bytes((kid_len,)) + b"k" * kid_len + b"\0" * 32
    with pytest.raises(error):
        Packet.from_bytes(with_crc(body))


def test_malformed_trailers_raise_typed_errors():
    p = make_packet()
    base = hand_built(p, flags=FLAG_AUTHENTICATED)[:-4]
    with pytest.raises((TruncatedPacketError, PacketLimitError)):  # flag set, only the CRC after the payload
        Packet.from_bytes(with_crc(base))
    with pytest.raises(TruncatedPacketError):  # tag cut short
        Packet.from_bytes(with_crc(base + b"\x01r" + b"\0" * 31))
    with pytest.raises(PacketError, match="trailing"):
        Packet.from_bytes(with_crc(base + b"\x01r" + b"\0" * 33))
    with pytest.raises(InconsistentPacketError, match="characters"):
        Packet.from_bytes(with_crc(base + b"\x02r/" + b"\0" * 32))
    with pytest.raises(InconsistentPacketError, match="characters"):
        Packet.from_bytes(with_crc(base + b"\x02\xc3\xa9" + b"\0" * 32))
    with pytest.raises(InconsistentPacketError, match="both"):
        make_packet(key_id="r")
    with pytest.raises(InconsistentPacketError, match="tag is 31 bytes"):
        make_packet(key_id="r", tag=b"\0" * 31)
    with pytest.raises(PacketLimitError):
        Signer("x" * 33, KEY_A)
    with pytest.raises(InconsistentPacketError):
        Signer("robot 1", KEY_A)


# ------------------------------------------------------------------------------------------------ key files
def test_key_files_round_trip_and_refuse_loose_permissions(tmp_path):
    path = generate_key_file(tmp_path / "robot1.key")
    assert (os.stat(path).st_mode & 0o777) == 0o600
    key = load_key(path)
    assert len(key) == MIN_KEY_BYTES
    with pytest.raises(KeyFileError, match="exists"):
        generate_key_file(path)
    signer = Signer.from_file(path)
    assert signer.key_id == "robot1" and "key=" not in repr(signer)
    for mode in (0o640, 0o604, 0o660, 0o644, 0o610):
        os.chmod(path, mode)
        with pytest.raises(InsecureKeyFileError, match=f"{mode:04o}"):
            load_key(path)
    os.chmod(path, 0o400)
    assert load_key(path) == key


def test_key_file_refuses_symlinks_non_files_bad_content(tmp_path):
    real = generate_key_file(tmp_path / "real.key")
    (tmp_path / "link.key").symlink_to(real)
    with pytest.raises(KeyFileError, match="symlink"):
        load_key(tmp_path / "link.key")
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "missing.key")
    os.mkfifo(tmp_path / "fifo.key", 0o600)
    with pytest.raises(InsecureKeyFileError, match="regular"):
        load_key(tmp_path / "fifo.key")
    for name, content in (("short", "ab" * 16), ("nothex", "zz" * 40), ("huge", "ab" * 5000)):
        f = tmp_path / f"{name}.key"
        f.write_text(content)
        os.chmod(f, 0o600)
        with pytest.raises(KeyFileError):
            load_key(f)


def test_keys_dir_loads_every_key_and_checks_the_directory(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="no"):
        load_keys_dir(keys)
    a, b = generate_key_file(keys / "robot1.key"), generate_key_file(keys / "fleet.robot2.key")
    (keys / "README.txt").write_text("ignored")
    loaded = load_keys_dir(keys)
    assert loaded == {"robot1": load_key(a), "fleet.robot2": load_key(b)}
    wire = Signer.from_file(b).sign_bytes(make_packet())
    assert Verifier.from_dir(keys).verify(wire).key_id == "fleet.robot2"
    os.chmod(keys, 0o777)
    with pytest.raises(InsecureKeyFileError, match="directory"):
        load_keys_dir(keys)
    os.chmod(keys, 0o700)
    bad = keys / "bad name.key"
    bad.write_text("ab" * 32)
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="key id"):
        load_keys_dir(keys)



def test_ladon_keygen_command(tmp_path, capsys):
    from ladon import cli

    keys = tmp_path / "keys"
    assert cli.main(["keygen", "robot1", "fleet.robot2", "-o", str(keys)]) == 0
    assert (os.stat(keys).st_mode & 0o777) == 0o700
    assert Verifier.from_dir(keys).key_ids == {"robot1", "fleet.robot2"}
    wire = Signer.from_file(keys / "robot1.key").sign_bytes(make_packet())
    assert Verifier.from_dir(keys).verify(wire).key_id == "robot1"
    assert cli.main(["keygen", "robot1", "-o", str(keys)]) == 2  # an existing key is never overwritten
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["keygen", "bad/id", "-o", str(keys)]) == 2
