"""Every charger's current in one pass (being written; see ALLOCATION contract)."""

from __future__ import annotations

from gateway.model import Allocation, Snapshot


def allocate(snapshot: Snapshot) -> Allocation:
    raise NotImplementedError("allocator under construction")
