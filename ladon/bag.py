"""Recorded features: MCAP files in the rosbag2 layout, read and written without ROS.

* :class:`McapScanner` reads an MCAP file record by record (data section only), validates every length against the
  bytes present and a cap before reading it, decompresses zstd/lz4 chunks into buffers no larger than their checked
  header size, checks chunk CRCs, and yields :class:`BagMessage` in file order. A truncated or corrupted file raises
  :class:`~ladon.errors.TruncatedBagError` / :class:`~ladon.errors.CorruptBagError` naming the byte offset, after
  every message before that point was yielded.
* :class:`BagWriter` writes a rosbag2 bag directory (``<dir>/<dir>_0.mcap`` + ``metadata.yaml``, like
  ``ros2 bag record -s mcap``): profile ``ros2``, ``ros2msg`` schemas with the full definition text, ``cdr``
  messages, zstd chunks, the ``rosbag2`` metadata record and ``offered_qos_profiles`` / ``topic_type_hash`` channel
  metadata. A failed write (disk full, file size limit) truncates the file to its last complete record, appends a
  small summary and footer when there is room, writes ``metadata.yaml`` and raises
  :class:`~ladon.errors.BagWriteError`: the bag stays readable up to its last complete chunk.
* :func:`decode_cdr` decodes a CDR message from the ``ros2msg`` schema stored in the file (``mcap-ros2-support``),
  and :func:`ladon.features_message.packet_from_features` rebuilds the :class:`~ladon.Packet` of a decoded
  ``ladon_msgs/msg/CompressedFeatures`` (CRC checked).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import BagError, BagWriteError, CorruptBagError, TruncatedBagError

MAGIC = b"\x89MCAP0\r\n"
FEATURES_TYPE = "ladon_msgs/msg/CompressedFeatures"
FEATURES_SUFFIX = "ladon/features"
MAX_RECORD_BYTES = 1 << 30
"""Largest record (and chunk, compressed or not) read: 1 GiB; a larger length field is treated as corruption."""
MAX_FIELD_BYTES = 1 << 20
"""Largest string / schema text / metadata map inside a record."""
ROSBAG2_VERSION = 9
METADATA_RESERVE = 16 * 1024
"""Bytes reserved for ``metadata.yaml`` when a bag is created, so that it can be completed on a full disk."""
DEFAULT_CHUNK_SIZE = 768 * 1024
"""rosbag2_storage_mcap's default (mcap::McapWriterOptions::chunkSize)."""

OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_METADATA, OP_DATA_END = 0x0C, 0x0F
_NAMES = {0x01: "Header", 0x02: "Footer", 0x03: "Schema", 0x04: "Channel", 0x05: "Message", 0x06: "Chunk",
          0x07: "MessageIndex", 0x08: "ChunkIndex", 0x09: "Attachment", 0x0A: "AttachmentIndex",
          0x0B: "Statistics", 0x0C: "Metadata", 0x0D: "MetadataIndex", 0x0E: "SummaryOffset", 0x0F: "DataEnd"}


# ------------------------------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class Schema:
    """An MCAP schema record (``name`` like ``ladon_msgs/msg/CompressedFeatures``, ``encoding`` ``ros2msg``)."""

    id: int
    name: str
    encoding: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Channel:
    """An MCAP channel record (one recorded topic)."""

    id: int
    schema_id: int
    topic: str
    message_encoding: str
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True)
class BagMessage:
    """One recorded message: its channel, times (ns) and serialized bytes; ``offset`` is the file offset of the
    record holding it (the chunk, for chunked files)."""

    channel: Channel
    schema: Schema | None
    sequence: int
    log_time: int
    publish_time: int
    data: bytes
    offset: int


