# Copyright (c) ingress.haproxy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""haproxy_ssl_cert masks its no_log values in one pass: the same output as Ansible's, keys never shown."""

from __future__ import annotations

import datetime

from ansible.module_utils.common.parameters import remove_values
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.ingress.haproxy.plugins.modules.haproxy_ssl_cert import (
    NO_LOG_PLACEHOLDER,
    _without_secrets,
)
from ansible_collections.ingress.haproxy.tests.unit.plugins.module_runner import run_module


def _bundle(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key_pem, key_pem


def test_masking_matches_ansibles_remove_values():
    secrets = {"-----BEGIN PRIVATE KEY-----\nsecret-%d\n-----END PRIVATE KEY-----\n" % number for number in range(50)}
    secret = sorted(secrets)[7]
    result = {
        "changed": True,
        "msg": "content was %s here" % secret,
        "certificates": [{"path": "/c/%d.pem" % number, "changed": number % 2 == 0, "retries": number,
                          "before": None, "after": {"names": ["a.test", secret], "serial": "0A"}}
                         for number in range(20)],
        "invocation": {"module_args": {"content": secret, "certificates": [{"content": secret, "path": "/c"}],
                                       "timeout": 10.0, "force": False}},
    }
    ours = _without_secrets(result, secrets, min(len(item) for item in secrets))
    assert ours == remove_values(result, secrets)
    assert ours["invocation"]["module_args"]["content"] == NO_LOG_PLACEHOLDER
    assert ours["msg"] == "content was ******** here"
    assert secret not in repr(ours)


def test_no_key_in_any_output_of_a_bulk_call(tmp_path):
    """A bulk call that fails on its last bundle: neither the result nor the invocation shows a key line."""
    bundles = [_bundle("bulk%d.test" % number) for number in range(30)]
    bad_key = bundles[-1][1]
    certificates = [{"path": "/etc/haproxy/certs/%d.pem" % number, "content": text}
                    for number, (text, dummy_key) in enumerate(bundles[:-1])]
    certificates.append({"path": "/etc/haproxy/certs/keyonly.pem", "content": bad_key})
    result = run_module("haproxy_ssl_cert", {"endpoint": "127.0.0.1:9", "certificates": certificates,
                                             "_ansible_inject_invocation": True}, tmp_path)
    assert result["failed"] is True and "/etc/haproxy/certs/keyonly.pem" in result["msg"]
    assert "nothing was sent" in result["msg"]
    text = repr(result)
    assert "PRIVATE KEY" not in text
    for dummy_text, key_pem in bundles:
        assert key_pem.splitlines()[1] not in text
    module_args = result["invocation"]["module_args"]
    assert {item["content"] for item in module_args["certificates"]} == {NO_LOG_PLACEHOLDER}
