# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The docker_engine_state and container_is_current filters (documented in their .yml files)."""

from __future__ import annotations

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    container_is_current,
    engine_state,
    image_reference,
)


def docker_engine_state(listing):
    return engine_state(listing)


def docker_container_is_current(state, name, spec_hash, image, want_running=True, want_healthy=False):
    return container_is_current(state or {}, name, spec_hash, image, bool(want_running), bool(want_healthy))


def docker_image_reference(image):
    return image_reference(image)


class FilterModule:
    def filters(self):
        return {"docker_engine_state": docker_engine_state, "docker_container_is_current": docker_container_is_current,
                "docker_image_reference": docker_image_reference}
