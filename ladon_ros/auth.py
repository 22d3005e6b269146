"""Node wiring of application-level packet authentication (:mod:`ladon.auth`): parameters and checks.

Encoder node (robot): ``auth.key_file`` (empty = off) and ``auth.key_id`` (empty = the file name without
``.key``) -> :func:`declare_signer_parameters` (declare) and :func:`load_signer` (configure).

Server node: ``auth.keys_dir`` (empty = off; one ``<key_id>.key`` per robot), ``auth.required`` (reject untagged
packets; default true) and ``auth.bind_robot`` (a robot may only sign with the key named after its namespace,
``/fleet/robot1`` -> ``fleet.robot1``; default true) -> :func:`declare_verifier`, whose
:meth:`FeaturesAuthenticator.check` the features callback calls right after ``msg_to_packet`` and before queueing.
"""

from __future__ import annotations

from rclpy.node import Node

from ladon.auth import Signer, Verifier
from ladon.packet import Packet
from ladon_ros.params import declare


def robot_key_id(robot_name: str) -> str | None:
    """The key id a robot must sign with when keys are bound to robots: its namespace without the leading
    slash, inner slashes as dots (``/fleet/robot1`` -> ``fleet.robot1``); ``None`` for the root namespace."""
    key_id = robot_name.strip("/").replace("/", ".")
    return key_id or None


class FeaturesAuthenticator:
    """What a server node calls per received packet: verify (or raise an ``AuthenticationError``)."""

    def __init__(self, verifier: Verifier, *, bind_robot: bool = True) -> None:
        self.verifier = verifier
        self.bind_robot = bool(bind_robot)

    def check(self, robot_name: str, packet: Packet) -> Packet:
        """Return ``packet`` if authentic for ``robot_name``; raise an ``AuthenticationError`` subclass if not."""
        allowed = None
        if self.bind_robot:
            key_id = robot_key_id(robot_name)
            allowed = None if key_id is None else (key_id,)
        return self.verifier.verify(packet, allowed_key_ids=allowed)


def declare_signer_parameters(node: Node) -> tuple[str, str]:
    """Declare the robot's ``auth.key_file`` / ``auth.key_id`` (a lifecycle node's declare step)."""
    key_file = declare(node, "auth.key_file", "", "HMAC-SHA256 key file (hex, mode 0600) to sign every packet "
                       "with; empty = packets are not authenticated")
    key_id = declare(node, "auth.key_id", "", "Key id sent with each signed packet (empty = key file name "
                     "without .key); the server looks the key up by it")
    return key_file, key_id


def load_signer(node: Node, key_file: str, key_id: str) -> Signer | None:
    """Load the robot's key (a lifecycle node's configure step); ``None`` when ``key_file`` is empty."""
    if not key_file:
        return None
    signer = Signer.from_file(key_file, key_id or None)
    node.get_logger().info(f"signing packets with key id {signer.key_id!r}")
    return signer


def declare_signer(node: Node) -> Signer | None:
    """Declare the signer parameters and load the key at once (plain nodes)."""
    return load_signer(node, *declare_signer_parameters(node))


def declare_verifier_parameters(node: Node) -> tuple[str, bool, bool]:
    """Declare ``auth.keys_dir`` / ``auth.required`` / ``auth.bind_robot`` (a lifecycle node's declare step)."""
    keys_dir = declare(node, "auth.keys_dir", "", "Directory of <key_id>.key files (hex, mode 0600) to verify "
                       "packets with; empty = no authentication")
    required = declare(node, "auth.required", True, "Reject packets without an HMAC tag (false: accept them "
                       "unchecked, check tagged ones)")
    bind_robot = declare(node, "auth.bind_robot", True, "A robot may only sign with the key named after its "
                         "namespace (/fleet/robot1 -> fleet.robot1.key)")
    return keys_dir, required, bind_robot


def declare_verifier(node: Node) -> FeaturesAuthenticator | None:
    """Declare the verifier parameters and load the keys at once (plain nodes); ``None`` when off."""
    return load_verifier(node, *declare_verifier_parameters(node))


def load_verifier(node: Node, keys_dir: str, required: bool, bind_robot: bool) -> FeaturesAuthenticator | None:
    """Load the robots' keys (a lifecycle node's configure step); ``None`` when ``keys_dir`` is empty."""
    if not keys_dir:
        return None
    authenticator = FeaturesAuthenticator(Verifier.from_dir(keys_dir, required=required), bind_robot=bind_robot)
    node.get_logger().info(f"verifying packets: {len(authenticator.verifier.key_ids)} keys from {keys_dir}, "
                           f"required={required}, bind_robot={bind_robot}")
    return authenticator
