# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The platform's status as a text table, from the records environment_info and app_info return.
# Records come from Redis and are not trusted: every cell is cut to one printable line.

from __future__ import annotations

_CELL_WIDTH = 48


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


def lines(environments, apps):
    """The status as lines of text: environments, then apps."""
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
        ])
    out += _table(["NAME", "ENVIRONMENTS", "PROXIED TO", "STATUS"], rows)
    return out
