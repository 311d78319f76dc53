"""The client against the cluster with TLS and security on (the script's
second phase): certificates checked against a CA file, HTTP Basic and
bearer authentication, and the errors an application sees without them.

Runs only when the script exports ``DYNKV_TEST_CA`` (the first phase
serves plain HTTP); the script checks that this phase's tests ran.
"""

from __future__ import annotations

import os
import ssl
import unittest
import uuid

from dynkv import AuthError, Client, Unavailable

from . import harness as h

CA = os.environ.get("DYNKV_TEST_CA")


@unittest.skipUnless(CA, "the cluster serves plain HTTP (TLS phase not running)")
class SecureTest(unittest.TestCase):
    user = os.environ.get("DYNKV_TEST_USER", "")
    password = os.environ.get("DYNKV_TEST_PASSWORD", "")
    token = os.environ.get("DYNKV_TEST_TOKEN", "")

    def test_basic_auth_over_tls_with_a_ca_file(self):
        key = f"tls-{uuid.uuid4().hex}"
        with Client(h.nodes(), ca_file=CA, auth=(self.user, self.password), timeout=10) as kv:
            self.assertTrue(all(u.startswith("https://") for u in h.nodes()))
            kv.put(key, "secret value")
            got = kv.get(key)
            self.assertEqual(got.value, b"secret value")
            res = kv.put(key, "second")
            self.assertFalse(res.conflict)
            ring = kv.ring()
            if ring is not None:
                # GET /ring is open to any authenticated user, and the
                # members it advertises speak TLS.
                self.assertTrue(all(m.url.startswith("https://") for m in ring.members))

    def test_bearer_token(self):
        key = f"tls-{uuid.uuid4().hex}"
        with Client(h.nodes(), ca_file=CA, token=self.token, timeout=10) as kv:
            kv.put(key, "by token")
            self.assertEqual(kv.get(key).value, b"by token")

    def test_no_or_wrong_credentials_are_auth_errors(self):
        key = f"tls-{uuid.uuid4().hex}"
        with Client(h.nodes(), ca_file=CA, timeout=10) as kv:
            with self.assertRaises(AuthError) as e:
                kv.get(key)
            self.assertEqual(e.exception.status, 401)
        with Client(h.nodes(), ca_file=CA, auth=(self.user, "wrong"), timeout=10) as kv:
            with self.assertRaises(AuthError) as e:
                kv.put(key, "x")
            self.assertEqual(e.exception.status, 401)

    def test_a_certificate_not_signed_by_the_ca_is_refused(self):
        # The system's default CAs do not know the test CA: no node is
        # reachable, and the attempts say why.
        ctx = ssl.create_default_context()
        with Client(h.nodes(), ssl_context=ctx, auth=(self.user, self.password), timeout=10,
                    max_attempts=3) as kv:
            with self.assertRaises(Unavailable) as e:
                kv.get("anything")
        self.assertEqual(len(e.exception.attempts), 3)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception.attempts[0]))


if __name__ == "__main__":
    unittest.main()
