"""Wall time of the whole `evse-gateway allocate examples/snapshot.json` process.

Starts it N times (the interpreter's start included, as a user or a script calling it
sees it) and, for scale, `python -c pass`; then lists the modules the command imports
that a bare interpreter does not, slowest first (`python -X importtime`).
Run: python bench/allocate_process.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = str(ROOT / "examples" / "snapshot.json")


def command() -> list[str]:
    """The installed command next to this interpreter, else `python -m gateway`."""
    script = Path(sys.executable).with_name("evse-gateway")
    found = str(script) if script.exists() else shutil.which("evse-gateway")
    return [found] if found else [sys.executable, "-m", "gateway"]


def times_ms(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        out.append((time.perf_counter() - started) * 1000)
    return out


def imports_ms(argv: list[str]) -> list[tuple[float, str]]:
    """Self time of each module the command imports, from `-X importtime`."""
    run = [sys.executable, "-X", "importtime", "-m", "gateway", *argv[-2:]]
    err = subprocess.run(run, check=True, capture_output=True, text=True).stderr
    bare = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True
    ).stderr
    bare_names = {line.rsplit("|", 1)[-1].strip() for line in bare.splitlines()}
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        if name.strip() not in bare_names:
            rows.append((int(self_us) / 1000, name.strip()))
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    argv = [*command(), "allocate", SNAPSHOT]
    times_ms(argv, 2)  # warm the page cache and the bytecode cache
    for label, run in (("allocate", argv), ("python -c pass", [sys.executable, "-c", "pass"])):
        t = times_ms(run, args.runs)
        print(
            f"{label:<16} mean {statistics.mean(t):6.1f} ms  median {statistics.median(t):6.1f}"
            f"  min {min(t):6.1f}  max {max(t):6.1f}  ({args.runs} runs)"
        )
    rows = imports_ms(argv)
    print(f"modules beyond a bare interpreter: {len(rows)}, {sum(r[0] for r in rows):.1f} ms")
    for ms, name in rows[:12]:
        print(f"  {ms:6.1f} ms  {name}")


if __name__ == "__main__":
    main()