class _Fields:
    """Bounds-checked little-endian reads from one record's bytes; errors name the record's file offset."""

    def __init__(self, data: bytes | memoryview, offset: int, what: str) -> None:
        self.data, self.pos, self.offset, self.what = memoryview(data), 0, offset, what

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptBagError(f"malformed {self.what} record at byte {self.offset}: a field needs {n} bytes, "
                                  f"{len(self.data) - self.pos} left in the record", self.offset)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self._take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self._take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self._take(8))[0]

    def blob32(self) -> bytes:
        n = self.u32()
        if n > MAX_FIELD_BYTES:
            raise CorruptBagError(f"malformed {self.what} record at byte {self.offset}: a {n}-byte field exceeds "
                                  f"the {MAX_FIELD_BYTES}-byte cap", self.offset)
        return bytes(self._take(n))

    def string(self) -> str:
        raw = self.blob32()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptBagError(f"malformed {self.what} record at byte {self.offset}: a string is not UTF-8",
                                  self.offset) from None

    def string_map(self) -> dict[str, str]:
        n = self.u32()
        inner = _Fields(self._take(n), self.offset, self.what)
        out: dict[str, str] = {}
        while inner.pos < len(inner.data):
            key = inner.string()
            out[key] = inner.string()
        return out

    def rest(self) -> bytes:
        return bytes(self._take(len(self.data) - self.pos))


