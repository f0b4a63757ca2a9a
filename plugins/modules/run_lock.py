#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: Let one run at a time use a directory, such as a platform's backups
version_added: 0.3.0
description:
  - Takes or releases a lock on the host it runs on. The lock is a directory made with C(mkdir),
    which either makes it or fails, so two runs never both hold it; it names the run that holds it.
  - A lock older than O(stale_after) was left by a run that was killed, and is taken over with a warning.
  - The C(nocobase.multienv.backup) role holds one in O(path)=C(<nocobase_backup_dir>/.lock) while
    it backs up or restores, so that a backup never prunes or reads the directory of another.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.attributes
attributes:
  diff_mode:
    support: none
    details:
      - No diff; RV(taken_over) says whose lock was taken over.
options:
  path:
    description: The lock directory. Its parent must exist.
    type: path
    required: true
  owner:
    description: The run that takes or releases the lock, for example a backup's id.
    type: str
    required: true
  state:
    description: V(present) takes the lock (fails while another run holds it), V(absent) releases it if O(owner) holds it.
    type: str
    choices: [present, absent]
    default: present
  stale_after:
    description: Seconds after which a lock held by another run is taken over.
    type: int
    default: 21600
"""

EXAMPLES = r"""
- name: Take the lock of the backups
  nocobase.multienv.run_lock:
    path: "{{ nocobase_backup_dir }}/.lock"
    owner: "{{ backup_id }}"
  delegate_to: localhost

- name: Release it
  nocobase.multienv.run_lock:
    path: "{{ nocobase_backup_dir }}/.lock"
    owner: "{{ backup_id }}"
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
taken_over:
  description: The run whose stale lock was taken over, or null.
  returned: success
  type: str
  sample: 20261207T101500Z
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nocobase.multienv.plugins.module_utils._run_lock import LockHeld, release, take


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True), owner=dict(type="str", required=True),
                           state=dict(type="str", choices=["present", "absent"], default="present"),
                           stale_after=dict(type="int", default=21600)),
        supports_check_mode=True,
    )
    params = module.params
    if not params["owner"].strip() or "\n" in params["owner"]:
        module.fail_json(msg="owner: must be one line that is not empty")
    taken_over = None
    try:
        if params["state"] == "present":
            changed, taken_over = take(params["path"], params["owner"], params["stale_after"], module.check_mode)
            if taken_over:
                module.warn("took over the lock %s that the run %s left" % (params["path"], taken_over))
        else:
            changed = release(params["path"], params["owner"], module.check_mode)
    except LockHeld as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="path: %s" % exc)
    module.exit_json(changed=changed, taken_over=taken_over)


if __name__ == "__main__":
    main()
