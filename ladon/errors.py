"""Typed errors raised by the Ladon library.

Every error derives from :class:`LadonError` (itself a ``ValueError`` so that callers who only know "bad input"
can still catch it). Messages say what was received and what was expected.
"""

from __future__ import annotations


class LadonError(ValueError):
    """Base class of every error raised for bad input, packets, models or checkpoints."""


# --- images --------------------------------------------------------------------------------------------------
class InvalidImageError(LadonError):
    """An input image has an unsupported type, dtype, layout or size."""


class ImageTooLargeError(InvalidImageError):
    """An input image exceeds the configured pixel or side-length cap."""


# --- packets -------------------------------------------------------------------------------------------------
class PacketError(LadonError):
    """A serialized packet could not be parsed or failed validation."""


class TruncatedPacketError(PacketError):
    """The byte string ends before the packet does."""


class BadMagicError(PacketError):
    """The byte string does not start with the Ladon packet magic number."""


class UnsupportedVersionError(PacketError):
    """The packet format version or codec version is not supported by this build."""


class ChecksumError(PacketError):
    """The CRC32 stored in the packet does not match its contents."""


class PacketLimitError(PacketError):
    """A header field (latent dims, payload size, image size, string length) exceeds a safety cap."""


class MessageTooLargeError(PacketLimitError):
    """A transport message is larger than the configured cap; refused before it is deserialised."""


class InconsistentPacketError(PacketError):
    """Header fields contradict each other or the serving model's geometry."""


class CorruptPayloadError(PacketError):
    """The entropy-coded payload decoded to values that no encoder of this model can produce."""


class GroupError(PacketError):
    """A channel-group packet (format version 2) cannot be used to rebuild its frame (:mod:`ladon.reassembly`)."""


class DuplicateGroupError(GroupError):
    """The same group of a frame arrived twice."""


class LateGroupError(GroupError):
    """A group arrived after its frame was completed, expired or evicted."""


class InconsistentGroupError(GroupError, InconsistentPacketError):
    """Groups of one frame contradict each other (count, shape, geometry, model, overlapping or missing channels)."""


# --- results -------------------------------------------------------------------------------------------------
class ResultsMessageError(LadonError):
    """A compact results message (all outputs of one frame, ``ladon_msgs/FrameResults``) is malformed: array lengths
    that do not match, non-finite values, output flags that contradict the fields."""


# --- authentication ------------------------------------------------------------------------------------------
class AuthenticationError(LadonError):
    """A packet failed application-level authentication (HMAC-SHA256, see :mod:`ladon.auth`)."""


class MissingTagError(AuthenticationError):
    """Authentication is required but the packet carries no HMAC trailer."""


class UnknownKeyError(AuthenticationError):
    """The packet names a key id the verifier does not hold, or one not allowed for its sender."""


class TagMismatchError(AuthenticationError):
    """The packet's HMAC tag does not match its bytes under the named key (tampered, or the wrong key)."""


class KeyFileError(LadonError):
    """A key file or key directory cannot be read or does not hold a valid key."""


class InsecureKeyFileError(KeyFileError):
    """A key file (or its directory) is accessible to group/other, not a regular file, or owned by someone else."""


# --- model compatibility -------------------------------------------------------------------------------------
class ModelMismatchError(LadonError):
    """A packet was produced by a different encoder (model hash) than the serving model."""


class BetaMismatchError(ModelMismatchError):
    """A packet's rate weight beta differs from the serving model's beta."""


class UnknownTaskError(LadonError):
    """A requested task is not one of classification / detection / segmentation, or the model lacks its head."""


# --- files ---------------------------------------------------------------------------------------------------
class CheckpointError(LadonError):
    """A checkpoint or model file cannot be read, is of the wrong kind, or does not match the architecture."""


class StateDictMismatchError(CheckpointError):
    """Missing, unexpected or wrongly shaped keys when loading weights (always fatal: no silent strict=False)."""

    def __init__(
        self,
        source: str,
        missing: list[str] | tuple[str, ...] = (),
        unexpected: list[str] | tuple[str, ...] = (),
        mismatched: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        parts = [f"weights from {source} do not match the model architecture:"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"  {label} ({len(keys)}): {shown}")
        super().__init__("\n".join(parts))


# --- command line --------------------------------------------------------------------------------------------
class UsageError(LadonError):
    """A command-line usage problem detected after argument parsing."""


# --- robot bundles (ladon export-encoder / ladon_robot) --------------------------------------------------------
class BundleError(CheckpointError):
    """A robot bundle (exported encoder directory) is missing, malformed or unusable."""


class BundleIntegrityError(BundleError):
    """A bundle file is truncated or was modified after export (its SHA-256 differs from the manifest)."""


class BundleMismatchError(BundleError, ModelMismatchError):
    """A bundle was exported from a different model than the one expected (model id, hash or beta)."""


class ImageSizeMismatchError(InvalidImageError):
    """An image's size differs from the fixed input size of the loaded robot bundle."""


class EntropyCodingError(LadonError):
    """Symbols or CDF tables cannot be entropy-coded (index out of range, bad table, value too far out)."""


class OutputExistsError(UsageError):
    """An output file already exists and ``--force`` was not given (earlier results are never silently lost)."""


class UnsafeOutputError(UsageError):
    """An output name would leave its output directory (a path separator, ``..``) or is not a plain file/folder."""


# --- recorded bags (MCAP) ------------------------------------------------------------------------------------
class BagError(LadonError):
    """A recorded bag (MCAP file / rosbag2 directory) cannot be read or written."""


class TruncatedBagError(BagError):
    """The MCAP file ends inside a record (or before its footer); ``offset`` is where the incomplete part starts and
    ``messages_read`` how many messages were read before it."""

    def __init__(self, message: str, offset: int, messages_read: int = 0) -> None:
        super().__init__(message)
        self.offset = offset
        self.messages_read = messages_read


class CorruptBagError(TruncatedBagError):
    """A record of the MCAP file is malformed (bad magic, impossible length, CRC mismatch, undecodable message)."""


class NoFeaturesError(BagError):
    """The bag holds no ``ladon_msgs/msg/CompressedFeatures`` topic (or none of the requested topics)."""


class BagWriteError(BagError):
    """Writing a bag failed (e.g. disk full); the file was closed and holds every complete chunk before it."""