class McapScanner:
    """Sequential reader of an MCAP file's data section (see the module docstring).

    ``profile`` and ``library`` come from the header; ``schemas`` / ``channels`` fill in as they are met;
    ``complete`` is true once the data section ended properly (DataEnd or Footer)."""

    def __init__(self, path: str | os.PathLike[str], *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        self.profile = ""
        self.library = ""
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.complete = False
        self.messages_read = 0
        self.chunks_read = 0

    def _error(self, cls: type[TruncatedBagError], offset: int, why: str) -> TruncatedBagError:
        return cls(f"{self.path}: {why} at byte {offset}; {self.messages_read} message(s) before it were read",
                   offset, self.messages_read)

    def messages(self) -> Iterator[BagMessage]:
        """Every message in file order. Raises a :class:`TruncatedBagError` (or :class:`CorruptBagError`) naming the
        offset where reading stopped, after yielding everything before it."""
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(MAGIC))
            if head != MAGIC:
                if MAGIC.startswith(head):
                    raise self._error(TruncatedBagError, 0, "file ends inside the MCAP magic")
                raise self._error(CorruptBagError, 0, "not an MCAP file (bad magic)")
            pos = len(MAGIC)
            while True:
                if pos == size:
                    raise self._error(TruncatedBagError, pos, "file ends without a DataEnd/Footer record "
                                      "(recording interrupted?)")
                if pos + 9 > size:
                    raise self._error(TruncatedBagError, pos, "file ends inside a record header")
                opcode, length = struct.unpack("<BQ", f.read(9))
                name = _NAMES.get(opcode, f"opcode {opcode:#04x}")
                if opcode == 0:
                    raise self._error(CorruptBagError, pos, "invalid record opcode 0x00")
                if length > self.max_record_bytes:
                    raise self._error(CorruptBagError, pos, f"{name} record claims {length} bytes (cap "
                                      f"{self.max_record_bytes})")
                if pos + 9 + length > size:
                    raise self._error(TruncatedBagError, pos, f"file ends inside a {name} record ({length} bytes "
                                      f"announced, {size - pos - 9} present)")
                if opcode in (OP_DATA_END, OP_FOOTER):
                    self.complete = True
                    return
                body = f.read(length)
                if opcode == OP_CHUNK:
                    yield from self._chunk(body, pos)
                    self.chunks_read += 1
                else:
                    message = self._record(opcode, body, pos)
                    if message is not None:
                        self.messages_read += 1
                        yield message
                pos += 9 + length

    def _record(self, opcode: int, body: bytes | memoryview, offset: int) -> BagMessage | None:
        """Parse one (top-level or chunked) record; returns the message for Message records."""
        r = _Fields(body, offset, _NAMES.get(opcode, "unknown"))
        if opcode == OP_HEADER:
            self.profile, self.library = r.string(), r.string()
        elif opcode == OP_SCHEMA:
            schema = Schema(r.u16(), r.string(), r.string(), r.blob32())
            self.schemas[schema.id] = schema
        elif opcode == OP_CHANNEL:
            cid, sid, topic, encoding = r.u16(), r.u16(), r.string(), r.string()
            self.channels[cid] = Channel(cid, sid, topic, encoding, r.string_map())
        elif opcode == OP_METADATA:
            name = r.string()
            self.metadata[name] = r.string_map()
        elif opcode == OP_MESSAGE:
            cid, seq, log_time, publish_time = r.u16(), r.u32(), r.u64(), r.u64()
            channel = self.channels.get(cid)
            if channel is None:
                raise self._error(CorruptBagError, offset, f"message on unknown channel {cid}")
            return BagMessage(channel, self.schemas.get(channel.schema_id), seq, log_time, publish_time, r.rest(),
                              offset)
        return None  # indexes, statistics, attachments, unknown opcodes: not needed for replay

    def _chunk(self, body: bytes, offset: int) -> Iterator[BagMessage]:
        r = _Fields(body, offset, "Chunk")
        r.u64(), r.u64()  # message start / end time
        uncompressed_size, crc = r.u64(), r.u32()
        compression = r.string()
        n = r.u64()
        if n > len(body) - r.pos:
            raise self._error(CorruptBagError, offset, f"Chunk announces {n} compressed bytes, "
                              f"{len(body) - r.pos} present")
        if uncompressed_size > self.max_record_bytes:
            raise self._error(CorruptBagError, offset, f"Chunk claims {uncompressed_size} uncompressed bytes (cap "
                              f"{self.max_record_bytes})")
        data = self._decompress(compression, bytes(r._take(n)), uncompressed_size, offset)
        if crc != 0 and zlib.crc32(data) != crc:
            raise self._error(CorruptBagError, offset, f"Chunk CRC mismatch (stored {crc:#010x}, contents "
                              f"{zlib.crc32(data):#010x})")
        view, pos, parsed = memoryview(data), 0, []
        while pos < len(view):
            if pos + 9 > len(view):
                raise self._error(CorruptBagError, offset, f"Chunk ends inside a record header at chunk byte {pos}")
            opcode, length = struct.unpack_from("<BQ", view, pos)
            if length > len(view) - pos - 9:
                raise self._error(CorruptBagError, offset, f"record at chunk byte {pos} runs past the chunk")
            parsed.append((opcode, view[pos + 9:pos + 9 + length]))
            pos += 9 + length
        for opcode, rec in parsed:
            message = self._record(opcode, rec, offset)
            if message is not None:
                self.messages_read += 1
                yield message

    def _decompress(self, compression: str, data: bytes, size: int, offset: int) -> bytes:
        """Decompress into at most ``size`` (+1 to detect overrun) bytes, in steps of at most 1 MiB, so that memory
        follows the output actually produced, not the size the header claims; the result must have ``size`` bytes."""
        step = 1 << 20
        try:
            if compression == "":
                out = data
            elif compression == "zstd":
                import zstandard

                grown = bytearray()
                with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                    while len(grown) <= size and (piece := reader.read(min(step, size + 1 - len(grown)))):
                        grown += piece
                out = bytes(grown)
            elif compression == "lz4":
                import lz4.frame

                grown = bytearray()
                decompressor = lz4.frame.LZ4FrameDecompressor()
                piece = decompressor.decompress(data, max_length=min(step, size + 1))
                grown += piece
                while piece and len(grown) <= size and not decompressor.eof:
                    piece = decompressor.decompress(b"", max_length=min(step, size + 1 - len(grown)))
                    grown += piece
                out = bytes(grown)
            else:
                raise self._error(CorruptBagError, offset, f"unsupported chunk compression {compression!r}")
        except TruncatedBagError:
            raise
        except Exception as exc:  # zstd/lz4 errors: corrupt compressed data
            raise self._error(CorruptBagError, offset, f"Chunk does not decompress ({compression}: {exc})") from None
        if len(out) != size:
            got = f"more than {size}" if len(out) > size else str(len(out))
            raise self._error(CorruptBagError, offset, f"Chunk decompresses to {got} bytes, header says {size}")
        return out


