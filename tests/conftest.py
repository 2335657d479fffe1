"""Shared test helpers: run the CLI as a real subprocess from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: 300 examples each in the normal run; HYPOTHESIS_PROFILE=thorough for more.
settings.register_profile("default", max_examples=300)
settings.register_profile("thorough", max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def cli():
    return run_cli
