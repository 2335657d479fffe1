"""The session log: one row per charging session, in SQLite in the state directory.

`SessionTracker` (pure: the wall time is passed in) watches each cycle: a session starts
when a charger's status becomes active (Preparing/Charging/Suspended*, what OCPP 1.6
StartTransaction and 2.0.1 TransactionEvent lead to) and ends when it leaves it. Energy
is the charger's meter register difference (`session_wh`), or the integrated power when
the charger reports no register. Each cycle's charging energy is split between PV,
battery and grid in proportion to what each supplied the site that cycle. A session
running when the gateway starts again continues its row (`SessionLog.open_rows`).

`SessionLog` writes off the control loop: the hub's hook only puts rows on a queue, and
one thread owns the database connection, so a locked or slow database changes nothing
in the cycle's timing. Rows older than `[state] session_days` are pruned.
"""

from __future__ import annotations

import argparse
import csv
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gateway.model import ACTIVE_STATUSES

if TYPE_CHECKING:
    from gateway.hub import CycleReport

log = logging.getLogger(__name__)
FILE_NAME = "sessions.sqlite"
SAVE_EVERY_S = 60.0  # an open session's row is rewritten this often (and when it ends)


@dataclass(frozen=True, slots=True)
class Session:
    charger: str
    start_unix: float
    end_unix: float | None = None  # None: still running
    energy_wh: float = 0.0
    pv_wh: float = 0.0
    battery_wh: float = 0.0
    grid_wh: float = 0.0
    peak_a: float = 0.0
    id_tag: str | None = None  # from StartTransaction / TransactionEvent, when the charger says
    # Internal: the integrated power, the fallback when the charger has no energy register.
    integrated_wh: float = 0.0
    saved_unix: float = 0.0


COLUMNS = [f.name for f in fields(Session) if f.name not in ("integrated_wh", "saved_unix")]


def split(pv_w: float, battery_w: float, grid_w: float) -> tuple[float, float, float]:
    """Shares of PV, battery discharge and grid import in what the site used (sum 1)."""
    supply = [max(0.0, x) if x == x else 0.0 for x in (pv_w, battery_w, grid_w)]
    total = sum(supply)
    if total <= 0:
        return 0.0, 0.0, 1.0
    return supply[0] / total, supply[1] / total, supply[2] / total


class SessionTracker:
    def __init__(self, resumed: Mapping[str, Session] | None = None) -> None:
        self.open: dict[str, Session] = dict(resumed or {})
        self._last_unix: float | None = None

    def observe_report(
        self, report: CycleReport, live: Mapping[str, Any], now_unix: float
    ) -> list[Session]:
        """`observe` fed from the hub's cycle report and the chargers' live OCPP state."""
        dt = 0.0 if self._last_unix is None else min(60.0, now_unix - self._last_unix)
        self._last_unix = now_unix
        m = report.snapshot.measurements
        volts = report.snapshot.site.voltage_v
        rows = []
        for c in report.snapshot.chargers:
            view = live.get(c.id)
            power = getattr(view, "power_w", None)
            if power is None:
                power = sum(c.draw_a) * volts
            # The charger's own status: mode `off` shows it Unavailable to the allocator,
            # but the car is still plugged in and its session goes on.
            status = view.status if view is not None and view.online else c.status
            rows.append(
                (
                    c.id,
                    status,
                    power,
                    getattr(view, "session_wh", None),
                    max(c.draw_a),
                    getattr(view, "id_tag", None),
                )
            )
        return self.observe(
            now_unix,
            dt,
            rows,
            m.pv_power_w if m.pv_power_w is not None else 0.0,
            m.battery_power_w if m.battery_power_w is not None else 0.0,
            report.inputs.grid_power_w,
        )

    def observe(
        self,
        now_unix: float,
        dt_s: float,
        chargers: Iterable[tuple[str, str, float, float | None, float, str | None]],
        pv_w: float,
        battery_w: float,
        grid_w: float,
    ) -> list[Session]:
        """One cycle: (id, status, power W, session_wh or None, peak line A, id tag or None)
        per charger.

        Returns the sessions to save: the ones that ended and the open ones due a save.
        """
        shares = split(pv_w, battery_w, grid_w)
        out = []
        seen = set()
        for cid, status, power_w, session_wh, line_a, id_tag in chargers:
            seen.add(cid)
            current = self.open.get(cid)
            if status in ACTIVE_STATUSES:
                if current is None:
                    current = Session(cid, now_unix)
                wh = max(0.0, power_w) * dt_s / 3600
                integrated = current.integrated_wh + wh
                energy = session_wh if session_wh else integrated
                current = replace(
                    current,
                    integrated_wh=integrated,
                    energy_wh=max(current.energy_wh, energy),
                    pv_wh=current.pv_wh + wh * shares[0],
                    battery_wh=current.battery_wh + wh * shares[1],
                    grid_wh=current.grid_wh + wh * shares[2],
                    peak_a=max(current.peak_a, line_a),
                    id_tag=current.id_tag or id_tag,  # the charger may say it a message later
                )
                if now_unix - current.saved_unix >= SAVE_EVERY_S:
                    current = replace(current, saved_unix=now_unix)
                    out.append(current)
                self.open[cid] = current
            elif current is not None:
                out.append(replace(current, end_unix=now_unix))
                del self.open[cid]
        for cid in [c for c in self.open if c not in seen]:  # removed by a reload
            out.append(replace(self.open.pop(cid), end_unix=now_unix))
        return out


