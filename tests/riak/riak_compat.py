"""Lets the unmodified riak 2.7.0 client import on Python >= 3.10.

riak 2.7.0 (2016) imports the abstract base classes from ``collections``
(``from collections import Iterable, Mapping, ...``), which Python 3.10
removed in favour of ``collections.abc``, and passes ``verbose=False`` to
``collections.namedtuple``, an argument Python 3.7 removed. This module
puts those names back before the client is imported; the installed
package itself is never edited.

Its HTTPS connection also builds ``ssl.SSLSocket(sock=...)`` directly,
which Python 3.7 made private ("SSLSocket does not have a public
constructor"). :func:`_https_connect` makes the same socket the supported
way: the client's own ``configure_ssl_context`` (its TLS version, cipher
list, CA file, client certificate and host-name check) wrapping the
connected socket. Its protocol buffers connection does the same after
``RpbStartTls``; :func:`_pbc_ssl_handshake` wraps that socket the same
way.

Import it before anything from ``riak``: ``import riak_compat``.
"""

import collections
import collections.abc

# The ABCs riak 2.7.0 reaches through ``collections``.
_ABCS = (
    "Iterable",
    "Mapping",
    "Sequence",
    "Sized",
    "MutableMapping",
    "Callable",
    "Set",
    "MutableSet",
)

for _name in _ABCS:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

_namedtuple = collections.namedtuple


def _namedtuple_without_verbose(*args, verbose=False, **kwargs):
    """``collections.namedtuple`` that accepts (and ignores) ``verbose``."""
    return _namedtuple(*args, **kwargs)


collections.namedtuple = _namedtuple_without_verbose


def _https_connect(self):
    """``RiakHTTPSConnection.connect`` through ``SSLContext.wrap_socket``."""
    import socket

    from riak.transports.security import configure_ssl_context

    sock = socket.create_connection((self.host, self.port), self.timeout)
    ssl_ctx = configure_ssl_context(self.credentials)
    if self.timeout is not None:
        sock.settimeout(self.timeout)
    self.sock = ssl_ctx.wrap_socket(sock, server_hostname=self.host)


def _pbc_ssl_handshake(self):
    """``TcpConnection._ssl_handshake`` through ``SSLContext.wrap_socket``:
    the TLS handshake on the connection that sent ``RpbStartTls``."""
    import ssl

    from riak.security import SecurityError
    from riak.transports.security import configure_ssl_context

    credentials = self._client._credentials
    if not credentials:
        return None
    try:
        ssl_ctx = configure_ssl_context(credentials)
        self._socket = ssl_ctx.wrap_socket(
            self._socket, server_hostname=self._address[0]
        )
        return True
    except (ssl.SSLError, Exception) as e:
        raise SecurityError(e)


def _patch_https():
    """Installs :func:`_https_connect` and :func:`_pbc_ssl_handshake` once
    ``riak`` can be imported."""
    from riak.security import USE_STDLIB_SSL

    if not USE_STDLIB_SSL:
        return
    import riak.transports.http as http
    import riak.transports.tcp.connection as tcp

    http.RiakHTTPSConnection.connect = _https_connect
    tcp.TcpConnection._ssl_handshake = _pbc_ssl_handshake


_patch_https()
