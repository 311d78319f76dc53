"""Lets the unmodified riak 2.7.0 client import on Python >= 3.10.

riak 2.7.0 (2016) imports the abstract base classes from ``collections``
(``from collections import Iterable, Mapping, ...``), which Python 3.10
removed in favour of ``collections.abc``, and passes ``verbose=False`` to
``collections.namedtuple``, an argument Python 3.7 removed. This module
puts those names back before the client is imported; the installed
package itself is never edited.

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