class SessionLog:
    """The SQLite file; writes go through one thread fed by a queue."""

    def __init__(self, state_dir: str | Path | None, keep_days: float) -> None:
        self.path = Path(state_dir) / FILE_NAME if state_dir is not None else None
        self.keep_days = keep_days
        self._queue: queue.Queue[Session | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (charger TEXT NOT NULL, start_unix REAL NOT NULL,"
            " end_unix REAL, energy_wh REAL, pv_wh REAL, battery_wh REAL, grid_wh REAL,"
            " peak_a REAL, id_tag TEXT, PRIMARY KEY (charger, start_unix))"
        )
        return db

    def open_rows(self) -> dict[str, Session]:
        """Sessions left running by the last run, to continue (the newest per charger)."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            with self._connect() as db:
                rows = db.execute(
                    f"SELECT {', '.join(COLUMNS)} FROM sessions WHERE end_unix IS NULL"
                    " ORDER BY start_unix"
                ).fetchall()
        except sqlite3.Error as exc:
            log.error("session log %s unreadable: %s", self.path, exc)
            return {}
        # The charger's register count restarts with the new connection: count on from here.
        return {r[0]: replace(Session(*r), integrated_wh=r[3] or 0.0) for r in rows}

    def start(self) -> None:
        if self.path is not None:
            self._thread = threading.Thread(target=self._write, name="session log", daemon=True)
            self._thread.start()

    def save(self, sessions: Iterable[Session]) -> None:
        """Called from the hub's hook: never waits."""
        if self._thread is not None:
            for s in sessions:
                self._queue.put(s)

    def stop(self, open_sessions: Iterable[Session] = ()) -> None:
        if self._thread is None:
            return
        self.save(open_sessions)
        self._queue.put(None)
        self._thread.join(10)
        self._thread = None

    def _write(self) -> None:
        try:
            db = self._connect()
            oldest = time.time() - self.keep_days * 86400
            db.execute("DELETE FROM sessions WHERE start_unix < ?", (oldest,))
            db.commit()
        except sqlite3.Error as exc:
            log.error("session log %s: %s; sessions are not recorded", self.path, exc)
            return
        while (session := self._queue.get()) is not None:
            row = asdict(session)
            try:
                db.execute(
                    f"INSERT OR REPLACE INTO sessions ({', '.join(COLUMNS)})"
                    f" VALUES ({', '.join('?' * len(COLUMNS))})",
                    [row[c] for c in COLUMNS],
                )
                db.commit()
            except sqlite3.Error as exc:
                log.error("session log %s: %s", self.path, exc)
        db.close()

    def query(
        self, charger: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Rows, newest first (its own connection: safe from any thread)."""
        if self.path is None or not self.path.exists():
            return []
        where, args = [], []
        for clause, value in (
            ("charger = ?", charger),
            ("start_unix >= ?", since),
            ("start_unix < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with sqlite3.connect(self.path, timeout=5) as db:
            rows = db.execute(sql + " ORDER BY start_unix DESC", args).fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="/etc/evse-gateway/config.toml")
    parser.add_argument("--csv", action="store_true", help="CSV instead of a table")
    parser.add_argument("--charger", help="only this charger")


def run(args: argparse.Namespace) -> int:
    """`evse-gateway sessions`: print the session log."""
    from gateway.config import load_config

    config = load_config(args.config)
    rows = SessionLog(config.state.dir, config.state.session_days).query(args.charger)
    if args.csv:
        write_csv(rows, sys.stdout)
        return 0
    print(
        f"{'charger':<12} {'start':<16} {'end':<16} {'kWh':>7} "
        f"{'PV':>6} {'batt':>6} {'grid':>6} {'peak A':>6}"
    )
    for r in rows:
        end = _when(r["end_unix"]) if r["end_unix"] is not None else "running"
        print(
            f"{r['charger']:<12} {_when(r['start_unix']):<16} {end:<16} "
            f"{r['energy_wh'] / 1000:7.2f} {r['pv_wh'] / 1000:6.2f} {r['battery_wh'] / 1000:6.2f} "
            f"{r['grid_wh'] / 1000:6.2f} {r['peak_a']:6.1f}"
        )
    return 0


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))
