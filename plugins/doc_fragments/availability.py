# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Pairs with availability_spec() in plugins/module_utils/_module.py.

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
  expected_environments:
    description:
      - The environments whose addresses the caller knows, such as the workers of an inventory. By
        environment name, a dictionary with C(url) (the environment's URL) and C(proxy_url) (where the
        proxy reaches it); either may be left out.
      - A record of one of them whose C(url), or whose C(proxyUrl) (else C(url)), is not the one given
        is skipped with a warning naming it, so that nothing is routed to an address that only a
        record claims. Records of other environments are read as they are.
    type: dict
    default: {}
"""
