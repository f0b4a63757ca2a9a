# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# A lock that lets one run at a time use a directory (a platform's backups): a directory made with
# mkdir, which either makes it or fails, holding a file that names its owner. A lock older than its
# stale time was left by a run that died, and is taken over.

from __future__ import annotations

import os
import shutil
import time

OWNER_FILE = "owner"


class LockHeld(Exception):
    """Another run holds the lock; the message says which, since when, and what to do."""


def _owner(path):
    try:
        with open(os.path.join(path, OWNER_FILE)) as handle:
            return handle.read(200).strip()
    except OSError:
        return ""


def _make(path, owner):
    os.mkdir(path, 0o700)
    with open(os.path.join(path, OWNER_FILE), "w") as handle:
        handle.write(owner + "\n")


def take(path, owner, stale_after, check_mode=False, now=None):
    """Take the lock for `owner`. Returns (changed, taken_over: the owner of a stale lock, or None)."""
    now = time.time() if now is None else now
    try:
        if check_mode:
            if os.path.lexists(path):
                raise FileExistsError(path)
            return True, None
        _make(path, owner)
        return True, None
    except FileExistsError:
        pass
    held_by = _owner(path)
    if held_by == owner:
        return False, None
    age = now - os.lstat(path).st_mtime
    if age <= stale_after:
        raise LockHeld("%s is held by the run %s since %d s: one backup or restore of the platform runs at a "
                       "time. If none runs (one was killed), remove %s, or wait until the lock is %d s old and "
                       "is taken over" % (path, held_by or "unknown", age, path, stale_after))
    if not check_mode:
        shutil.rmtree(path)
        _make(path, owner)
    return True, held_by or "unknown"


def release(path, owner, check_mode=False):
    """Release the lock if `owner` holds it; another run's lock is left alone. Returns changed."""
    if not os.path.isdir(path) or _owner(path) != owner:
        return False
    if not check_mode:
        shutil.rmtree(path)
    return True