def bag_files(path: str | os.PathLike[str]) -> list[Path]:
    """The MCAP files of a bag: ``path`` itself, or a rosbag2 directory's files (``metadata.yaml``'s
    ``relative_file_paths``, else every ``*.mcap`` in it, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BagError(f"{path}: no such bag file or directory")
    meta = path / "metadata.yaml"
    if meta.is_file():
        import yaml

        try:
            info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
            names = [str(p) for p in info.get("relative_file_paths", [])]
        except (yaml.YAMLError, AttributeError) as exc:
            raise BagError(f"{meta}: not a rosbag2 metadata file ({exc})") from None
        files = [path / n for n in names if (path / n).is_file()]
        if files:
            return files
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"{path}: no .mcap file in this directory")
    return files


# ------------------------------------------------------------------------------------------------- decoding
_decoders: dict[tuple[str, bytes], Any] = {}


def decode_cdr(schema: Schema | None, channel: Channel, data: bytes, offset: int = 0) -> Any:
    """Decode a CDR message with the ``ros2msg`` schema stored in the file (no ROS needed). The result has the
    message's fields as attributes (``uint8[]`` as bytes, arrays as lists)."""
    if schema is None or schema.encoding != "ros2msg" or channel.message_encoding != "cdr":
        raise BagError(f"topic {channel.topic}: cannot decode message encoding {channel.message_encoding!r} with "
                       f"schema encoding {schema.encoding if schema else None!r} (need cdr + ros2msg)")
    key = (schema.name, schema.data)
    decoder = _decoders.get(key)
    if decoder is None:
        from mcap_ros2._dynamic import generate_dynamic

        try:
            decoder = generate_dynamic(schema.name, schema.data.decode("utf-8"))[schema.name]
        except Exception as exc:
            raise CorruptBagError(f"schema {schema.name!r} (topic {channel.topic}) cannot be parsed: {exc}",
                                  offset) from None
        _decoders[key] = decoder
    try:
        return decoder(data)
    except Exception as exc:
        raise CorruptBagError(f"message on {channel.topic} in the record at byte {offset} is not valid CDR for "
                              f"{schema.name}: {type(exc).__name__}: {exc}", offset) from None


def robot_of(topic: str) -> str:
    """The robot namespace of a ``<ns>/ladon/features`` topic (``/`` for the root namespace)."""
    ns = topic[:-len(FEATURES_SUFFIX)] if topic.endswith(FEATURES_SUFFIX) else topic
    return ns.rstrip("/") or "/"


# ------------------------------------------------------------------------------------------------- definitions
_PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                         "uint32", "int64", "uint64", "string", "wstring"})
_FIELD_TYPE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+")
_TYPE_NAME = re.compile(r"^([a-zA-Z0-9_]+)/(?:msg/)?([a-zA-Z0-9_]+)$")
MAX_DEFINITION_DEPTH = 50


