"""XXH3-64 against published and server-side vectors (no cluster needed)."""

import os
import unittest

from dynkv.xxh3 import xxh3_64

PRIME32 = 2654435761
PRIME64 = 11400714785074694797
M64 = (1 << 64) - 1


def sanity_buffer(n):
    """The xxHash reference's test buffer (cli/xsum_sanity_check.c)."""
    out = bytearray()
    gen = PRIME32
    for _ in range(n):
        out.append(gen >> 56)
        gen = (gen * PRIME64) & M64
    return bytes(out)


BUF = sanity_buffer(4200)

# XSUM_XXH3_testdata of the reference implementation (xxHash 0.8,
# cli/xsum_sanity_check.c): (length, seed, XXH3_64bits_withSeed).
REFERENCE = [
    (0, 0, 0x2D06800538D394C2),
    (0, PRIME64, 0xA8A6B918B2F0364A),
    (1, 0, 0xC44BDFF4074EECDB),
    (1, PRIME64, 0x032BE332DD766EF8),
    (6, 0, 0x27B56A84CD2D7325),
    (6, PRIME64, 0x84589C116AB59AB9),
    (12, 0, 0xA713DAF0DFBB77E7),
    (12, PRIME64, 0xE7303E1B2336DE0E),
    (24, 0, 0xA3FE70BF9D3510EB),
    (24, PRIME64, 0x850E80FC35BDD690),
    (48, 0, 0x397DA259ECBA1F11),
    (48, PRIME64, 0xADC2CBAA44ACC616),
    (80, 0, 0xBCDEFBBB2C47C90A),
    (80, PRIME64, 0xC6DD0CB699532E73),
    (195, 0, 0xCD94217EE362EC3A),
    (195, PRIME64, 0xBA68003D370CB3D9),
    (403, 0, 0xCDEB804D65C6DEA4),
    (403, PRIME64, 0x6259F6ECFD6443FD),
    (512, 0, 0x617E49599013CB6B),
    (512, PRIME64, 0x3CE457DE14C27708),
    (2048, 0, 0xDD59E2C3A5F038E0),
    (2048, PRIME64, 0x66F81670669ABABC),
    (2240, 0, 0x6E73A90539CF2948),
    (2240, PRIME64, 0x757BA8487D1B5247),
    (2367, 0, 0xCB37AEB9E5D361ED),
    (2367, PRIME64, 0xD2DB3415B942B42A),
]


class Xxh3Test(unittest.TestCase):
    def test_reference_sanity_vectors(self):
        for length, seed, want in REFERENCE:
            with self.subTest(length=length, seed=seed):
                self.assertEqual(xxh3_64(BUF[:length], seed), want)

    def test_every_length_matches_the_servers_hash_crate(self):
        path = os.path.join(os.path.dirname(__file__), "data", "xxh3_vectors.txt")
        lengths = set()
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                n, want = line.split()
                n = int(n)
                lengths.add(n)
                with self.subTest(length=n):
                    self.assertEqual(xxh3_64(BUF[:n]), int(want, 16))
        # Every length class of the algorithm is covered, twice over.
        for lo, hi in [(0, 0), (1, 3), (4, 8), (9, 16), (17, 128), (129, 240), (241, 1024),
                       (1025, 4160)]:
            self.assertTrue(any(lo <= n <= hi for n in lengths), (lo, hi))
        self.assertGreater(len(lengths), 1100)

    def test_str_is_hashed_as_utf8(self):
        for key in ["", "a", "user:42", "clé", "键" * 40]:
            self.assertEqual(xxh3_64(key), xxh3_64(key.encode("utf-8")))

    def test_inputs_of_every_buffer_type_agree(self):
        data = BUF[:300]
        self.assertEqual(xxh3_64(bytearray(data)), xxh3_64(data))
        self.assertEqual(xxh3_64(memoryview(data)), xxh3_64(data))

    def test_results_are_unsigned_64_bit(self):
        for n in range(0, 300, 7):
            h = xxh3_64(BUF[:n], seed=PRIME64)
            self.assertTrue(0 <= h <= M64)


if __name__ == "__main__":
    unittest.main()
