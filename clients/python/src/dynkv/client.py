"""The dynkv client: ring-aware routing, contexts, siblings and safe retries.

Layout
------

- :class:`Client` is the application's handle. It is thread-safe: the ring
  view, the per-node connection pools and the session contexts each sit
  behind their own lock, held only while they are read or changed, never
  across a network call.
- Routing: the client fetches the ring (``GET /ring``, see
  :mod:`dynkv.ring`) from any node it knows and sends each request to the
  first live primary of its key, as the Dynamo paper's client-driven
  coordination does (section 6.4) and Cassandra's token-aware drivers do.
  The node then coordinates itself instead of forwarding (a write sent
  elsewhere costs the cluster one more hop). A node that cannot be reached
  is believed down for ``down_cooldown`` seconds and the next node of the
  key's ring walk is tried; the ring is fetched again every
  ``ring_refresh`` seconds and after a node failed.
- Contexts: :meth:`Client.get` returns the value or the siblings with the
  opaque context token; :meth:`Client.put` and :meth:`Client.delete` take
  it. :meth:`Client.modify` is read, resolve with the caller's function,
  write with the context, again while the write meets a concurrent one.
- Sessions: the client keeps the last context it saw for each key (a
  bounded LRU) and sends it with every read of that key, which asks the
  node for a version at least that new: read-your-writes and monotonic
  reads, whichever node answers. A write given no context uses the
  session's, when the last answer this client saw for the key showed at
  most one value (so it replaces only what the application was shown);
  otherwise it is a blind write, which keeps the siblings.
- Retries: see :mod:`dynkv.retry`. Every write carries an
  ``Idempotency-Key`` (a fresh UUID per logical write, the same on each of
  its attempts), so a write whose answer was lost is retried without
  becoming a second version.
- Observability: the ``on_request`` hook receives a :class:`RequestEvent`
  for every attempt (operation, node, status, duration, error), for the
  application's metrics; the ``dynkv`` logger logs retries and ring
  changes.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .errors import AuthError, ConflictError, DynkvError, QuorumNotMet, Unavailable
from .retry import Backoff, retryable_status
from .ring import RingError, RingView, partition_of_hash
from .siblings import DEFAULT_CONTENT_TYPE, ProtocolError, Sibling, parse_json, parse_siblings
from .xxh3 import xxh3_64

__all__ = ["Client", "GetResult", "WriteResult", "RequestEvent"]

log = logging.getLogger("dynkv")

CONTEXT_HEADER = "X-Dynkv-Context"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DOT_HEADER = "X-Dynkv-Dot"

#: Seconds between ring fetches while no node answers one.
RING_RETRY = 1.0
#: Most keys whose last context the session remembers.
DEFAULT_SESSION_KEYS = 10_000
#: Most idle connections kept per node.
MAX_IDLE_PER_NODE = 16
#: The ring fallback (servers without ``GET /ring``) probes one key per
#: partition; beyond this many partitions it is too costly and refused.
MAX_FALLBACK_PARTITIONS = 1024


@dataclass(frozen=True)
class GetResult:
    """What a read found."""

    #: Every sibling, tombstones included (empty when nothing was found).
    siblings: list[Sibling]
    #: The opaque context token: pass it to the next write of the key.
    context: str
    #: The node that answered.
    node: str | None = None

    @property
    def found(self) -> bool:
        """Whether the key holds at least one live (not deleted) value."""
        return any(not s.deleted for s in self.siblings)

    @property
    def values(self) -> list[Sibling]:
        """The live siblings (tombstones left out)."""
        return [s for s in self.siblings if not s.deleted]

    @property
    def conflict(self) -> bool:
        """Whether the key holds concurrent versions to resolve."""
        return len(self.siblings) > 1

    @property
    def value(self) -> bytes | None:
        """The value when there is exactly one; ``None`` when nothing was
        found. Raises :class:`ConflictError` when there are siblings: use
        :attr:`values` or :meth:`Client.modify` then."""
        live = self.values
        if not live:
            return None
        if len(self.siblings) > 1:
            raise ConflictError(
                f"the key holds {len(self.siblings)} siblings; resolve them (GetResult.values)"
            )
        return live[0].value


@dataclass(frozen=True)
class WriteResult:
    """What a write (put or delete) left."""

    #: The new context token.
    context: str
    #: Empty when the write left one version; else every sibling the key
    #: now holds (the write met a concurrent one), the context covering them.
    siblings: list[Sibling] = field(default_factory=list)
    #: True when the node recognised the Idempotency-Key and applied nothing
    #: new (an earlier attempt of the same write had been applied).
    replayed: bool = False
    #: The version the write created, ``actor:counter``, if reported.
    dot: str | None = None
    #: The node that answered.
    node: str | None = None

    @property
    def conflict(self) -> bool:
        """Whether the key now holds concurrent versions."""
        return len(self.siblings) > 1


@dataclass(frozen=True)
class RequestEvent:
    """One attempt of one request, for the ``on_request`` metrics hook."""

    #: ``get``, ``put``, ``delete`` or ``ring``.
    op: str
    key: str | None
    #: Node id (or base URL when the id is not known).
    node: str
    #: HTTP status, or ``None`` when no answer arrived.
    status: int | None
    #: Seconds from sending to the whole answer read (or the failure).
    duration: float
    #: 0 for the first attempt of a request.
    attempt: int
    #: Why the attempt failed without an answer (``None`` when answered).
    error: str | None = None


class _NotSent(Exception):
    """The request did not leave the client (the connection failed to open)."""


class _MaybeSent(Exception):
    """The connection failed after the request may have been sent."""


@dataclass
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    node: str


class _Pool:
    """Keep-alive connections to one node (``http.client`` connections are
    not thread-safe: each is used by one request at a time)."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"a node URL must be http://host:port or https://host:port, got {url!r}")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl_context = ssl_context
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused (idle in the pool)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        if self.scheme == "https":
            ctx = self.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=ctx), False
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout), False

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_PER_NODE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


