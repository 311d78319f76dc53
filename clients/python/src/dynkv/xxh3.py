"""XXH3-64 in pure Python: the hash dynkv places keys with.

dynkv puts a key in the partition named by the top ``log2(partitions)``
bits of ``XXH3_64bits(key)`` (the default secret, seed 0), exactly as
``dynkv_ring::key_hash`` does with the ``xxhash-rust`` crate. A client that
sends each request to one of its key's replicas must compute the same
hash, and Python's standard library has no XXH3, so this module implements
the algorithm of the xxHash specification (``doc/xxhash_spec.md`` in
Cyan4973/xxHash, version 0.8) for every input length:

- 0 bytes, 1-3, 4-8 and 9-16 bytes: one keyed mix and an avalanche;
- 17-128 bytes: up to four pairs of 16-byte mixes from both ends;
- 129-240 bytes: eight mixes, an avalanche, then the rest of the input;
- longer: the 8-lane accumulator over 64-byte stripes, a scramble after
  every block of 16 stripes, and a final merge.

Arithmetic is on Python integers masked to 64 bits. Keys are at most
1024 bytes, so hashing one costs a few microseconds to a few tens of
microseconds; the long-input loop reads a stripe's eight words with one
``struct.unpack_from``.

Tested against the published sanity vectors of the reference
implementation (``tests/test_xxh3.py``), against vectors produced by the
``xxhash-rust`` crate the server links, and, in the cluster tests, against
the partitions the server itself reports in ``GET /admin/ring?key=K``.
"""

from __future__ import annotations

import struct

__all__ = ["xxh3_64", "DEFAULT_SECRET"]

_M64 = (1 << 64) - 1

PRIME32_1 = 0x9E3779B1
PRIME32_2 = 0x85EBCA77
PRIME32_3 = 0xC2B2AE3D
PRIME64_1 = 0x9E3779B185EBCA87
PRIME64_2 = 0xC2B2AE3D27D4EB4F
PRIME64_3 = 0x165667B19E3779F9
PRIME64_4 = 0x85EBCA77C2B2AE63
PRIME64_5 = 0x27D4EB2F165667C5
PRIME_MX1 = 0x165667919E3779F9
PRIME_MX2 = 0x9FB21C651E98DF25

#: The 192-byte default secret of the specification.
DEFAULT_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
)

_STRIPE_LEN = 64
_SECRET_CONSUME_RATE = 8
_ACC_NB = 8
_SECRET_MERGEACCS_START = 11
_SECRET_LASTACC_START = 7
_MIDSIZE_MAX = 240
_SECRET_SIZE_MIN = 136

_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_u64x8 = struct.Struct("<8Q").unpack_from


def _r32(b: bytes, i: int) -> int:
    return _u32(b, i)[0]


def _r64(b: bytes, i: int) -> int:
    return _u64(b, i)[0]


def _swap32(x: int) -> int:
    return int.from_bytes(x.to_bytes(4, "little"), "big")


def _swap64(x: int) -> int:
    return int.from_bytes(x.to_bytes(8, "little"), "big")


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _mul128_fold64(a: int, b: int) -> int:
    p = a * b
    return (p & _M64) ^ (p >> 64)


def _xxh64_avalanche(h: int) -> int:
    h ^= h >> 33
    h = (h * PRIME64_2) & _M64
    h ^= h >> 29
    h = (h * PRIME64_3) & _M64
    return h ^ (h >> 32)


def _avalanche(h: int) -> int:
    h ^= h >> 37
    h = (h * PRIME_MX1) & _M64
    return h ^ (h >> 32)


def _rrmxmx(h: int, length: int) -> int:
    h ^= _rotl64(h, 49) ^ _rotl64(h, 24)
    h = (h * PRIME_MX2) & _M64
    h ^= (h >> 35) + length
    h = (h * PRIME_MX2) & _M64
    return h ^ (h >> 28)


def _mix16(data: bytes, i: int, secret: bytes, s: int, seed: int) -> int:
    lo = _r64(data, i) ^ ((_r64(secret, s) + seed) & _M64)
    hi = _r64(data, i + 8) ^ ((_r64(secret, s + 8) - seed) & _M64)
    return _mul128_fold64(lo, hi)


def _len_1to3(data: bytes, secret: bytes, seed: int) -> int:
    n = len(data)
    combined = (data[0] << 16) | (data[n >> 1] << 24) | data[n - 1] | (n << 8)
    flip = ((_r32(secret, 0) ^ _r32(secret, 4)) + seed) & _M64
    return _xxh64_avalanche(combined ^ flip)


def _len_4to8(data: bytes, secret: bytes, seed: int) -> int:
    n = len(data)
    seed ^= _swap32(seed & 0xFFFFFFFF) << 32
    in1 = _r32(data, 0)
    in2 = _r32(data, n - 4)
    flip = ((_r64(secret, 8) ^ _r64(secret, 16)) - seed) & _M64
    keyed = (in2 + (in1 << 32)) ^ flip
    return _rrmxmx(keyed, n)


def _len_9to16(data: bytes, secret: bytes, seed: int) -> int:
    n = len(data)
    flip1 = ((_r64(secret, 24) ^ _r64(secret, 32)) + seed) & _M64
    flip2 = ((_r64(secret, 40) ^ _r64(secret, 48)) - seed) & _M64
    lo = _r64(data, 0) ^ flip1
    hi = _r64(data, n - 8) ^ flip2
    acc = (n + _swap64(lo) + hi + _mul128_fold64(lo, hi)) & _M64
    return _avalanche(acc)


