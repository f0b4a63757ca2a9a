# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of nocobase.multienv.platform_secrets (documented in plugins/modules/platform_secrets.py)."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import (
    SECRETS,
    fingerprint,
    generate,
    load,
    load_verified,
    write_new,
)


ARGUMENT_SPEC = {
    "volumes": {"type": "list", "elements": "dict", "default": []},
    "fingerprint_label": {"type": "str", "required": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        platform = self._templar.template(task_vars["nocobase_platform"])
        directory = self._templar.template(task_vars["nocobase_secrets_dir"])
        may_generate = boolean(self._templar.template(task_vars["nocobase_secrets_generate"]), strict=False)
        label = args["fingerprint_label"]
        fingerprints = {volume["Name"]: volume["Labels"][label] for volume in args["volumes"]
                        if label in (volume.get("Labels") or {})}
        result["changed"] = False

        secrets = load(directory, task_vars, self._templar.template)

        if fingerprints and secrets["aes_secret_key"] is None:
            return dict(result, failed=True, msg=(
                "The data in %s is encrypted with an AES key (APP_AES_SECRET_KEY), but nocobase_aes_secret_key is not "
                "set and %s/aes_secret_key does not exist: the secrets directory was lost or moved. A new key would make "
                "that data unreadable, so nothing was changed. Restore the whole directory %s from your backup (or set "
                "the nocobase_* secrets from vault) and run again." % (", ".join(sorted(fingerprints)), directory, directory)))

        generated = [secret for secret in SECRETS if secrets[secret["name"]] is None] if may_generate else []
        for secret in generated:  # in check mode: predicted, used for this run only
            secrets[secret["name"]] = generate(secret["alphabet"], secret["length"])
            if not self._task.check_mode:
                write_new(directory, secret["name"], secrets[secret["name"]])
        result["changed"] = bool(generated)
        result["generated"] = [secret["var"] for secret in generated]

        key_fingerprint = fingerprint(secrets["aes_secret_key"], platform)
        mismatched = sorted(name for name, value in fingerprints.items() if value != key_fingerprint)
        if mismatched:
            return dict(result, failed=True, msg=(
                "nocobase_aes_secret_key is not the AES key the data in %s was encrypted with (the volume's label %s "
                "holds the key's fingerprint): NocoBase could not read that data with it, so nothing was changed. "
                "Restore the secrets directory %s (or the vault variable) the platform was deployed with, and run "
                "again." % (", ".join(mismatched), label, directory)))
        # Hidden like a no_log task's; its failures above stay readable.
        result.update(secrets=secrets, aes_key_fingerprint=key_fingerprint, verified=load_verified(directory),
                      _ansible_no_log=True)
        return result
