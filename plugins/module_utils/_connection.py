# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The Redis connection shared by every module and the lookup.  It pairs with the doc fragment
# plugins/doc_fragments/connection.py: an option added here is documented there.

from __future__ import annotations

import os
import ssl
from urllib.parse import unquote, urlsplit

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import DEFAULT_KEY_PREFIX, ControlPlaneError
from ansible_collections.nocobase.multienv.plugins.module_utils._resp import Client, ConnectionFailed, ReplyError, TLSFailed

SUPERVISOR_REDIS_URL_ENV = "APP_SUPERVISOR_REDIS_URL"


def connection_argument_spec():
    """A fresh dict on every call, so one module's changes never leak into another's."""
    from ansible.module_utils.basic import env_fallback

    return dict(
        redis_url=dict(type="str", required=True, no_log=True, fallback=(env_fallback, [SUPERVISOR_REDIS_URL_ENV])),
        key_prefix=dict(type="str", default=DEFAULT_KEY_PREFIX, no_log=False),
        tls_ca_file=dict(type="path"),
        tls_cert_file=dict(type="path"),
        tls_key_file=dict(type="path", no_log=False),
        validate_certs=dict(type="bool", default=True),
        connect_timeout=dict(type="float", default=10.0),
    )


CONNECTION_REQUIRED_TOGETHER = [("tls_cert_file", "tls_key_file")]


def parse_redis_url(url):
    """Check a redis:// or rediss:// URL; return (parts, password).  Errors name `redis_url`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ControlPlaneError("redis_url is malformed: %s" % exc) from None
    if parts.scheme not in ("redis", "rediss"):
        raise ControlPlaneError("redis_url must start with redis:// or rediss://, not %r" % (parts.scheme + "://"))
    if not parts.hostname:
        raise ControlPlaneError("redis_url has no host name")
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ControlPlaneError("redis_url must end in a database number (/0, /1 ...), not /%s" % path)
    del port
    return parts, unquote(parts.password) if parts.password else None


def describe_url(parts):
    """Where Redis is, as it may be shown: never the password, and never the whole URL (no_log hides that)."""
    user = (" as user %r" % unquote(parts.username)) if parts.username else ""
    tls = " over TLS" if parts.scheme == "rediss" else ""
    return "%s:%s (database %s%s%s)" % (parts.hostname, parts.port or 6379, parts.path.lstrip("/") or "0", user, tls)


def _tls_context(params):
    for option in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = params.get(option)
        if path and not os.access(path, os.R_OK):
            raise ControlPlaneError("%s %s cannot be read" % (option, path))
    context = ssl.create_default_context(cafile=params.get("tls_ca_file"))
    if params.get("tls_cert_file"):
        context.load_cert_chain(params["tls_cert_file"], params.get("tls_key_file"))
    if not params.get("validate_certs", True):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(params):
    """A checked connection (plugins/module_utils/_resp.py), or ControlPlaneError with a clear message."""
    parts, password = parse_redis_url(params["redis_url"])
    where = describe_url(parts)
    try:
        client = Client(
            parts.hostname,
            parts.port or 6379,
            db=int(parts.path.lstrip("/") or 0),
            username=unquote(parts.username) if parts.username else None,
            password=password,
            ssl_context=_tls_context(params) if parts.scheme == "rediss" else None,
            timeout=params["connect_timeout"],
        )
    except ReplyError as exc:
        if exc.code == "NOAUTH":
            raise ControlPlaneError("Redis at %s needs a password: put it in redis_url" % where) from None
        if exc.code == "WRONGPASS" or "password" in str(exc).lower():
            raise ControlPlaneError("Redis at %s rejected the user name or password given in redis_url" % where) from None
        raise ControlPlaneError("Redis at %s refused the connection: %s" % (where, exc)) from None
    except TLSFailed as exc:
        raise ControlPlaneError(
            "cannot reach Redis at %s over TLS: %s; check tls_ca_file (the CA that signed Redis's certificate), "
            "tls_cert_file and tls_key_file, or validate_certs" % (where, exc)) from None
    except ConnectionFailed as exc:
        raise ControlPlaneError("cannot reach Redis at %s (redis_url): %s" % (where, exc)) from None
    except (ssl.SSLError, OSError) as exc:
        raise ControlPlaneError("TLS setup for Redis at %s failed (tls_* options): %s" % (where, exc)) from None
    return client


def module_connect(module):
    """connect() for an AnsibleModule: masks the password everywhere and fails politely."""
    try:
        _parts, password = parse_redis_url(module.params["redis_url"])
        if password:
            module.no_log_values.add(password)
        return connect(module.params)
    except ControlPlaneError as exc:
        module.fail_json(msg=str(exc))
