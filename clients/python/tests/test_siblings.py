"""The two sibling framings, parsed without a server."""

import json
import unittest

from dynkv.siblings import ProtocolError, Sibling, parse_json, parse_multipart, parse_siblings


class JsonTest(unittest.TestCase):
    def test_text_binary_and_tombstones(self):
        body = json.dumps({
            "context": "ctx-1",
            "siblings": [
                {"value": "hé", "encoding": "utf8", "content_type": "text/plain", "deleted": False},
                {"value": "/wA=", "encoding": "base64", "content_type": "", "deleted": False},
                {"value": "", "encoding": "utf8", "content_type": "", "deleted": True},
            ],
        }).encode()
        ctx, sibs = parse_json(body)
        self.assertEqual(ctx, "ctx-1")
        self.assertEqual(sibs[0], Sibling("hé".encode(), "text/plain", False))
        self.assertEqual(sibs[0].text, "hé")
        self.assertEqual(sibs[1], Sibling(b"\xff\x00", "application/octet-stream", False))
        self.assertTrue(sibs[2].deleted)

    def test_malformed_bodies_raise(self):
        for body in [b"", b"[]", b'{"siblings": 3}', b'{"siblings": [{"value": "!!", "encoding": "base64"}]}',
                     b'{"siblings": [{"value": "a", "encoding": "rot13"}]}', b'{"context": 1, "siblings": []}']:
            with self.subTest(body=body), self.assertRaises(ProtocolError):
                parse_json(body)


class MultipartTest(unittest.TestCase):
    def test_the_servers_framing(self):
        # As crates/api/src/http/siblings.rs frames it.
        b = "Xy12"
        body = (
            f"\r\n--{b}\r\nContent-Type: text/plain\r\n\r\none"
            f"\r\n--{b}\r\nContent-Type: application/octet-stream\r\nX-Dynkv-Deleted: true\r\n\r\n"
            f"\r\n--{b}\r\nContent-Type: application/json\r\n\r\n{{\"a\": 1}}\r\n"
            f"\r\n--{b}--\r\n"
        ).encode()
        sibs = parse_multipart(body, f"multipart/mixed; boundary={b}")
        self.assertEqual(len(sibs), 3)
        self.assertEqual(sibs[0], Sibling(b"one", "text/plain"))
        self.assertTrue(sibs[1].deleted)
        self.assertEqual(sibs[1].value, b"")
        # A value may itself end in CRLF: only the delimiter's CRLF is removed.
        self.assertEqual(sibs[2].value, b'{"a": 1}\r\n')
        self.assertEqual(sibs[2].json(), {"a": 1})

    def test_binary_values_and_a_quoted_boundary(self):
        body = b"--zz\r\nContent-Type: image/png\r\n\r\n\x00\r\n\xff--z\r\n--zz--"
        sibs = parse_multipart(body, 'multipart/mixed; boundary="zz"')
        self.assertEqual(sibs, [Sibling(b"\x00\r\n\xff--z", "image/png")])

    def test_malformed_bodies_raise(self):
        cases = [
            (b"no delimiter", "multipart/mixed; boundary=q"),
            (b"\r\n--q\r\nContent-Type: a\r\n\r\nv", "multipart/mixed; boundary=q"),  # not closed
            (b"\r\n--q\r\nbad header\r\n\r\nv\r\n--q--", "multipart/mixed; boundary=q"),
            (b"\r\n--q--", "multipart/mixed"),  # no boundary
        ]
        for body, ct in cases:
            with self.subTest(body=body), self.assertRaises(ProtocolError):
                parse_multipart(body, ct)

    def test_dispatch_by_content_type(self):
        ctx, sibs = parse_siblings(b'{"context": "c", "siblings": []}', "application/json")
        self.assertEqual((ctx, sibs), ("c", []))
        ctx, sibs = parse_siblings(b"--q\r\n\r\nv\r\n--q--\r\n", "multipart/mixed; boundary=q")
        self.assertIsNone(ctx)
        self.assertEqual(sibs[0].value, b"v")
        with self.assertRaises(ProtocolError):
            parse_siblings(b"x", "text/html")


if __name__ == "__main__":
    unittest.main()
