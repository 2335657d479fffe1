"""`evse-gateway settings`: read or change the runtime settings of a running gateway.

It goes through the daemon's REST API (`PUT /api/v1/settings`) rather than the store's
file: the daemon owns the store, and a second process writing the file would race it.
Changes need the token made by `evse-gateway passwd --token` (`--token` or the
environment variable EVSE_GATEWAY_TOKEN).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

SITE = "site"
CHARGER_KEYS = ("mode", "max_current_a")
SITE_KEYS = ("current_limit_a",)


class UsageError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "changes",
        nargs="*",
        metavar="ID.KEY=VALUE",
        help="e.g. garage.mode=standard, garage.max_current_a=10, site.current_limit_a=20; "
        "VALUE 'config' goes back to the config's setting; none: print the settings",
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the gateway's web address (%(default)s)"
    )
    parser.add_argument("--token", help="the script token (default: $EVSE_GATEWAY_TOKEN)")


def _value(key: str, text: str) -> Any:
    if text == "config":
        return None
    if key == "mode":
        return text
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{key}: {text!r} is not a number") from None


def document(changes: list[str]) -> dict[str, Any]:
    """`ID.KEY=VALUE` words -> the PUT body (the API checks the values)."""
    doc: dict[str, Any] = {}
    for change in changes:
        target, sep, text = change.partition("=")
        owner, dot, key = target.rpartition(".")
        if not sep or not dot or not owner:
            raise UsageError(f"{change!r}: expected ID.KEY=VALUE")
        if owner == SITE:
            if key not in SITE_KEYS:
                raise UsageError(f"{target}: the site has {', '.join(SITE_KEYS)}")
            doc.setdefault("site", {})[key] = _value(key, text)
        else:
            if key not in CHARGER_KEYS:
                raise UsageError(f"{target}: a charger has {', '.join(CHARGER_KEYS)}")
            doc.setdefault("chargers", {}).setdefault(owner, {})[key] = _value(key, text)
    return doc


def _call(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, {"error": exc.reason}


def run(args: argparse.Namespace) -> int:
    try:
        body = document(args.changes)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + "/api/v1/settings"
    if body:
        token = args.token or os.environ.get("EVSE_GATEWAY_TOKEN")
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="PUT"
        )
    else:
        request = urllib.request.Request(url)
    try:
        status, reply = _call(request)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"error: no gateway answered at {args.url}: {reason}", file=sys.stderr)
        return 1
    if status != 200:
        field = f" ({reply['field']})" if isinstance(reply, dict) and reply.get("field") else ""
        error = reply.get("error") if isinstance(reply, dict) else reply
        print(f"error: {status}: {error}{field}", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0