class Client:
    """A dynkv client for one cluster.

    :param nodes: base URLs of one or more nodes (``http://127.0.0.1:7071``)
        to fetch the ring from; they are also tried when no ring is known.
    :param url_overrides: node id to base URL, replacing what the ring
        advertises (for a client that reaches nodes through other addresses,
        e.g. docker's published ports).
    :param auth: ``(user, password)`` for HTTP Basic authentication.
    :param token: a bearer token (instead of ``auth``).
    :param ca_file: a PEM file of the CA that signed the nodes' TLS
        certificates (for ``https://`` nodes); or pass ``ssl_context``.
    :param timeout: socket timeout of one attempt, in seconds.
    :param r, w, sloppy, timeout_ms: default per-request consistency
        (``one``, ``quorum``, ``all`` or a number; ``None`` = the server's).
    :param max_attempts: attempts per request, over successive nodes.
    :param backoff: the wait between attempts (:class:`dynkv.retry.Backoff`).
    :param ring_refresh: seconds between ring fetches.
    :param down_cooldown: seconds a node that failed is tried last.
    :param routing: ``False`` sends requests to ``nodes`` in turn instead of
        to the key's primaries (for comparison, or a cluster without a ring
        view).
    :param session: keep the last context per key (see the module doc).
    :param idempotency: send an ``Idempotency-Key`` with every write.
    :param on_request: called with a :class:`RequestEvent` after every attempt.
    """

    def __init__(
        self,
        nodes: str | Sequence[str],
        *,
        url_overrides: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        r: str | int | None = None,
        w: str | int | None = None,
        sloppy: bool | None = None,
        timeout_ms: int | None = None,
        max_attempts: int = 4,
        backoff: Backoff = Backoff(),
        ring_refresh: float = 30.0,
        down_cooldown: float = 2.0,
        routing: bool = True,
        session: bool = True,
        session_keys: int = DEFAULT_SESSION_KEYS,
        idempotency: bool = True,
        on_request: Callable[[RequestEvent], None] | None = None,
    ):
        if isinstance(nodes, str):
            nodes = [nodes]
        self._seeds = [n.rstrip("/") for n in nodes]
        if not self._seeds:
            raise ValueError("give at least one node URL")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._overrides = {k: v.rstrip("/") for k, v in (url_overrides or {}).items()}
        if ssl_context is None and ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._ssl = ssl_context
        self._auth_header = None
        if auth is not None and token is not None:
            raise ValueError("give either auth (Basic) or token (bearer), not both")
        if auth is not None:
            raw = f"{auth[0]}:{auth[1]}".encode("utf-8")
            self._auth_header = "Basic " + base64.b64encode(raw).decode("ascii")
        elif token is not None:
            self._auth_header = "Bearer " + token
        self.timeout = timeout
        self.defaults = {"r": r, "w": w, "sloppy": sloppy, "timeout_ms": timeout_ms}
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.ring_refresh = ring_refresh
        self.down_cooldown = down_cooldown
        self.routing = routing
        self.session = session
        self.idempotency = idempotency
        self.on_request = on_request

        self._pools: dict[str, _Pool] = {}
        self._pools_lock = threading.Lock()
        self._ring: RingView | None = None
        self._ring_at = 0.0
        self._ring_stale = True
        self._ring_retry_at = 0.0
        self._ring_lock = threading.Lock()
        self._down: dict[str, float] = {}
        self._down_lock = threading.Lock()
        self._contexts: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._session_keys = session_keys
        self._ctx_lock = threading.Lock()
        self._rr = 0

    # ------------------------------------------------------------------
    # The public operations.

    def get(
        self,
        key: str,
        *,
        r: str | int | None = None,
        sloppy: bool | None = None,
        timeout_ms: int | None = None,
        context: str | None = None,
    ) -> GetResult:
        """Reads ``key``: its siblings (one when there is no conflict, none
        when not found) and the context to write it back with.

        ``context`` (default: the session's last context for the key) asks
        for a version at least that new (read-your-writes)."""
        params = self._params(r=r, sloppy=sloppy, timeout_ms=timeout_ms)
        headers = {"Accept": "application/json"}
        floor = context if context is not None else self._session_context(key)[0]
        if floor:
            headers[CONTEXT_HEADER] = floor
        a = self._call("get", "GET", key, params, headers, None, is_write=False, idempotent=True)
        ctx = a.headers.get(CONTEXT_HEADER, "") or ""
        if a.status == 200:
            ct = a.headers.get("Content-Type", DEFAULT_CONTENT_TYPE)
            res = GetResult([Sibling(a.body, ct)], ctx, a.node)
        elif a.status == 300:
            try:
                body_ctx, sibs = parse_siblings(a.body, a.headers.get("Content-Type", ""))
            except ProtocolError as e:
                raise DynkvError(str(e), a.status, "bad_answer", a.node) from e
            res = GetResult(sibs, body_ctx or ctx, a.node)
        elif a.status == 404:
            res = GetResult([], ctx, a.node)
        else:
            raise self._error(a)
        self._remember(key, res.context, unambiguous=len(res.siblings) <= 1)
        return res

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        context: str | None = None,
        content_type: str | None = None,
        w: str | int | None = None,
        sloppy: bool | None = None,
        timeout_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Writes ``value`` (a ``str`` is sent as UTF-8, ``text/plain``).

        ``context``: the token of the read this write follows, so that it
        replaces the versions that read showed. Omitted: the session's
        context for the key when the last answer showed at most one value,
        else none. ``""``: a blind write (a sibling of whatever is there)."""
        if isinstance(value, str):
            value = value.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        headers = {"Content-Type": content_type or DEFAULT_CONTENT_TYPE}
        return self._write("put", "PUT", key, value, headers, context, w, sloppy, timeout_ms,
                           idempotency_key)

    def delete(
        self,
        key: str,
        *,
        context: str | None = None,
        w: str | int | None = None,
        sloppy: bool | None = None,
        timeout_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """Deletes ``key`` (a tombstone write; ``context`` as for :meth:`put`)."""
        return self._write("delete", "DELETE", key, None, {}, context, w, sloppy, timeout_ms,
                           idempotency_key)

    def modify(
        self,
        key: str,
        resolve: Callable[[list[Sibling]], bytes | str],
        *,
        content_type: str | None = None,
        max_attempts: int = 10,
        r: str | int | None = None,
        w: str | int | None = None,
        sloppy: bool | None = None,
        timeout_ms: int | None = None,
    ) -> WriteResult:
        """Read, resolve, write: ``resolve`` gets the key's live siblings
        (an empty list when it has none) and returns the one value to
        store, written with the read's context.

        When the write meets a concurrent one (its answer shows siblings),
        ``resolve`` is called again with those siblings, its own last value
        among them, and the result written with their context, up to
        ``max_attempts`` writes. So ``resolve`` must merge siblings (union,
        max, ...) and tolerate seeing its own earlier value: then no
        concurrent update is lost. Raises :class:`ConflictError` when
        concurrent writers won every attempt."""
        got = self.get(key, r=r, sloppy=sloppy, timeout_ms=timeout_ms)
        siblings, ctx = got.values, got.context
        if content_type is None and siblings:
            content_type = siblings[0].content_type
        for attempt in range(max_attempts):
            new = resolve(siblings)
            res = self.put(key, new, context=ctx, content_type=content_type, w=w, sloppy=sloppy,
                           timeout_ms=timeout_ms)
            if not res.conflict:
                return res
            log.debug("modify %r met a concurrent write (attempt %d)", key, attempt + 1)
            siblings, ctx = [s for s in res.siblings if not s.deleted], res.context
            time.sleep(self.backoff.delay(attempt))
        raise ConflictError(f"modify of {key!r} met a concurrent write on each of {max_attempts} attempts")

    def ring(self, refresh: bool = False) -> RingView | None:
        """The ring view in use (fetched now when ``refresh`` or stale)."""
        if refresh:
            self._refresh_ring(force=True)
        return self._current_ring()

    def preference_list(self, key: str) -> tuple[str, ...]:
        """The key's primaries in ring order, by this client's ring view."""
        ring = self._current_ring()
        if ring is None:
            raise Unavailable("no ring view: no node answered GET /ring", [])
        return ring.preference_list(key)

    def forget(self, key: str | None = None) -> None:
        """Drops the session context of ``key`` (of every key when ``None``)."""
        with self._ctx_lock:
            if key is None:
                self._contexts.clear()
            else:
                self._contexts.pop(key, None)

    def close(self) -> None:
        """Closes every idle connection."""
        with self._pools_lock:
            pools = list(self._pools.values())
        for p in pools:
            p.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------
    # Writes, sessions, parameters.

    def _write(self, op, method, key, body, headers, context, w, sloppy, timeout_ms,
               idempotency_key) -> WriteResult:
        params = self._params(w=w, sloppy=sloppy, timeout_ms=timeout_ms)
        if context is None:
            ctx, unambiguous = self._session_context(key)
            context = ctx if unambiguous else ""
        if context:
            headers[CONTEXT_HEADER] = context
        if idempotency_key is None and self.idempotency:
            idempotency_key = uuid.uuid4().hex
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        a = self._call(op, method, key, params, headers, body, is_write=True,
                       idempotent=idempotency_key is not None)
        ctx = a.headers.get(CONTEXT_HEADER, "") or ""
        replayed = (a.headers.get(REPLAYED_HEADER, "") or "").lower() == "true"
        dot = a.headers.get(DOT_HEADER)
        if a.status == 204:
            res = WriteResult(ctx, [], replayed, dot, a.node)
        elif a.status == 200:
            try:
                body_ctx, sibs = parse_json(a.body)
            except ProtocolError as e:
                raise DynkvError(str(e), a.status, "bad_answer", a.node) from e
            res = WriteResult(body_ctx or ctx, sibs, replayed, dot, a.node)
        else:
            raise self._error(a)
        self._remember(key, res.context, unambiguous=not res.conflict)
        return res

    def _session_context(self, key: str) -> tuple[str, bool]:
        if not self.session:
            return "", True
        with self._ctx_lock:
            got = self._contexts.get(key)
            if got is None:
                return "", True
            self._contexts.move_to_end(key)
            return got

    def _remember(self, key: str, context: str, unambiguous: bool) -> None:
        if not self.session or not context:
            return
        with self._ctx_lock:
            self._contexts[key] = (context, unambiguous)
            self._contexts.move_to_end(key)
            while len(self._contexts) > self._session_keys:
                self._contexts.popitem(last=False)

    def _params(self, **given) -> dict[str, str]:
        out = {}
        for name, value in given.items():
            if value is None:
                value = self.defaults.get(name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[name] = str(value)
        return out

    def _error(self, a: _Answer) -> DynkvError:
        try:
            doc = json.loads(a.body)
            message, code = str(doc.get("error", "")), doc.get("code")
        except (ValueError, AttributeError):
            doc, message, code = {}, a.body[:200].decode("utf-8", "replace"), None
        if a.status in (401, 403):
            return AuthError(message, a.status, code, a.node)
        if code == "quorum_not_met":
            return QuorumNotMet(message, a.status, code, a.node, doc.get("needed"), doc.get("acked"))
        return DynkvError(message, a.status, code, a.node)

    # ------------------------------------------------------------------
    # Sending with routing and retries.

    def _targets(self, key: str) -> list[tuple[str, str]]:
        """``(node id or URL, base URL)`` in the order to try for ``key``."""
        ring = self._current_ring() if self.routing else None
        if ring is not None:
            down = self._down_now()
            out = [(n, ring.url_of(n)) for n in ring.targets(key, down)]
            if out:
                return out
        with self._pools_lock:
            self._rr += 1
            start = self._rr
        seeds = [(u, u) for u in self._seeds]
        k = start % len(seeds)
        return seeds[k:] + seeds[:k]

    def _call(self, op, method, key, params, headers, body, *, is_write: bool,
              idempotent: bool) -> _Answer:
        path = "/kv/" + urllib.parse.quote(key, safe="")
        if params:
            path += "?" + urllib.parse.urlencode(params)
        if self._auth_header:
            headers["Authorization"] = self._auth_header
        targets = self._targets(key)
        tried: list[tuple[str, str]] = []
        socket_timeout = self.timeout
        if params.get("timeout_ms"):
            socket_timeout = max(socket_timeout, int(params["timeout_ms"]) / 1000.0 + 1.0)
        last: _Answer | None = None
        for attempt in range(self.max_attempts):
            node, url = targets[attempt % len(targets)]
            started = time.monotonic()
            try:
                a = self._send(url, node, method, path, headers, body, socket_timeout,
                               safe=not is_write or idempotent)
            except _NotSent as e:
                self._emit(op, key, node, None, started, attempt, f"not sent: {e}")
                tried.append((node, f"not sent: {e}"))
                self._mark_down(node)
                # Nothing reached the node: the next one at once.
                continue
            except _MaybeSent as e:
                self._emit(op, key, node, None, started, attempt, f"no answer: {e}")
                tried.append((node, f"no answer: {e}"))
                self._mark_down(node)
                if is_write and not idempotent:
                    raise Unavailable(
                        f"{op} of {key!r}: the connection to {node} broke after the request was "
                        "sent; it may or may not have been applied (no Idempotency-Key to retry with)",
                        tried,
                    ) from e
                self._pause(attempt)
                continue
            self._emit(op, key, node, a.status, started, attempt, None)
            code = None
            if a.status >= 400:
                try:
                    code = json.loads(a.body).get("code")
                except (ValueError, AttributeError):
                    code = None
            if retryable_status(a.status, code, is_write, idempotent) and attempt + 1 < self.max_attempts:
                tried.append((node, f"{a.status} {code}"))
                log.debug("%s %r: %s answered %s %s; retrying", op, key, node, a.status, code)
                last = a
                self._pause(attempt)
                continue
            return a
        if last is not None:
            return last
        raise Unavailable(f"{op} of {key!r}: no node answered after {len(tried)} attempts: {tried}",
                          tried)

    def _pause(self, attempt: int) -> None:
        time.sleep(self.backoff.delay(attempt))

    def _emit(self, op, key, node, status, started, attempt, error) -> None:
        if self.on_request is None:
            return
        ev = RequestEvent(op, key, node, status, time.monotonic() - started, attempt, error)
        try:
            self.on_request(ev)
        except Exception:  # a broken hook must not break requests
            log.exception("the on_request hook raised")

    def _pool(self, url: str) -> _Pool:
        with self._pools_lock:
            p = self._pools.get(url)
            if p is None:
                p = self._pools[url] = _Pool(url, self._ssl)
            return p

    def _send(self, url: str, node: str, method: str, path: str, headers: Mapping[str, str],
              body: bytes | None, timeout: float, safe: bool) -> _Answer:
        """One request on a pooled connection. A reused keep-alive
        connection the node had already closed fails before any answer; the
        request is then sent once more on a fresh connection when that is
        safe (a read, or a write with an Idempotency-Key)."""
        pool = self._pool(url)
        for fresh_retry in (False, True):
            conn, reused = pool.get(timeout)
            sent = False
            try:
                try:
                    if conn.sock is None:
                        conn.connect()
                except (OSError, ssl.SSLError) as e:
                    conn.close()
                    raise _NotSent(f"{type(e).__name__}: {e}") from e
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body or b"")))
                conn.endheaders(body)
                sent = True
                resp = conn.getresponse()
                data = resp.read()
            except _NotSent:
                raise
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                stale = reused and isinstance(
                    e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if stale and not fresh_retry and (safe or not sent):
                    continue
                if not sent:
                    raise _NotSent(f"{type(e).__name__}: {e}") from e
                raise _MaybeSent(f"{type(e).__name__}: {e}") from e
            if resp.will_close:
                conn.close()
            else:
                pool.put(conn)
            return _Answer(resp.status, resp.headers, data, node)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------
    # Node health as this client sees it.

    def _mark_down(self, node: str) -> None:
        with self._down_lock:
            self._down[node] = time.monotonic() + self.down_cooldown
        self._ring_stale = True

    def _down_now(self) -> set[str]:
        now = time.monotonic()
        with self._down_lock:
            for n in [n for n, until in self._down.items() if until <= now]:
                del self._down[n]
            return set(self._down)

    # ------------------------------------------------------------------
    # The ring view.

    def _current_ring(self) -> RingView | None:
        now = time.monotonic()
        due = self._ring is None or self._ring_stale or now - self._ring_at >= self.ring_refresh
        # After a fetch that no node answered, wait RING_RETRY before the
        # next, so that a cluster without a ring view costs no extra
        # request per operation.
        if due and now >= self._ring_retry_at:
            self._refresh_ring(force=False)
        return self._ring

    def _ring_sources(self) -> list[str]:
        urls = []
        ring = self._ring
        down = self._down_now()
        if ring is not None:
            urls += [m.url for m in ring.members if m.url and m.id not in down and m.up]
        urls += self._seeds
        seen, out = set(), []
        for u in urls:
            if u not in seen:
                seen.add(u)
                out.append(u)
        return out

    def _refresh_ring(self, force: bool) -> None:
        # One fetch at a time; a request that finds a fetch under way uses
        # the view in hand (when there is one) instead of waiting.
        if not self._ring_lock.acquire(blocking=self._ring is None or force):
            return
        try:
            now = time.monotonic()
            if not force and (
                now < self._ring_retry_at
                or (self._ring is not None and not self._ring_stale
                    and now - self._ring_at < self.ring_refresh)
            ):
                return
            errors = []
            for url in self._ring_sources():
                try:
                    view = self._fetch_ring(url)
                except (DynkvError, RingError, ProtocolError, _NotSent, _MaybeSent) as e:
                    errors.append(f"{url}: {e}")
                    continue
                if view.replaces(self._ring):
                    if self._ring is None or view.preference_lists != self._ring.preference_lists:
                        log.info("ring view from %s: epoch %d version %d, %d members, %d partitions",
                                 url, view.epoch, view.version, len(view.members), view.partitions)
                    self._ring = view
                self._ring_at = time.monotonic()
                self._ring_stale = False
                return
            self._ring_retry_at = time.monotonic() + RING_RETRY
            log.warning("no node answered the ring view: %s", "; ".join(errors))
        finally:
            self._ring_lock.release()

    def _get_json(self, url: str, path: str) -> tuple[int, object]:
        headers = {"Accept": "application/json"}
        if self._auth_header:
            headers["Authorization"] = self._auth_header
        started = time.monotonic()
        a = self._send(url, url, "GET", path, headers, None, self.timeout, safe=True)
        self._emit("ring", None, url, a.status, started, 0, None)
        if a.status != 200:
            return a.status, None
        try:
            return 200, json.loads(a.body)
        except ValueError as e:
            raise ProtocolError(f"{path} is not JSON: {e}") from e

    def _fetch_ring(self, url: str) -> RingView:
        status, doc = self._get_json(url, "/ring")
        if status == 200:
            return RingView.from_json(doc, self._overrides)
        if status == 404:
            return self._fetch_ring_fallback(url)
        raise DynkvError(f"GET /ring answered {status}", status, None, url)

    def _fetch_ring_fallback(self, url: str) -> RingView:
        """The ring view of a server without ``GET /ring``, from
        ``/admin/cluster`` (members, who is up, partitions, N), each seed's
        ``/admin/cluster`` (which node a seed URL is) and one
        ``/admin/ring?key=K`` per partition (its preference list), with a
        probe key found locally for each partition. Costs one request per
        partition, so it is refused beyond MAX_FALLBACK_PARTITIONS."""
        status, cluster = self._get_json(url, "/admin/cluster")
        if status != 200 or not isinstance(cluster, dict):
            raise DynkvError(f"{url} has neither GET /ring nor GET /admin/cluster ({status})",
                             status, None, url)
        partitions = int(cluster["partitions"])
        if partitions > MAX_FALLBACK_PARTITIONS:
            raise RingError(f"{partitions} partitions are too many to probe without GET /ring")
        urls = dict(self._overrides)
        urls.setdefault(str(cluster["node"]), url)
        for seed in self._seeds:
            if seed in urls.values():
                continue
            try:
                st, doc = self._get_json(seed, "/admin/cluster")
            except (_NotSent, _MaybeSent):
                continue
            if st == 200 and isinstance(doc, dict):
                urls.setdefault(str(doc["node"]), seed)
        probes: dict[int, str] = {}
        for i in range(partitions * 64):
            if len(probes) == partitions:
                break
            k = f"ring-probe-{i}"
            probes.setdefault(partition_of_hash(xxh3_64(k), partitions), k)
        if len(probes) != partitions:
            raise RingError("could not find a probe key for every partition")
        lists = []
        for p in range(partitions):
            st, doc = self._get_json(url, "/admin/ring?key=" + urllib.parse.quote(probes[p], safe=""))
            if st != 200 or not isinstance(doc, dict) or int(doc["partition"]) != p:
                raise RingError(f"/admin/ring placed probe {probes[p]!r} in partition "
                                f"{doc.get('partition') if isinstance(doc, dict) else st}, expected {p}")
            lists.append(doc["preference_list"])
        members = [
            {"id": m["id"], "url": urls.get(m["id"]), "up": bool(m.get("up", True))}
            for m in cluster["members"]
        ]
        return RingView.from_json(
            {"node": cluster["node"], "epoch": 0, "version": 0, "n_val": cluster.get("n_val", 3),
             "partitions": partitions, "hash": "xxh3_64", "members": members,
             "preference_lists": lists},
            self._overrides,
        )

