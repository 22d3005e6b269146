"""ladon.bag: the rosbag2-layout MCAP writer and the bounds-checked reader, without ROS.

Covers: the layout an independent reader (the ``mcap`` library) sees (profile, schema encoding and full definition
text, zstd chunks, channel metadata, the rosbag2 metadata record, statistics) and metadata.yaml; round trip of
every message; rosbag2's definition format; truncation at every cut point (messages before it kept, the error names
the offset); corrupted bytes, impossible lengths and a non-MCAP file; a disk-full (file-size limit) write that
leaves a closed, readable bag.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader

import ladon
from ladon.bag import FEATURES_TYPE, BagWriter, McapScanner, bag_files, decode_cdr
from ladon.errors import BagError, BagWriteError, ChecksumError, CorruptBagError, TruncatedBagError
from ladon.features_message import packet_from_features

sys.path.insert(0, str(Path(__file__).parent))
from _bag_helpers import (
    FEATURES_DEFINITION,
    features_cdr,
    features_topic,
    write_features_bag,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packets() -> list[ladon.Packet]:
    model = ladon.load_model(REPO / "models" / "demo.pt")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60 + 7 * i, 80, 3), dtype=np.uint8) for i in range(6)]
    return model.encoder.encode(images)


@pytest.fixture(scope="module")
def bag(tmp_path_factory, packets) -> Path:
    frames = [(f"/r{i % 2 + 1}/ladon/features", p, 100 + i) for i, p in enumerate(packets)]
    return write_features_bag(tmp_path_factory.mktemp("bag") / "drive", frames, chunk_size=2048)


def test_layout_seen_by_the_mcap_library(bag, packets):
    with open(bag, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
        messages = list(reader.iter_messages())
    assert header.profile == "ros2"
    (schema,) = summary.schemas.values()
    assert (schema.name, schema.encoding) == (FEATURES_TYPE, "ros2msg")
    text = schema.data.decode()
    assert text.startswith(Path(REPO / "ladon_msgs/msg/CompressedFeatures.msg").read_text())
    assert "\n" + "=" * 80 + "\nMSG: std_msgs/Header\n" in text
    assert "\n" + "=" * 80 + "\nMSG: builtin_interfaces/Time\n" in text
    assert {c.topic for c in summary.channels.values()} == {"/r1/ladon/features", "/r2/ladon/features"}
    for channel in summary.channels.values():
        assert channel.message_encoding == "cdr"
        assert yaml.safe_load(channel.metadata["offered_qos_profiles"])[0]["reliability"] == "reliable"
        assert channel.metadata["topic_type_hash"] == "RIHS01_test"
    assert summary.statistics.message_count == len(packets)
    assert summary.statistics.chunk_count >= 2
    assert {i.compression for i in summary.chunk_indexes} == {"zstd"}
    assert [m.log_time for _, _, m in messages] == [(100 + i) * 10**9 + 7 for i in range(len(packets))]
    with open(bag, "rb") as f:
        (meta,) = [m for m in make_reader(f).iter_metadata() if m.name == "rosbag2"]
    info = yaml.safe_load(meta.metadata["serialized_metadata"])
    assert info["version"] == 9 and info["message_count"] == len(packets)


def test_metadata_yaml_is_rosbag2_version_9(bag, packets):
    info = yaml.safe_load((bag.parent / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == [bag.name] and bag.name == "drive_0.mcap"
    assert info["message_count"] == len(packets)
    assert info["starting_time"]["nanoseconds_since_epoch"] == 100 * 10**9 + 7
    assert info["duration"]["nanoseconds"] == (len(packets) - 1) * 10**9
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert topics["/r1/ladon/features"]["message_count"] == 3
    meta = topics["/r1/ladon/features"]["topic_metadata"]
    assert meta["type"] == FEATURES_TYPE and meta["serialization_format"] == "cdr"
    assert isinstance(meta["offered_qos_profiles"], list)  # a YAML sequence in version 9, not a string
    assert info["files"][0]["message_count"] == len(packets)
    assert bag_files(bag.parent) == [bag] and bag_files(bag) == [bag]


def test_an_independent_rosbag2_reader_reads_the_bag(bag, packets):
    """rosbags (its own rosbag2 + MCAP implementation) reads metadata.yaml version 9, the QoS and every message."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg((REPO / "ladon_msgs/msg/CompressedFeatures.msg").read_text(), FEATURES_TYPE))
    with Reader(bag.parent) as reader:
        assert reader.message_count == len(packets)
        assert {c.topic for c in reader.connections} == {"/r1/ladon/features", "/r2/ladon/features"}
        for connection in reader.connections:
            assert connection.msgtype == FEATURES_TYPE
            (qos,) = connection.ext.offered_qos_profiles
            assert qos.reliability.name == "RELIABLE" and qos.deadline.sec == 9223372036
        decoded = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert [packet_from_features(m).to_bytes() for m in decoded] == [p.to_bytes() for p in packets]


