"""The lock of plugins/module_utils/_run_lock.py on a real directory."""
from __future__ import annotations

import os
import time

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._run_lock import LockHeld, release, take


def test_one_owner_at_a_time_and_only_the_owner_releases(tmp_path):
    lock = str(tmp_path / ".lock")
    assert take(lock, "backup 1", 3600) == (True, None)
    assert take(lock, "backup 1", 3600) == (False, None)  # its own: idempotent
    with pytest.raises(LockHeld, match="is held by the run backup 1 since 0 s"):
        take(lock, "backup 2", 3600)
    assert release(lock, "backup 2") is False and os.path.isdir(lock)
    assert release(lock, "backup 1") is True and not os.path.exists(lock)
    assert release(lock, "backup 1") is False


def test_a_stale_lock_is_taken_over(tmp_path):
    lock = str(tmp_path / ".lock")
    take(lock, "killed run", 3600)
    os.utime(lock, (time.time() - 7200, time.time() - 7200))
    assert take(lock, "backup 2", 3600) == (True, "killed run")
    assert (tmp_path / ".lock" / "owner").read_text() == "backup 2\n"


def test_check_mode_predicts_and_writes_nothing(tmp_path):
    lock = str(tmp_path / ".lock")
    assert take(lock, "backup 1", 3600, check_mode=True) == (True, None)
    assert not os.path.exists(lock)
    take(lock, "backup 1", 3600)
    assert release(lock, "backup 1", check_mode=True) is True and os.path.isdir(lock)
