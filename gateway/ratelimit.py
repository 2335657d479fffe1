"""Log lines a LAN device can provoke, bounded per source.

Anyone on the LAN can send bad frames; logging each one would let them fill the disk and
bury the gateway's own messages. A `RateLimiter` allows `lines` lines per source (a
client's address, say) per `window_s` seconds and counts the rest; the next allowed line
says how many were suppressed. Pure: the caller passes `now` (monotonic seconds).

    limiter = RateLimiter(lines=5, window_s=60.0)
    limiter.log(log, logging.DEBUG, peer, now, "bad frame from %s: %s", peer, why)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    start: float
    used: int = 0
    suppressed: int = 0


class RateLimiter:
    def __init__(self, lines: int = 5, window_s: float = 60.0, max_sources: int = 1024) -> None:
        self.lines = lines
        self.window_s = window_s
        # Bounds the memory a flood of source addresses can take.
        self.max_sources = max_sources
        self._windows: dict[str, _Window] = {}

    def allow(self, source: str, now: float) -> int | None:
        """None: suppress this line. Else the count suppressed since the last allowed one."""
        w = self._windows.get(source)
        if w is None or now - w.start >= self.window_s:
            suppressed = w.suppressed if w is not None else 0
            if w is None and len(self._windows) >= self.max_sources:
                self._forget(now)
            w = self._windows[source] = _Window(start=now, suppressed=suppressed)
        if w.used >= self.lines:
            w.suppressed += 1
            return None
        w.used += 1
        suppressed, w.suppressed = w.suppressed, 0
        return suppressed

    def log(
        self, logger: logging.Logger, level: int, source: str, now: float, msg: str, *args: object
    ) -> None:
        """Log `msg % args` unless `source` is over its budget."""
        if not logger.isEnabledFor(level):
            return
        suppressed = self.allow(source, now)
        if suppressed is None:
            return
        if suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)

    def _forget(self, now: float) -> None:
        """Drop expired windows; if every source is current, drop the oldest half."""
        self._windows = {s: w for s, w in self._windows.items() if now - w.start < self.window_s}
        if len(self._windows) >= self.max_sources:
            by_age = sorted(self._windows.items(), key=lambda sw: sw[1].start)
            self._windows = dict(by_age[self.max_sources // 2 :])
