"""Run the collection's modules in-process, exactly as Ansible would (argument parsing included)."""
from __future__ import annotations

import contextlib
import importlib
import io
import json

from ansible.module_utils.testing import patch_module_args


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def run(name, args, check=False, diff=False):
    """Return the module's result dict; raise ModuleFailed with it when the module fails."""
    module = importlib.import_module("ansible_collections.nocobase.multienv.plugins.modules." + name)
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise ModuleFailed(result)
    return result
