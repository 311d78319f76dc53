"""The retry policy: backoff schedule and which answers may be retried."""

import unittest

from dynkv.retry import Backoff, retryable_status


class BackoffTest(unittest.TestCase):
    def test_ceiling_doubles_up_to_the_cap(self):
        b = Backoff(base=0.01, cap=0.1)
        self.assertEqual([b.ceiling(k) for k in range(6)], [0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
        self.assertEqual(b.ceiling(10_000), 0.1)

    def test_delay_is_the_draw_of_the_ceiling(self):
        b = Backoff(base=0.01, cap=0.1)
        self.assertEqual(b.delay(0, 0.0), 0.0)
        self.assertAlmostEqual(b.delay(2, 0.5), 0.02)
        self.assertLess(b.delay(3, 0.999999), 0.08)
        for _ in range(1000):
            self.assertTrue(0.0 <= b.delay(4) < 0.1)
        with self.assertRaises(ValueError):
            b.delay(0, 1.0)


class RetryableTest(unittest.TestCase):
    def test_reads_retry_on_503(self):
        self.assertTrue(retryable_status(503, "quorum_not_met", is_write=False, idempotent=True))
        self.assertTrue(retryable_status(503, "stale", is_write=False, idempotent=True))

    def test_writes_retry_on_503_only_with_an_idempotency_key_or_when_refused(self):
        self.assertTrue(retryable_status(503, "quorum_not_met", is_write=True, idempotent=True))
        self.assertFalse(retryable_status(503, "quorum_not_met", is_write=True, idempotent=False))
        self.assertTrue(retryable_status(503, "overloaded", is_write=True, idempotent=False))

    def test_other_answers_are_final(self):
        for status in (200, 204, 300, 400, 401, 403, 404, 409, 413, 500, 507):
            for w in (False, True):
                self.assertFalse(retryable_status(status, None, is_write=w, idempotent=True), status)


if __name__ == "__main__":
    unittest.main()
