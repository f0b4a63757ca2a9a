"""The platform secrets on the controller (plugins/module_utils/_secrets.py)."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import (
    fingerprint,
    generate,
    load,
    load_verified,
    parse_file,
    write_new,
)


def test_generated_secrets_have_their_alphabet_and_length():
    key = generate("hex", 64)
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert generate("letters_digits", 32).isalnum()
    assert generate("hex", 64) != key


def test_fingerprints_depend_on_the_platform_and_hide_the_secret():
    assert fingerprint("s" * 64, "a") != fingerprint("s" * 64, "b")
    assert len(fingerprint("s" * 64, "a")) == 32 and "s" not in fingerprint("s" * 64, "a")
    with pytest.raises(ValueError):
        fingerprint("", "a")


def test_files_of_older_releases_are_read():
    assert parse_file("abc salt=xyz\n") == "abc"
    assert parse_file("abc\n") == "abc"


def test_load_prefers_the_variable_then_the_file(tmp_path):
    (tmp_path / "db_password").write_text("from-file\n")
    (tmp_path / "app_key").write_text("file-app-key\n")
    secrets = load(str(tmp_path), {"nocobase_app_key": "vault-app-key", "nocobase_root_password": None}, lambda value: value)
    assert secrets["app_key"] == "vault-app-key"
    assert secrets["db_password"] == "from-file"
    assert secrets["root_password"] is None  # null is not set
    assert secrets["redis_password"] is None


def test_new_files_are_private_and_never_overwritten(tmp_path):
    directory = tmp_path / "secrets"
    write_new(str(directory), "app_key", "value")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "app_key").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new(str(directory), "app_key", "other")
    assert (directory / "app_key").read_text() == "value\n"


def test_verified_checks_are_read_from_their_files(tmp_path):
    assert load_verified(str(tmp_path / "missing")) == {}
    (tmp_path / "verified-postgres").write_text("abc\n")
    (tmp_path / "verified-sign-in-nb-supervisor").write_text("def")
    (tmp_path / "db_password").write_text("not a check")
    (tmp_path / "verified-dir").mkdir()
    assert load_verified(str(tmp_path)) == {"postgres": "abc", "sign-in-nb-supervisor": "def"}
