"""The ring view: parsing, partitions, preference lists, routing order."""

import unittest

from dynkv.ring import RingError, RingView, partition_of_hash
from dynkv.xxh3 import xxh3_64


def view(partitions=8, up=None, urls=True, epoch=1, version=1):
    nodes = ["n1", "n2", "n3", "n4"]
    up = up or {}
    # Owners round-robin; each list is the owner and the next two nodes.
    lists = []
    for p in range(partitions):
        i = p % 4
        lists.append([nodes[i], nodes[(i + 1) % 4], nodes[(i + 2) % 4]])
    return {
        "node": "n1",
        "epoch": epoch,
        "version": version,
        "n_val": 3,
        "partitions": partitions,
        "hash": "xxh3_64",
        "members": [
            {"id": n, "url": f"http://127.0.0.1:{7070 + k}" if urls else None, "up": up.get(n, True)}
            for k, n in enumerate(nodes, start=1)
        ],
        "preference_lists": lists,
    }


class PartitionTest(unittest.TestCase):
    def test_top_bits_of_the_hash(self):
        self.assertEqual(partition_of_hash(0, 64), 0)
        self.assertEqual(partition_of_hash((1 << 64) - 1, 64), 63)
        self.assertEqual(partition_of_hash(1 << 58, 64), 1)
        self.assertEqual(partition_of_hash((1 << 58) - 1, 64), 0)
        self.assertEqual(partition_of_hash(12345, 1), 0)
        self.assertEqual(partition_of_hash((1 << 64) - 1, 2), 1)

    def test_key_partition_is_the_hash_of_its_utf8(self):
        r = RingView.from_json(view(partitions=64))
        for key in ["a", "user:1", "clé/é", "x" * 500]:
            self.assertEqual(r.partition_of_key(key), xxh3_64(key.encode()) >> 58)
            self.assertEqual(r.preference_list(key), r.preference_lists[r.partition_of_key(key)])


class ParseTest(unittest.TestCase):
    def test_rejects_what_it_cannot_route_with(self):
        bad = view()
        bad["partitions"] = 6
        with self.assertRaisesRegex(RingError, "power of two"):
            RingView.from_json(bad)
        bad = view()
        bad["preference_lists"].pop()
        with self.assertRaisesRegex(RingError, "preference lists"):
            RingView.from_json(bad)
        bad = view()
        bad["hash"] = "md5"
        with self.assertRaisesRegex(RingError, "md5"):
            RingView.from_json(bad)
        bad = view()
        del bad["members"]
        with self.assertRaisesRegex(RingError, "malformed"):
            RingView.from_json(bad)

    def test_overrides_replace_advertised_urls(self):
        r = RingView.from_json(view(), {"n2": "http://localhost:9999/"})
        self.assertEqual(r.url_of("n2"), "http://localhost:9999")
        self.assertEqual(r.url_of("n1"), "http://127.0.0.1:7071")

    def test_a_newer_or_equal_view_replaces(self):
        old = RingView.from_json(view(epoch=2, version=5))
        self.assertTrue(RingView.from_json(view(epoch=2, version=6)).replaces(old))
        self.assertTrue(RingView.from_json(view(epoch=3, version=0)).replaces(old))
        self.assertTrue(RingView.from_json(view(epoch=2, version=5)).replaces(old))
        self.assertFalse(RingView.from_json(view(epoch=2, version=4)).replaces(old))
        self.assertTrue(old.replaces(None))


class TargetsTest(unittest.TestCase):
    def key_in(self, r, partition):
        for i in range(10_000):
            k = f"k{i}"
            if r.partition_of_key(k) == partition:
                return k
        raise AssertionError("no key found")

    def test_owner_first_then_primaries_then_fallbacks(self):
        r = RingView.from_json(view())
        k = self.key_in(r, 1)  # primaries n2, n3, n4; walk continues to n1
        self.assertEqual(r.targets(k), ["n2", "n3", "n4", "n1"])

    def test_down_primaries_go_last_before_down_fallbacks(self):
        r = RingView.from_json(view(up={"n2": False}))
        k = self.key_in(r, 1)
        self.assertEqual(r.targets(k), ["n3", "n4", "n1", "n2"])
        # The client's own failures count as down too.
        self.assertEqual(r.targets(k, down={"n3"}), ["n4", "n1", "n2", "n3"])
        self.assertEqual(r.targets(k, down={"n1", "n3"}), ["n4", "n2", "n3", "n1"])

    def test_nodes_without_url_are_skipped(self):
        r = RingView.from_json(view(urls=False), {"n3": "http://h:1"})
        k = self.key_in(r, 1)
        self.assertEqual(r.targets(k), ["n3"])

    def test_walk_meets_every_member_once(self):
        r = RingView.from_json(view(partitions=16))
        for p in range(16):
            w = r.walk(p)
            self.assertEqual(sorted(w), ["n1", "n2", "n3", "n4"])
            self.assertEqual(w[:3], list(r.preference_lists[p]))


if __name__ == "__main__":
    unittest.main()
