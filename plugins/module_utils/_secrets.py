# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The platform secrets: which they are, keyed hashes of them, generated values, and the files of
# the secrets directory on the controller they are kept in.

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string

# Secrets: variable -> name of its file in nocobase_secrets_dir, and how a generated one looks.
SECRETS = (
    {"name": "app_key", "var": "nocobase_app_key", "alphabet": "letters_digits", "length": 64},
    {"name": "aes_secret_key", "var": "nocobase_aes_secret_key", "alphabet": "hex", "length": 64},
    {"name": "redis_password", "var": "nocobase_redis_password", "alphabet": "letters_digits", "length": 32},
    {"name": "postgres_password", "var": "nocobase_postgres_password", "alphabet": "letters_digits", "length": 32},
    {"name": "db_password", "var": "nocobase_db_password", "alphabet": "letters_digits", "length": 32},
    {"name": "root_password", "var": "nocobase_root_password", "alphabet": "letters_digits", "length": 32},
)
ALPHABETS = {"letters_digits": string.ascii_letters + string.digits, "hex": string.digits + "abcdef"}


def keyed_hash(key, message, length):
    """HMAC-SHA256 of `message` keyed with `key`, the first `length` hexadecimal digits."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()[:length]


def fingerprint(secret, platform):
    """Identifies a high-entropy secret without revealing it (stored with the data it protects)."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("the secret is empty")
    return keyed_hash("nocobase-multienv secret fingerprint " + str(platform), secret, 32)


def generate(alphabet, length):
    characters = ALPHABETS[alphabet]
    return "".join(secrets.choice(characters) for dummy in range(length))


# Files of the secrets directory that record a check that passed (nocobase_skip_unchanged): the name
# of the check after the prefix, and the fingerprint of what it checked (the container and the
# inputs) as content.
VERIFIED_PREFIX = "verified-"


def load_verified(directory):
    """check name -> the fingerprint recorded when it last passed."""
    if not os.path.isdir(directory):
        return {}
    verified = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(VERIFIED_PREFIX) and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                verified[name[len(VERIFIED_PREFIX):]] = handle.read().strip()
    return verified


def parse_file(text):
    """The secret in a file of the secrets directory; files that ansible.builtin.password wrote
    before 0.2.0 may carry a ` salt=` suffix after it."""
    return text.rstrip("\r\n").split(" salt=")[0]


def load(directory, variables, template):
    """name -> the secret as set (a variable of `variables`, through `template`; null is not set),
    else as kept in `directory`, else None."""
    secrets = {}
    for spec in SECRETS:
        path = os.path.join(directory, spec["name"])
        value = template(variables[spec["var"]]) if spec["var"] in variables else None
        if value is not None:
            secrets[spec["name"]] = str(value)
        elif os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                secrets[spec["name"]] = parse_file(handle.read())
        else:
            secrets[spec["name"]] = None
    return secrets


def write_new(directory, name, value):
    """A new file of the secrets directory: directory 0700, file 0600, never overwritten."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    descriptor = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
