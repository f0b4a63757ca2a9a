# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The docker_engine_state, docker_image_reference, docker_images_to_pull, docker_pull_failure,
nodes_to_upgrade, node_images and upgrade_rollback_arguments filters (documented in their .yml files)."""

from __future__ import annotations

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    engine_state,
    image_reference,
    images_to_pull,
    node_images,
    nodes_to_upgrade,
    pull_failure,
    rollback_arguments,
)


def docker_engine_state(listing):
    return engine_state(listing)


def docker_image_reference(image):
    return image_reference(image)


class FilterModule:
    def filters(self):
        return {"docker_engine_state": docker_engine_state, "docker_image_reference": docker_image_reference,
                "docker_images_to_pull": images_to_pull, "docker_pull_failure": pull_failure,
                "nodes_to_upgrade": nodes_to_upgrade, "node_images": node_images,
                "upgrade_rollback_arguments": rollback_arguments}