def message_definition(type_name: str, read_msg: Callable[[str, str], str]) -> str:
    """The full ``ros2msg`` text of ``type_name`` as rosbag2 stores it in an MCAP schema: the type's ``.msg`` file,
    then each dependency (sorted, depth first, each once) after a line of 80 ``=`` and ``MSG: pkg/Name``.
    ``read_msg(package, name)`` returns a ``.msg`` file's text."""
    seen: set[str] = set()

    def expand(name: str, depth: int) -> str:
        if depth <= 0:
            raise BagError(f"message definition of {type_name} nests deeper than {MAX_DEFINITION_DEPTH} levels")
        match = _TYPE_NAME.match(name)
        if match is None:
            raise BagError(f"message type name {name!r} is not package/[msg/]Name")
        package, short = match.groups()
        text = read_msg(package, short)
        deps = set()
        for field_type in _FIELD_TYPE.findall(text):
            if field_type in _PRIMITIVES:
                continue
            deps.add(field_type if "/" in field_type else f"{package}/{field_type}")
        for dep in sorted(deps):
            if dep not in seen:
                seen.add(dep)
                text += "\n" + "=" * 80 + "\nMSG: " + dep + "\n" + expand(dep, depth - 1)
        return text

    return expand(type_name, MAX_DEFINITION_DEPTH)


# ------------------------------------------------------------------------------------------------- writing
@dataclasses.dataclass
class TopicInfo:
    """What the bag records about one topic (rosbag2 ``topic_metadata`` + its message count)."""

    name: str
    type: str
    definition: str
    type_hash: str = ""
    offered_qos: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    serialization_format: str = "cdr"
    message_count: int = 0
    channel_id: int = -1


class _GuardedFile:
    """Unbuffered output that writes every byte or raises, and remembers where the last complete write ended."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.position = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            n = os.write(self.fd, view[done:])
            if n <= 0:
                raise OSError(28, "no space left on device")
            done += n
            self.position += n
        return done

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.lseek(self.fd, size, os.SEEK_SET)
        self.position = size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


INFINITE_DURATION = {"sec": 9223372036, "nsec": 854775807}
"""RMW_DURATION_INFINITE as rosbag2 writes it."""
QOS_DEFAULTS: dict[str, Any] = {"history": "unknown", "depth": 0, "reliability": "reliable", "durability": "volatile",
                                "deadline": INFINITE_DURATION, "lifespan": INFINITE_DURATION, "liveliness": "automatic",
                                "liveliness_lease_duration": INFINITE_DURATION,
                                "avoid_ros_namespace_conventions": False}
"""Every key of a rosbag2 (version 9) QoS profile; missing keys of a given profile are filled from here."""


def full_qos(profile: dict[str, Any]) -> dict[str, Any]:
    """``profile`` with every rosbag2 QoS key, in rosbag2's order (readers such as rosbags require all of them)."""
    unknown = set(profile) - set(QOS_DEFAULTS)
    if unknown:
        raise BagError(f"unknown QoS keys {sorted(unknown)}; expected {list(QOS_DEFAULTS)}")
    return {key: profile.get(key, default) for key, default in QOS_DEFAULTS.items()}


def qos_yaml(profiles: list[dict[str, Any]]) -> str:
    """rosbag2 (metadata version 9) string form of ``offered_qos_profiles`` (stored in MCAP channel metadata)."""
    import yaml

    return yaml.safe_dump(profiles, sort_keys=False, default_flow_style=False) if profiles else "[]\n"