def test_round_trip_of_every_packet(bag, packets):
    scanner = McapScanner(bag)
    messages = list(scanner.messages())
    assert scanner.complete and scanner.profile == "ros2"
    assert len(messages) == len(packets)
    for i, (message, packet) in enumerate(zip(messages, packets)):
        decoded = decode_cdr(message.schema, message.channel, message.data)
        assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (100 + i, 7)
        assert packet_from_features(decoded).to_bytes() == packet.to_bytes()


def test_definition_text_follows_rosbag2():
    """Dependencies sorted, depth first, each once, after an 80-character rule and ``MSG: pkg/Name``."""
    parts = FEATURES_DEFINITION.split("\n" + "=" * 80 + "\n")
    assert [p.splitlines()[0] for p in parts[1:]] == ["MSG: std_msgs/Header", "MSG: builtin_interfaces/Time"]


def test_bad_crc_in_a_message_is_a_checksum_error(bag, packets):
    message = next(McapScanner(bag).messages())
    decoded = decode_cdr(message.schema, message.channel,
                         features_cdr(packets[0], 1, crc=(packets[0].crc32 + 1) & 0xFFFFFFFF))
    with pytest.raises(ChecksumError):
        packet_from_features(decoded)


def _read_until_error(path: Path) -> tuple[int, TruncatedBagError | None]:
    n = 0
    try:
        for _ in McapScanner(path).messages():
            n += 1
    except TruncatedBagError as exc:
        return n, exc
    return n, None


