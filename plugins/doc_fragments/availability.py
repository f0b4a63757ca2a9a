# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Pairs with stale_after_spec() in plugins/module_utils/_module.py.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  stale_after:
    description:
      - Seconds after its last heartbeat at which an environment counts as unavailable. Availability
        is derived on every read and never stored.
      - NocoBase beats every 120 seconds; the default tolerates three missed beats.
    type: int
    default: 360
"""