def _len_17to128(data: bytes, secret: bytes, seed: int) -> int:
    n = len(data)
    acc = (n * PRIME64_1) & _M64
    if n > 32:
        if n > 64:
            if n > 96:
                acc += _mix16(data, 48, secret, 96, seed)
                acc += _mix16(data, n - 64, secret, 112, seed)
            acc += _mix16(data, 32, secret, 64, seed)
            acc += _mix16(data, n - 48, secret, 80, seed)
        acc += _mix16(data, 16, secret, 32, seed)
        acc += _mix16(data, n - 32, secret, 48, seed)
    acc += _mix16(data, 0, secret, 0, seed)
    acc += _mix16(data, n - 16, secret, 16, seed)
    return _avalanche(acc & _M64)


def _len_129to240(data: bytes, secret: bytes, seed: int) -> int:
    n = len(data)
    acc = (n * PRIME64_1) & _M64
    for i in range(8):
        acc += _mix16(data, 16 * i, secret, 16 * i, seed)
    acc = _avalanche(acc & _M64)
    for i in range(8, n // 16):
        acc += _mix16(data, 16 * i, secret, 16 * (i - 8) + 3, seed)
    acc += _mix16(data, n - 16, secret, _SECRET_SIZE_MIN - 17, seed)
    return _avalanche(acc & _M64)


def _accumulate_512(acc: list[int], data: bytes, i: int, secret: bytes, s: int) -> None:
    words = _u64x8(data, i)
    keys = _u64x8(secret, s)
    for lane in range(_ACC_NB):
        v = words[lane]
        k = v ^ keys[lane]
        acc[lane ^ 1] = (acc[lane ^ 1] + v) & _M64
        acc[lane] = (acc[lane] + (k & 0xFFFFFFFF) * (k >> 32)) & _M64


def _scramble(acc: list[int], secret: bytes, s: int) -> None:
    keys = _u64x8(secret, s)
    for lane in range(_ACC_NB):
        a = acc[lane]
        a ^= a >> 47
        a ^= keys[lane]
        acc[lane] = (a * PRIME32_1) & _M64


def _long(data: bytes, secret: bytes) -> int:
    n = len(data)
    acc = [
        PRIME32_3,
        PRIME64_1,
        PRIME64_2,
        PRIME64_3,
        PRIME64_4,
        PRIME32_2,
        PRIME64_5,
        PRIME32_1,
    ]
    stripes_per_block = (len(secret) - _STRIPE_LEN) // _SECRET_CONSUME_RATE
    block_len = _STRIPE_LEN * stripes_per_block
    blocks = (n - 1) // block_len
    for b in range(blocks):
        base = b * block_len
        for st in range(stripes_per_block):
            _accumulate_512(acc, data, base + st * _STRIPE_LEN, secret, st * _SECRET_CONSUME_RATE)
        _scramble(acc, secret, len(secret) - _STRIPE_LEN)
    # The last, partial block: whole stripes, then the final 64 bytes
    # (overlapping the previous stripe when the length is not a multiple).
    base = blocks * block_len
    stripes = ((n - 1) - base) // _STRIPE_LEN
    for st in range(stripes):
        _accumulate_512(acc, data, base + st * _STRIPE_LEN, secret, st * _SECRET_CONSUME_RATE)
    _accumulate_512(
        acc, data, n - _STRIPE_LEN, secret, len(secret) - _STRIPE_LEN - _SECRET_LASTACC_START
    )
    result = (n * PRIME64_1) & _M64
    for i in range(4):
        s = _SECRET_MERGEACCS_START + 16 * i
        result += _mul128_fold64(acc[2 * i] ^ _r64(secret, s), acc[2 * i + 1] ^ _r64(secret, s + 8))
    return _avalanche(result & _M64)


def _secret_for_seed(seed: int) -> bytes:
    if seed == 0:
        return DEFAULT_SECRET
    out = bytearray(len(DEFAULT_SECRET))
    for i in range(0, len(DEFAULT_SECRET), 16):
        lo = (_r64(DEFAULT_SECRET, i) + seed) & _M64
        hi = (_r64(DEFAULT_SECRET, i + 8) - seed) & _M64
        struct.pack_into("<QQ", out, i, lo, hi)
    return bytes(out)


def xxh3_64(data: bytes | bytearray | memoryview | str, seed: int = 0) -> int:
    """XXH3_64bits of ``data`` with the default secret and ``seed``.

    A ``str`` is hashed as its UTF-8 bytes, which is how dynkv hashes a
    key. The result is an unsigned 64-bit integer.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    else:
        data = bytes(data)
    seed &= _M64
    n = len(data)
    secret = DEFAULT_SECRET
    if n <= 16:
        if n > 8:
            return _len_9to16(data, secret, seed)
        if n >= 4:
            return _len_4to8(data, secret, seed)
        if n > 0:
            return _len_1to3(data, secret, seed)
        return _xxh64_avalanche(seed ^ _r64(secret, 56) ^ _r64(secret, 64))
    if n <= 128:
        return _len_17to128(data, secret, seed)
    if n <= _MIDSIZE_MAX:
        return _len_129to240(data, secret, seed)
    return _long(data, _secret_for_seed(seed))
