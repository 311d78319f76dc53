#!/usr/bin/env python3
"""Runs test modules of the Riak Python client against a dynkv node.

Usage: run.py LABEL MODULE...   (e.g. run.py test_kv riak.tests.test_kv)

The node and protocol come from the client's own variables
(RIAK_TEST_HOST, RIAK_TEST_HTTP_PORT, RIAK_TEST_PROTOCOL=http, RUN_KV=1,
...). Tests named in skips.SKIPS are skipped with their documented reason;
a skip that names no existing test is an error, so the list cannot go
stale. RIAK_RUN_TIMEOUT (seconds, default 900) bounds the whole run.
Prints the unittest report, then one line
"LABEL: N passed, N failed, N skipped", and exits non-zero if any test
failed or errored.
"""

import faulthandler
import importlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import riak_compat  # noqa: E402,F401  (must come before any riak import)
from skips import SKIPS, SKIPS_PBC  # noqa: E402


def apply_skips(module_name):
    """Marks this module's listed tests as skipped; returns how many."""
    module = importlib.import_module(module_name)
    applied = 0
    skips = dict(SKIPS)
    if os.environ.get("RIAK_TEST_PROTOCOL") == "pbc":
        skips.update(SKIPS_PBC)
    for test_id, reason in skips.items():
        mod, _, rest = test_id.rpartition(".")
        mod, _, cls_name = mod.rpartition(".")
        if mod != module_name:
            continue
        cls = getattr(module, cls_name, None)
        method = getattr(cls, rest, None) if cls is not None else None
        if method is None:
            sys.exit(f"skip list names {test_id}, which does not exist")
        setattr(cls, rest, unittest.skip(reason)(method))
        applied += 1
    return applied


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    label, modules = argv[1], argv[2:]
    # A hung test must not hang CI: dump every thread's stack and exit.
    faulthandler.dump_traceback_later(int(os.environ.get("RIAK_RUN_TIMEOUT", "900")), exit=True)
    listed = 0
    for m in modules:
        listed += apply_skips(m)
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for m in modules:
        suite.addTests(loader.loadTestsFromName(m))
    print(f"{label}: {suite.countTestCases()} tests, {listed} on the skip list", flush=True)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
