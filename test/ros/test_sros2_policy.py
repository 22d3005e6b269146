"""The shipped SROS2 policy (``config/sros2/ladon_policy.xml``): valid against the SROS2 policy schema (vendored
from ros2/sros2, ``third_party/sros2_schema``), generated from ``ladon_ros.topics``, and least-privilege."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ladon.errors import UsageError
from ladon_ros import sros2_policy, topics

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "config" / "sros2" / "ladon_policy.xml"
SCHEMA_DIR = REPO / "third_party" / "sros2_schema"


class _LocalXmlXsd(etree.Resolver):
    """policy.xsd imports http://www.w3.org/2001/03/xml.xsd: serve sros2's cached copy (no network)."""

    def resolve(self, url, pubid, context):
        if url and url.endswith("xml.xsd"):
            return self.resolve_filename(str(SCHEMA_DIR / "xml.xsd"), context)
        return None


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    parser.resolvers.add(_LocalXmlXsd())
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "policy.xsd"), parser))


def _allowed(doc, enclave: str, node: str, kind: str) -> set[str]:
    profile = doc.xpath(f"/policy/enclaves/enclave[@path='{enclave}']/profiles/profile[@node='{node}']")[0]
    return {t.text for t in profile.xpath(f"topics[@{kind}='ALLOW']/topic")}


def test_shipped_policy_is_valid_against_the_sros2_schema(schema):
    doc = etree.parse(str(POLICY))
    schema.assertValid(doc)
    assert doc.getroot().get("version") == "0.2.0"


def test_shipped_policy_is_what_the_generator_writes():
    assert POLICY.read_text() == sros2_policy.policy_xml(["robot1", "robot2"])


def test_schema_rejects_broken_policies(schema):
    """The validation can fail: wrong version, a profile without ns, an unknown rule qualifier."""
    good = sros2_policy.policy_xml(["robot1"])
    for bad in (good.replace('version="0.2.0"', 'version="0.1.0"'),
                good.replace(' ns="/robot1" node="ladon_encoder"', ' node="ladon_encoder"'),
                good.replace('publish="ALLOW"', 'publish="MAYBE"', 1),
                good.replace("<enclaves>", "<enclaves><enclave path='/x'/>")):
        assert not schema.validate(etree.fromstring(bad.encode()))


def test_least_privilege_per_enclave():
    doc = etree.fromstring(sros2_policy.policy_xml(["robot1", "fleet/robot2"]).encode())
    assert {e.get("path") for e in doc.xpath("//enclave")} == {"/ladon/robot1", "/ladon/fleet/robot2",
                                                               "/ladon/server"}
    enc = _allowed(doc, "/ladon/robot1", "ladon_encoder", "publish")
    assert topics.FEATURES in enc and not any("robot2" in t or t in topics.OUTPUT_TOPICS.values() for t in enc)
    assert _allowed(doc, "/ladon/robot1", "ladon_encoder", "subscribe") >= {topics.IMAGE, "image/compressed"}
    server_pub = _allowed(doc, "/ladon/server", "ladon_server", "publish")
    server_sub = _allowed(doc, "/ladon/server", "ladon_server", "subscribe")
    for ns in ("/robot1", "/fleet/robot2"):
        assert f"{ns}/{topics.FEATURES}" in server_sub and f"{ns}/{topics.FEATURES}" not in server_pub
        assert {f"{ns}/{t}" for t in topics.OUTPUT_TOPICS.values()} <= server_pub
        assert {f"{ns}/{t}" for t in (topics.OVERLAY, topics.RESULTS, topics.PARTIAL, topics.FEATURES_ACK,
                                      "ladon/segmentation/compressed")} <= server_pub
    assert topics.FEATURES_ACK in _allowed(doc, "/ladon/robot1", "ladon_encoder", "subscribe")
    relay_pub = _allowed(doc, "/ladon/robot1", "ladon_results_relay", "publish")
    relay_sub = _allowed(doc, "/ladon/robot1", "ladon_results_relay", "subscribe")
    assert topics.RESULTS in relay_sub and "ladon/detections/label_info" in relay_sub
    assert {"ladon/relayed/detections", "ladon/relayed/segmentation/compressed",
            "ladon/relayed/detections/label_info"} <= relay_pub
    # the relay never publishes the server's own topic names (a robot-side subscriber would get duplicates)
    assert not relay_pub & {*topics.OUTPUT_TOPICS.values(), topics.RESULTS, topics.FEATURES}
    (profile,) = doc.xpath("//enclave[@path='/ladon/fleet/robot2']/profiles/profile[@node='ladon_encoder']")
    assert profile.get("ns") == "/fleet/robot2"
    # every topic outside the node's namespace is absolute (sros2 prefixes relative names with the profile's ns)
    assert "/rosout" in enc and "/diagnostics" in enc
    assert all(t.startswith(("/", "~/")) for t in server_pub | server_sub)
    assert {p.get("ns") for p in doc.xpath("//enclave[@path='/ladon/server']/profiles/profile")} == {
        "/", "/robot1", "/fleet/robot2"}


@pytest.mark.parametrize("robots", [[], ["robot1", "robot1"], ["bad ns"], ["1robot"], [""], ["a//b"]])
def test_generator_refuses_bad_robot_lists(robots):
    with pytest.raises(UsageError):
        sros2_policy.policy_xml(robots)


_SECURE_NODE = """
import rclpy
from rclpy.node import Node
rclpy.init()
try:
    Node("ladon_secure_probe")
except Exception as exc:
    print("REFUSED:", type(exc).__name__, str(exc).splitlines()[0][:200])
else:
    print("CREATED")
"""


def test_security_enabled_with_a_bad_keystore_fails_closed(tmp_path):
    """ROS_SECURITY_ENABLE=true + Enforce never yields an unsecured node: here (PyPI Fast DDS built without
    security, probe D3) node creation fails; on a security-enabled DDS the garbage keystore fails the same way."""
    import os
    import subprocess
    import sys

    enclave = tmp_path / "keystore" / "enclaves" / "ladon" / "robot1"
    enclave.mkdir(parents=True)
    for name in ("identity_ca.cert.pem", "cert.pem", "key.pem", "permissions_ca.cert.pem", "governance.p7s",
                 "permissions.p7s"):
        (enclave / name).write_text("not a certificate\n")
    env = dict(os.environ, ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce",
               ROS_SECURITY_KEYSTORE=str(tmp_path / "keystore"), ROS_SECURITY_ENCLAVE_OVERRIDE="/ladon/robot1",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID="147", ROS_LOG_DIR=str(tmp_path / "log"))
    proc = subprocess.run([sys.executable, "-c", _SECURE_NODE], env=env, capture_output=True, text=True, timeout=60)
    assert "REFUSED" in proc.stdout, proc.stdout + proc.stderr
