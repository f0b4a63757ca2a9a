# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The secret_fingerprint filter (documented in secret_fingerprint.yml)."""

from __future__ import annotations

import hashlib
import hmac

from ansible.errors import AnsibleFilterError


def secret_fingerprint(value, platform):
    if not isinstance(value, str) or not value:
        raise AnsibleFilterError("secret_fingerprint: the secret is empty")
    return hmac.new(("nocobase-multienv secret fingerprint " + str(platform)).encode(), value.encode(),
                    hashlib.sha256).hexdigest()[:32]


class FilterModule:
    def filters(self):
        return {"secret_fingerprint": secret_fingerprint}
