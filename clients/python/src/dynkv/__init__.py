"""A Python client for dynkv, the Dynamo-style key-value store.

Quick start::

    from dynkv import Client

    with Client(["http://127.0.0.1:7071"]) as kv:
        kv.put("greeting", "hello")
        print(kv.get("greeting").value)       # b'hello'

The client learns the ring from any node and sends each request to one of
the key's replicas; it carries the causal context from reads to writes,
shows concurrent versions as siblings, resolves them with
:meth:`Client.modify`, and retries only what is safe to retry. See
:mod:`dynkv.client` for the design, and the project README for a tour.

Layout: :mod:`dynkv.client` (the client), :mod:`dynkv.ring` (the ring view
and the routing order), :mod:`dynkv.xxh3` (the key hash),
:mod:`dynkv.siblings` (the two sibling framings), :mod:`dynkv.retry` (the
retry policy), :mod:`dynkv.errors` (exceptions). Standard library only.
"""

from .client import Client, GetResult, RequestEvent, WriteResult
from .errors import AuthError, ConflictError, DynkvError, QuorumNotMet, Unavailable
from .retry import Backoff
from .ring import Member, RingView
from .siblings import Sibling
from .xxh3 import xxh3_64

__version__ = "0.1.0"

__all__ = [
    "Client",
    "GetResult",
    "WriteResult",
    "RequestEvent",
    "Sibling",
    "RingView",
    "Member",
    "Backoff",
    "DynkvError",
    "QuorumNotMet",
    "AuthError",
    "Unavailable",
    "ConflictError",
    "xxh3_64",
]
