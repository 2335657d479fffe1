"""Waiting on a condition with a deadline: the tests' only way to wait for the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(
    condition: Callable[[], Any], timeout: float = 5.0, what: str | Callable[[], str] = ""
) -> None:
    """Poll `condition` until true; `what` (or what it returns) says what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said or condition}")
        await asyncio.sleep(0.01)
