"""The per-source log limiter: N lines per window, then a count of what was suppressed."""

from __future__ import annotations

import logging

from gateway.ratelimit import RateLimiter


def test_n_lines_per_source_per_window_then_the_suppressed_count(caplog) -> None:
    limiter = RateLimiter(lines=3, window_s=60.0)
    log = logging.getLogger("test.ratelimit")
    caplog.set_level(logging.DEBUG, logger="test.ratelimit")
    for i in range(100):
        limiter.log(log, logging.DEBUG, "10.0.0.9", 1000.0 + i * 0.1, "bad frame %d", i)
        limiter.log(log, logging.DEBUG, "10.0.0.7", 1000.0 + i * 0.1, "other %d", i)
    assert [r.getMessage() for r in caplog.records if "bad" in r.getMessage()] == [
        "bad frame 0",
        "bad frame 1",
        "bad frame 2",
    ]
    assert sum("other" in r.getMessage() for r in caplog.records) == 3
    caplog.clear()
    limiter.log(log, logging.DEBUG, "10.0.0.9", 1060.0, "bad frame %d", 100)
    assert caplog.records[0].getMessage() == "bad frame 100 (97 similar lines suppressed)"


def test_a_flood_of_sources_stays_bounded() -> None:
    limiter = RateLimiter(lines=1, window_s=60.0, max_sources=100)
    for i in range(10_000):
        assert limiter.allow(f"10.0.{i // 256}.{i % 256}", 1000.0) == 0
    assert len(limiter._windows) <= 100