class BagWriter:
    """Writes a rosbag2 bag directory holding one MCAP file (see the module docstring). Use as a context manager,
    or call :meth:`close`."""

    def __init__(self, directory: str | os.PathLike[str], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 compression: str = "zstd", ros_distro: str = "kilted") -> None:
        from mcap.writer import CompressionType, Writer

        self.directory = Path(directory)
        if self.directory.exists():
            raise BagError(f"{self.directory}: output bag already exists")
        self.directory.mkdir(parents=True)
        self.file_name = f"{self.directory.name}_0.mcap"
        self.path = self.directory / self.file_name
        self.ros_distro = ros_distro
        self.topics: dict[str, TopicInfo] = {}
        self.start_ns: int | None = None
        self.end_ns = 0
        self.closed = False
        self._schemas: dict[str, int] = {}
        self._stream = _GuardedFile(self.path)
        self._write_metadata_file(reserve=METADATA_RESERVE)  # placeholder: the space for the final one
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in kind:
            raise BagError(f"compression must be one of {sorted(kind)}, got {compression!r}")
        self._writer = Writer(self._stream, chunk_size=chunk_size, compression=kind[compression])  # type: ignore[arg-type]
        self._guard(lambda: self._writer.start(profile="ros2", library=f"ladon {_version()}"))

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()

    @property
    def message_count(self) -> int:
        return sum(t.message_count for t in self.topics.values())

    @property
    def bytes_written(self) -> int:
        return self._stream.position

    def add_topic(self, topic: TopicInfo) -> None:
        """Register a topic (schema ``topic.type`` with ``topic.definition`` text, ``cdr`` channel)."""
        if topic.name in self.topics:
            return
        topic.offered_qos = [full_qos(q) for q in topic.offered_qos]
        schema_id = self._schemas.get(topic.type)
        if schema_id is None:
            schema_id = self._guard(lambda: self._writer.register_schema(topic.type, "ros2msg",
                                                                         topic.definition.encode("utf-8")))
            self._schemas[topic.type] = schema_id
        metadata = {"offered_qos_profiles": qos_yaml(topic.offered_qos), "topic_type_hash": topic.type_hash}
        topic.channel_id = self._guard(lambda: self._writer.register_channel(topic.name, topic.serialization_format,
                                                                            schema_id, metadata))
        self.topics[topic.name] = topic

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Append one serialized message (``log_time_ns``: receive time, like rosbag2's recv_timestamp)."""
        info = self.topics.get(topic)
        if info is None:
            raise BagError(f"topic {topic} was not added to the bag (add_topic first)")
        self._guard(lambda: self._writer.add_message(info.channel_id, log_time_ns, data,
                                                     log_time_ns if publish_time_ns is None else publish_time_ns,
                                                     info.message_count))
        info.message_count += 1
        self.start_ns = log_time_ns if self.start_ns is None else min(self.start_ns, log_time_ns)
        self.end_ns = max(self.end_ns, log_time_ns)

    def _guard(self, action: Any) -> Any:
        if self.closed:
            raise BagError(f"{self.path}: bag is closed")
        try:
            return action()
        except OSError as exc:
            raise self._salvage(exc) from exc

    def close(self) -> None:
        """Finish the MCAP file (rosbag2 metadata record, summary, footer) and write ``metadata.yaml``."""
        if self.closed:
            return
        self._guard(lambda: self._writer.add_metadata("rosbag2", {"serialized_metadata": self._metadata_yaml()}))
        self._guard(self._writer.finish)
        self.closed = True
        self._stream.close()
        self._write_metadata_file()

    def _salvage(self, exc: OSError) -> BagWriteError:
        """After a failed write: cut the file back to its last complete record, end it with DataEnd + summary
        (schemas, channels, statistics) + footer when there is room, close it and write ``metadata.yaml``."""
        from mcap.data_stream import RecordBuilder
        from mcap.records import Channel as McapChannel
        from mcap.records import DataEnd, Footer, Metadata, Statistics
        from mcap.records import Schema as McapSchema

        self.closed = True
        kept = 0
        try:
            self._stream.truncate(self._last_boundary())
            scanner = McapScanner(self.path)
            counts: dict[int, int] = {}
            times: list[int] = []
            try:
                for m in scanner.messages():
                    counts[m.channel.id] = counts.get(m.channel.id, 0) + 1
                    times.append(m.log_time)
            except TruncatedBagError:
                pass
            kept = sum(counts.values())
            for info in self.topics.values():
                info.message_count = counts.get(info.channel_id, 0)
            self.start_ns = min(times) if times else None
            self.end_ns = max(times) if times else 0
            end = self._stream.position
            full = RecordBuilder()
            Metadata(name="rosbag2", metadata={"serialized_metadata": self._metadata_yaml()}).write(full)
            DataEnd(0).write(full)
            summary_start = end + full.count
            for s in scanner.schemas.values():
                McapSchema(id=s.id, name=s.name, encoding=s.encoding, data=s.data).write(full)
            for c in scanner.channels.values():
                McapChannel(id=c.id, topic=c.topic, message_encoding=c.message_encoding, metadata=c.metadata,
                            schema_id=c.schema_id).write(full)
            Statistics(attachment_count=0, channel_count=len(scanner.channels), channel_message_counts=counts,
                       chunk_count=scanner.chunks_read, message_count=kept,
                       message_end_time=self.end_ns, message_start_time=self.start_ns or 0, metadata_count=1,
                       schema_count=len(scanner.schemas)).write(full)
            Footer(summary_start=summary_start, summary_offset_start=0, summary_crc=0).write(full)
            minimal = RecordBuilder()  # ~50 bytes: DataEnd + Footer without summary
            DataEnd(0).write(minimal)
            Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(minimal)
            for trailer in (full.end(), minimal.end()):
                try:
                    self._stream.write(trailer + MAGIC)
                    break
                except OSError:
                    self._stream.truncate(end)  # no room for it: readable up to here all the same
        except OSError:
            pass
        finally:
            self._stream.close()
        try:
            self._write_metadata_file()
        except OSError:
            pass
        return BagWriteError(f"{self.path}: writing failed ({exc.strerror or exc}); the file was closed with "
                             f"{kept} complete message(s) ({self._stream.position} bytes)")

    def _last_boundary(self) -> int:
        """End of the last record the file holds completely (the MCAP writer writes whole records per call)."""
        end = len(MAGIC)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if f.read(len(MAGIC)) != MAGIC:
                    return 0
                pos = len(MAGIC)
                while pos + 9 <= size:
                    _, length = struct.unpack("<BQ", f.read(9))
                    if pos + 9 + length > size:
                        break
                    f.seek(length, os.SEEK_CUR)
                    pos += 9 + length
                end = pos
        except OSError:
            pass
        return end

    def _metadata(self) -> dict[str, Any]:
        start = self.start_ns or 0
        duration = (self.end_ns - start) if self.start_ns is not None else 0
        count = self.message_count
        topics = [{"topic_metadata": {"name": t.name, "type": t.type,
                                      "serialization_format": t.serialization_format,
                                      "offered_qos_profiles": t.offered_qos, "type_description_hash": t.type_hash},
                   "message_count": t.message_count} for t in self.topics.values()]
        return {"version": ROSBAG2_VERSION, "storage_identifier": "mcap",
                "duration": {"nanoseconds": duration}, "starting_time": {"nanoseconds_since_epoch": start},
                "message_count": count, "topics_with_message_count": topics,
                "compression_format": "", "compression_mode": "",
                "relative_file_paths": [self.file_name],
                "files": [{"path": self.file_name, "starting_time": {"nanoseconds_since_epoch": start},
                           "duration": {"nanoseconds": duration}, "message_count": count}],
                "custom_data": {}, "ros_distro": self.ros_distro}

    def _metadata_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self._metadata(), sort_keys=False)

    def _write_metadata_file(self, reserve: int = 0) -> None:
        """Write ``metadata.yaml``. Overwritten in place within the space reserved when the bag was created (so a
        full disk cannot leave it empty); a larger file goes through a temporary file and a rename."""
        import yaml

        data = yaml.safe_dump({"rosbag2_bagfile_information": self._metadata()}, sort_keys=False).encode()
        if reserve > len(data):  # padding: one YAML comment line
            data += b"#" + b" " * (reserve - len(data) - 2) + b"\n"
        path = self.directory / "metadata.yaml"
        reserved = path.stat().st_size if path.exists() else 0
        if len(data) <= reserved:
            fd = os.open(path, os.O_WRONLY)
            try:
                done = 0
                while done < len(data):
                    done += os.pwrite(fd, data[done:], done)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
            return
        tmp = path.with_name(".metadata.yaml.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _version() -> str:
    from ._version import __version__

    return __version__
