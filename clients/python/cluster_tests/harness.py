"""What the cluster tests need around the client: the nodes, their metrics
and admin views, stopping and starting a node, and a TCP proxy that cuts
a connection after the request went through.

The cluster is started by ``scripts/python-client-tests.sh``, which exports
``DYNKV_TEST_NODES`` (the nodes' base URLs, n1 first) and the
``scripts/cluster.sh`` environment, so ``kill`` and ``restart`` here act
on that cluster. Without ``DYNKV_TEST_NODES`` every test fails at once:
these tests are never silently skipped.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def nodes() -> list[str]:
    """The nodes' base URLs, ``nodes()[i - 1]`` being ``n<i>``."""
    raw = os.environ.get("DYNKV_TEST_NODES", "")
    urls = [u.strip().rstrip("/") for u in raw.split(",") if u.strip()]
    if not urls:
        raise RuntimeError(
            "DYNKV_TEST_NODES is not set: run these tests with scripts/python-client-tests.sh"
        )
    return urls


def node_url(node_id: str) -> str:
    """The base URL of ``n<i>``."""
    return nodes()[int(node_id.lstrip("n")) - 1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def status_of(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def admin_ring(url: str, key: str) -> dict:
    """``GET /admin/ring?key=K``: the server's placement of ``key``."""
    return get_json(f"{url}/admin/ring?key={urllib.parse.quote(key, safe='')}")


def metrics(url: str) -> dict[str, float]:
    """The node's Prometheus samples, ``name{labels}`` to value."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def metric(url: str, name: str) -> float:
    """One sample (0 when the node has not exported it yet)."""
    return metrics(url).get(name, 0.0)


def cluster_sh(*args: str) -> None:
    """Runs ``scripts/cluster.sh`` on the test cluster (its env is inherited)."""
    subprocess.run([os.path.join(ROOT, "scripts", "cluster.sh"), *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def wait_until(what: str, cond, timeout: float = 30.0, every: float = 0.1):
    """Polls ``cond`` until it returns a true value (which is returned)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as e:  # a node still starting, say
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def all_up(expected: int = 3) -> bool:
    """Whether every node answers and sees every member up."""
    for u in nodes():
        doc = get_json(f"{u}/admin/cluster", timeout=2)
        if sum(1 for m in doc["members"] if m["up"]) != expected:
            return False
    return True


class CutProxy:
    """A TCP proxy in front of one node that, for its first ``cuts``
    requests, forwards the request, waits for the node's whole answer and
    then closes the client's connection without relaying it (with a RST):
    the node applied the request, the client never learns it. Later
    requests are relayed."""

    def __init__(self, upstream: str, cuts: int = 1):
        u = urllib.parse.urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.cuts = cuts
        self.forwarded: list[tuple[str, str, int]] = []  # (method, path, upstream status)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip()] = v.strip()
                length = int(headers.get("Content-Length", "0") or 0)
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                body, buf = rest[:length], rest[length:]
                up = http.client.HTTPConnection(*self.upstream, timeout=10)
                up.request(method, path, body=body, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                with self._lock:
                    self.forwarded.append((method, path, resp.status))
                    cut = self.cuts > 0
                    if cut:
                        self.cuts -= 1
                if cut:
                    # SO_LINGER 0: close with a RST, as a dying link or
                    # middlebox would.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    up.close()
                    return
                out = [f"HTTP/1.1 {resp.status} {resp.reason}"]
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        out.append(f"{k}: {v}")
                out.append(f"Content-Length: {len(data)}")
                conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data)
                up.close()
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass
