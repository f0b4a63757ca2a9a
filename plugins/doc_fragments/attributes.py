# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Modules that write records: they predict in check mode and show only what differs in diff mode.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying Redis.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), only the fields that differ.
    support: full
  idempotent:
    description: A second run with the same arguments changes nothing.
    support: full
"""

    INFO_MODULE = r"""
attributes:
  check_mode:
    description: Reads only; runs unchanged in check mode.
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    description: Reads only; there is never a diff.
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    description: Reads only.
    support: full
"""
