"""The owner's password and script tokens: hashing, checking, failed-login rate limit.

Only hashes are stored (in the config's `[web]` section, PBKDF2-SHA256 with a random
salt); `evse-gateway passwd` writes them. The page logs in once and gets a session
cookie (HttpOnly, SameSite=Strict); scripts send `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import re
import secrets
import sys
from collections import deque
from pathlib import Path

ITERATIONS = 200_000
SCHEME = "pbkdf2_sha256"


def hash_secret(secret: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), iterations).hex()
    return f"{SCHEME}${iterations}${salt}${digest}"


def check_secret(secret: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, iterations, salt, digest = stored.split("$")
        rounds = int(iterations)
    except ValueError:
        return False
    if scheme != SCHEME:
        return False
    found = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), rounds).hex()
    return hmac.compare_digest(found, digest)


class FailedLogins:
    """At most `allowed` failures per client within `window_s`; `now` is passed in."""

    def __init__(self, allowed: int = 5, window_s: float = 60.0) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float) -> bool:
        recent = self._failures.get(client)
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        return bool(recent) and len(recent) >= self.allowed

    def failed(self, client: str, now: float) -> None:
        self._failures.setdefault(client, deque()).append(now)
        if len(self._failures) > 10_000:  # bounded: a scan of many addresses cannot grow it
            self._failures.pop(next(iter(self._failures)))


def set_key(text: str, key: str, value: str) -> str:
    """`text` (a TOML config) with `[web] key = "value"` set, adding the section if missing."""
    line = f'{key} = "{value}"'
    section = re.search(r"(?m)^\[web\][ \t]*$", text)
    if section is None:
        return text.rstrip("\n") + f"\n\n[web]\n{line}\n"
    end = re.search(r"(?m)^\[", text[section.end() :])
    body_end = section.end() + end.start() if end else len(text)
    body = text[section.end() : body_end]
    existing = re.compile(rf"(?m)^{key}[ \t]*=.*$")
    body = existing.sub(line, body) if existing.search(body) else f"\n{line}" + body
    return text[: section.end()] + body + text[body_end:]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="/etc/evse-gateway/config.toml")
    parser.add_argument(
        "--token", action="store_true", help="make a new token for scripts instead (printed once)"
    )
    parser.add_argument("--stdin", action="store_true", help="read the password from stdin")


def run(args: argparse.Namespace) -> int:
    """`evse-gateway passwd`: store the owner's password (or a new token) hashed."""
    path = Path(args.config)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.token:
        secret = secrets.token_urlsafe(24)
        key = "token_hash"
    else:
        secret = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass()
        key = "password_hash"
        if len(secret) < 6:
            print("error: the password needs at least 6 characters", file=sys.stderr)
            return 2
    try:
        path.write_text(set_key(text, key, hash_secret(secret)))
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.token:
        print(secret)
    print(f"{key} set in {path}; reload or restart the service to apply", file=sys.stderr)
    return 0
