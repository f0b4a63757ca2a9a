# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The platform's status as a text table, from the records environment_info and app_info return.
# Records come from Redis and are not trusted: every cell is cut to one printable line.

from __future__ import annotations

import time

_CELL_WIDTH = 48
_CLOCK_SKEW_MS = 60_000


def cell(value):
    """One printable line of at most _CELL_WIDTH characters."""
    text = "-" if value is None or value == "" else str(value)
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= _CELL_WIDTH else text[:_CELL_WIDTH - 1] + "~"


def _table(header, rows):
    widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in [header] + rows]


def _age(seconds):
    if seconds is None:
        return "never"
    seconds = int(seconds)
    return "%d s ago" % seconds if seconds < 120 else "%d min ago" % (seconds // 60)


def _last_change(statuses, now_ms):
    """The newest status of an app among its environments: (environment, its status record), or None."""
    # A record's time is trusted only as an epoch in milliseconds up to a minute ahead of this clock.
    dated = [(record["updatedAt"], str(env), record) for env, record in statuses.items()
             if isinstance(record, dict) and isinstance(record.get("updatedAt"), int)
             and not isinstance(record["updatedAt"], bool)
             and 0 <= record["updatedAt"] <= now_ms + _CLOCK_SKEW_MS]
    if not dated:
        return None
    updated, env, record = max(dated, key=lambda item: item[:2])
    return "%s: %s %s" % (env, record.get("status") or "none", _age(max(0, now_ms - updated) // 1000))


def lines(environments, apps, now_ms=None):
    """The status as lines of text: environments, then apps, then the messages of apps in error."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    available = [env for env in environments if env.get("available")]
    out = ["Environments: %d, %d available" % (len(environments), len(available))]
    out += _table(["NAME", "URL", "VERSION", "HEARTBEAT", "AVAILABLE"], [
        [cell(env.get("name")), cell(env.get("url")), cell(env.get("appVersion")), cell(_age(env.get("heartbeatAge"))),
         "yes" if env.get("available") else "NO"] for env in environments])
    out += ["", "Apps: %d" % len(apps)]
    rows = []
    for app in apps:
        statuses = app.get("status") or {}
        target = app.get("proxyTarget") or {}
        rows.append([
            cell(app.get("name")),
            cell(", ".join(str(env) for env in app.get("environments") or [])),
            cell(target.get("environment")),
            cell(", ".join("%s: %s" % (env, (statuses.get(env) or {}).get("status") or "none")
                           for env in app.get("environments") or [])),
            cell(_last_change(statuses, now_ms)),
        ])
    out += _table(["NAME", "ENVIRONMENTS", "PROXIED TO", "STATUS", "LAST CHANGE"], rows)
    errors = [(app.get("name"), env, record.get("message")) for app in apps
              for env, record in sorted((app.get("status") or {}).items(), key=lambda item: str(item[0]))
              if isinstance(record, dict) and record.get("status") == "error"]
    if errors:
        out += ["", "Errors:"] + ["  %s in %s: %s" % (cell(name), cell(env), cell(message)) for name, env, message in errors]
    return out