def test_truncation_at_every_cut_keeps_what_was_read(bag, tmp_path, packets):
    data = bag.read_bytes()
    full, _ = _read_until_error(bag)
    previous = 0
    data_end = data.rindex(b"\x0f" + (4).to_bytes(8, "little"))  # DataEnd: opcode 0x0f, length 4
    # (the summary after DataEnd is not needed to read the messages, so cuts there are not errors)
    cuts = sorted(set(range(0, data_end, max(1, data_end // 97))) | {data_end - 1, data_end, 8, 9, 20})
    for cut in cuts:
        path = tmp_path / "cut.mcap"
        path.write_bytes(data[:cut])
        n, exc = _read_until_error(path)
        assert exc is not None, f"cut at {cut} not reported"
        assert 0 <= exc.offset <= cut and f"at byte {exc.offset}" in str(exc)
        assert exc.messages_read == n
        assert previous <= n <= full  # reading more bytes never yields fewer messages
        previous = n
    # Cut right before the DataEnd record: every message is read, then the missing end is reported.
    path = tmp_path / "no_end.mcap"
    path.write_bytes(data[:data_end])
    n, exc = _read_until_error(path)
    assert n == len(packets) and exc is not None and exc.offset == data_end and "without a DataEnd" in str(exc)


def test_corruption_is_reported_with_the_chunk_offset(bag, tmp_path):
    data = bytearray(bag.read_bytes())
    first_chunk = data.index(b"\x06", 8 + 9)  # a record after the header
    offsets = [m.offset for m in McapScanner(bag).messages()]
    chunk = offsets[-1]  # the last chunk: everything before it must still be read
    assert data[chunk] == 0x06 and chunk > first_chunk
    data[chunk + 9 + 8 * 3 + 4 + 4 + 4 + 8 + 20] ^= 0xFF  # a byte of its compressed records
    path = tmp_path / "corrupt.mcap"
    path.write_bytes(bytes(data))
    n, exc = _read_until_error(path)
    assert isinstance(exc, CorruptBagError) and exc.offset == chunk
    assert n == sum(1 for o in offsets if o < chunk)


def test_impossible_lengths_are_rejected_before_reading(bag, tmp_path):
    data = bytearray(bag.read_bytes())
    offsets = [m.offset for m in McapScanner(bag).messages()]
    chunk = offsets[-1]
    bad = bytearray(data)
    bad[chunk + 1:chunk + 9] = (2**62).to_bytes(8, "little")  # record length
    (tmp_path / "len.mcap").write_bytes(bytes(bad))
    _, exc = _read_until_error(tmp_path / "len.mcap")
    assert isinstance(exc, CorruptBagError) and exc.offset == chunk and "cap" in str(exc)
    bad = bytearray(data)
    bad[chunk + 9 + 16:chunk + 9 + 24] = (2**40).to_bytes(8, "little")  # chunk uncompressed size
    (tmp_path / "size.mcap").write_bytes(bytes(bad))
    _, exc = _read_until_error(tmp_path / "size.mcap")
    assert isinstance(exc, CorruptBagError) and exc.offset == chunk
    (tmp_path / "png.mcap").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _, exc = _read_until_error(tmp_path / "png.mcap")
    assert isinstance(exc, CorruptBagError) and exc.offset == 0 and "not an MCAP" in str(exc)


def test_writer_refuses_an_existing_bag(bag):
    with pytest.raises(BagError, match="already exists"):
        BagWriter(bag.parent)


DISK_FULL_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    sys.path[:0] = {paths!r}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    import numpy as np
    from _bag_helpers import features_cdr, features_topic
    from ladon import Packet
    from ladon.bag import BagWriter
    from ladon.errors import BagWriteError
    packet = Packet.from_bytes(open({packet!r}, "rb").read())
    writer = BagWriter({out!r}, chunk_size={chunk})
    writer.add_topic(features_topic("/r/ladon/features"))
    rng = np.random.default_rng(0)  # incompressible payloads, so that chunks keep their size on disk
    try:
        for i in range(10000):
            p = Packet(packet.model_id, packet.model_hash, packet.beta, packet.latent_shape, packet.geometry,
                       rng.bytes(packet.nbytes))
            writer.write("/r/ladon/features", features_cdr(p, i), 10**9 * (i + 1))
        writer.close()
    except BagWriteError as exc:
        print("BagWriteError:", exc)
        sys.exit(3)
""")


@pytest.mark.parametrize(("limit", "chunk", "summary_fits"), [(40_000, 3000, False), (80_000, 30_000, True)])
def test_disk_full_closes_a_readable_bag(tmp_path, packets, limit, chunk, summary_fits):
    """Past the limit: the file is cut back to its last complete record and ended with DataEnd + summary + footer
    where that fits (big chunks free enough room), else DataEnd + footer."""
    packet_file = tmp_path / "p.ldnp"
    packet_file.write_bytes(packets[0].to_bytes())
    out = tmp_path / "full"
    script = DISK_FULL_SCRIPT.format(paths=[str(REPO), str(Path(__file__).parent)], limit=limit, chunk=chunk,
                                     packet=str(packet_file), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "writing failed" in proc.stdout and "File too large" in proc.stdout
    path = out / "full_0.mcap"
    assert path.stat().st_size <= limit
    scanner = McapScanner(path)
    messages = list(scanner.messages())  # no TruncatedBagError: the file was ended properly
    assert scanner.complete and len(messages) > 5
    assert [decode_cdr(m.schema, m.channel, m.data).header.stamp.sec for m in messages] == list(range(len(messages)))
    with open(path, "rb") as f:  # an independent reader agrees (summary written after the failure if it fit)
        reader = make_reader(f)
        summary = reader.get_summary()
        assert sum(1 for _ in reader.iter_messages()) == len(messages)
    assert (summary is not None) == summary_fits
    assert summary is None or summary.statistics.message_count == len(messages)
    assert f"{len(messages)} complete message(s)" in proc.stdout
    info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == len(messages)
    assert features_topic("/x").type == FEATURES_TYPE


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_a_chunk_claiming_a_huge_size_costs_only_its_real_output(tmp_path, packets, compression):
    """Decompression memory follows the bytes actually produced, not the (checked, capped) size in the header."""
    import tracemalloc

    from _bag_helpers import features_topic as topic

    with BagWriter(tmp_path / "b", compression=compression, chunk_size=1 << 16) as writer:
        writer.add_topic(topic("/r/ladon/features"))
        for i, p in enumerate(packets):
            writer.write("/r/ladon/features", features_cdr(p, i), i + 1)
    assert [m.log_time for m in McapScanner(writer.path).messages()] == list(range(1, len(packets) + 1))
    data = bytearray(writer.path.read_bytes())
    chunk = data.index(b"\x06", 8 + 9)
    data[chunk + 9 + 16:chunk + 9 + 24] = (512 << 20).to_bytes(8, "little")  # claims 512 MiB (under the cap)
    (tmp_path / "bomb.mcap").write_bytes(bytes(data))
    tracemalloc.start()
    n, exc = _read_until_error(tmp_path / "bomb.mcap")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(exc, CorruptBagError) and exc.offset == chunk and n == 0
    assert peak < 16 << 20, f"peak {peak} bytes"


def test_a_really_full_disk(tmp_path, packets):
    """ENOSPC from a full 96 KiB tmpfs (root only: mounts one): the same clean end as the file-size limit."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mountpoint)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rng = np.random.default_rng(1)
        writer = BagWriter(mountpoint / "drive", chunk_size=16_000)
        writer.add_topic(features_topic("/r/ladon/features"))
        with pytest.raises(BagWriteError, match="No space left on device") as info:
            for i in range(10_000):
                p = packets[0]
                p = ladon.Packet(p.model_id, p.model_hash, p.beta, p.latent_shape, p.geometry, rng.bytes(p.nbytes))
                writer.write("/r/ladon/features", features_cdr(p, i), i + 1)
        scanner = McapScanner(writer.path)
        messages = list(scanner.messages())
        assert scanner.complete and len(messages) > 10 and f"{len(messages)} complete message(s)" in str(info.value)
        meta = (mountpoint / "drive" / "metadata.yaml").read_text()  # completed in the space reserved at creation
        assert yaml.safe_load(meta)["rosbag2_bagfile_information"]["message_count"] == len(messages)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
