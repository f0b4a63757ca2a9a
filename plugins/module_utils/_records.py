# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# Pure record logic (no I/O): validate what the user asked for, merge it onto the stored record
# (only the fields the user set count), and describe the difference.  Errors name the field.

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    APP_NAME_PATTERN,
    DB_CONN_TYPES,
    ENVIRONMENT_NAME_PATTERN,
    RESERVED_APP_NAMES,
    RESERVED_ENVIRONMENT_NAMES,
    ControlPlaneError,
    is_app_name,
    is_cname,
    is_environment_name,
    is_title,
    is_version,
    load_record,
)


def encode(record):
    """The one JSON form every writer uses, so equal records are equal strings."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def decode(raw, what):
    """The record `raw` read back from Redis, or ControlPlaneError naming `what` (see load_record)."""
    if raw is None:
        return None
    try:
        return load_record(raw)
    except ValueError as exc:
        raise ControlPlaneError("%s %s; the keyspace was written by something else" % (what, exc)) from None


def check_environment_name(name, field="name"):
    if name in RESERVED_ENVIRONMENT_NAMES:
        raise ControlPlaneError("%s: %r is reserved (a word of nginx's configuration)" % (field, name))
    if not is_environment_name(name):
        raise ControlPlaneError(
            "%s: %r is not a valid environment name (pattern %s)" % (field, name, ENVIRONMENT_NAME_PATTERN)
        )


def check_app_name(name, field="name"):
    if name == "main":
        raise ControlPlaneError("%s: %r is reserved for the supervisor's own app" % (field, name))
    if name in RESERVED_APP_NAMES:
        raise ControlPlaneError("%s: %r is reserved (a word of nginx's configuration)" % (field, name))
    if not is_app_name(name):
        raise ControlPlaneError("%s: %r is not a valid app name (pattern %s)" % (field, name, APP_NAME_PATTERN))


# What a URL of a record may hold, because the proxy writes it into nginx's configuration: http or
# https, a host of hostname (Docker names may hold "_") or IPv4/IPv6 characters, an optional port and an optional path of safe
# characters. No nginx variable ($), quote, ';', brace, whitespace or control character.
_SAFE_URL_RE = re.compile(r"https?://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?")
# Far below what nginx takes in one configuration token (a URL of 4 KB failed `nginx -t`).
MAX_URL_LENGTH = 1024


def check_http_url(value, field):
    """Absolute http(s) URL with a host, of characters safe in nginx; '' is allowed and means 'unset'."""
    if value == "":
        return
    if isinstance(value, str) and len(value) > MAX_URL_LENGTH:
        raise ControlPlaneError("%s: a URL of %d characters is longer than the %d allowed"
                                % (field, len(value), MAX_URL_LENGTH))
    if not isinstance(value, str) or not _SAFE_URL_RE.fullmatch(value):
        raise ControlPlaneError(
            "%s: %r must be an absolute http:// or https:// URL: a host name or address, an optional port "
            "and path, and no $, quote, ';', brace, whitespace or control character" % (field, value))
    try:
        port = urlsplit(value).port
    except ValueError as exc:
        raise ControlPlaneError("%s: %r is not a valid URL (%s)" % (field, value, exc)) from None
    if port == 0:
        raise ControlPlaneError("%s: %r is not a valid URL (port 0)" % (field, value))


def check_expected_environments(value, field="expected_environments"):
    """{environment: {url, proxy_url}} with valid names and URLs (either URL may be left out)."""
    if not isinstance(value, dict):
        raise ControlPlaneError("%s: must be a dictionary of environments" % field)
    for name, urls in value.items():
        check_environment_name(name, field)
        if not isinstance(urls, dict) or set(urls) - {"url", "proxy_url"}:
            raise ControlPlaneError("%s.%s: must be a dictionary with url and proxy_url" % (field, name))
        for option in ("url", "proxy_url"):
            if urls.get(option) is not None:
                check_http_url(urls[option], "%s.%s.%s" % (field, name, option))
    return value


def record_problem(kind, key, raw):
    """Why a record read back from Redis cannot be trusted (naming the key and field), or None.

    Records are written by our modules, but every node and agent holds a Redis password: what is
    read back is checked again before it reaches a template, a command line or a decision.
    """
    try:
        record = decode(raw, "%s record %r" % (kind, key))
    except ControlPlaneError as exc:
        return str(exc)
    try:
        if record.get("name") != key:
            raise ControlPlaneError("name: %r is not the record's key %r" % (record.get("name"), key))
        if kind == "environment":
            check_environment_name(key, "name")
            for field in ("url", "proxyUrl"):
                if field in record:
                    check_http_url(record[field], field)
            version = record.get("appVersion")
            if version is not None and not is_version(version):
                raise ControlPlaneError("appVersion: %r is not a version" % (version,))
        else:
            check_app_name(key, "name")
            environments = record.get("environments", [])
            if not isinstance(environments, list):
                raise ControlPlaneError("environments: must be a list")
            for env in environments:
                check_environment_name(env, "environments")
            if record.get("proxyEnvironment") is not None:
                check_environment_name(record["proxyEnvironment"], "proxyEnvironment")
            if record.get("title") is not None and not is_title(record["title"]):
                raise ControlPlaneError("title: must be one line of at most 255 characters")
            if record.get("cname") is not None and not is_cname(record["cname"]):
                raise ControlPlaneError("cname: %r is not a DNS name" % (record["cname"],))
            for field in ("options",):
                if not isinstance(record.get(field, {}), dict):
                    raise ControlPlaneError("%s: must be an object" % field)
    except ControlPlaneError as exc:
        return "%s record %r: %s" % (kind, key, exc)
    return None


def merge(current, updates):
    """Apply the user-set fields (None = not set, '' or [] = remove) onto a stored record."""
    wanted = dict(current or {})
    for field, value in updates.items():
        if value is None:
            continue
        if value in ("", [], {}):
            wanted.pop(field, None)
        else:
            wanted[field] = value
    return wanted


def changed_fields(before, after):
    """Only the fields that differ, as (before, after) dicts."""
    before = before or {}
    after = after or {}
    fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return ({k: before[k] for k in fields if k in before}, {k: after[k] for k in fields if k in after})


def environment_updates(item, prefix=""):
    """Validated field updates (protocol names) from one environment item of the module."""
    check_environment_name(item["name"], prefix + "name")
    for option in ("url", "proxy_url"):
        if item.get(option) is not None:
            check_http_url(item[option], prefix + option)
    if item.get("app_version") and not is_version(item["app_version"]):
        raise ControlPlaneError("%sapp_version: %r is not a version" % (prefix, item["app_version"]))
    return {
        "name": item["name"],
        "url": item.get("url"),
        "proxyUrl": item.get("proxy_url"),
        "appVersion": item.get("app_version"),
    }


def environments_to_register(records, wanted):
    """The items of `wanted` (as the environment module takes them) that have no record among
    `records` (as read), or whose record the environment module would change."""
    current = {record["name"]: record for record in records or []}
    return [item for item in wanted or []
            if item["name"] not in current or merge(current[item["name"]], environment_updates(item)) != current[item["name"]]]


def check_new_environment(record, prefix=""):
    if not record.get("url"):
        raise ControlPlaneError("%surl is required to register the new environment %r" % (prefix, record["name"]))


def app_updates(item, prefix=""):
    """Validated field updates (protocol names) from one app item of the module."""
    check_app_name(item["name"], prefix + "name")
    environments = item.get("environments")
    if environments is not None:
        if len(set(environments)) != len(environments):
            raise ControlPlaneError("%senvironments lists an environment twice: %s" % (prefix, environments))
        for env in environments:
            check_environment_name(env, prefix + "environments")
    if item.get("proxy_environment"):
        check_environment_name(item["proxy_environment"], prefix + "proxy_environment")
    if item.get("cname") and not is_cname(item["cname"]):
        raise ControlPlaneError("%scname: %r is not a DNS name (lower-case)" % (prefix, item["cname"]))
    if item.get("title") and not is_title(item["title"]):
        raise ControlPlaneError("%stitle: must be one line of at most 255 characters" % prefix)
    options = item.get("options")
    if options is not None:
        conn_type = options.get("dbConnType")
        if conn_type is not None and conn_type not in DB_CONN_TYPES:
            raise ControlPlaneError(
                "%soptions.dbConnType: %r is not one of %s" % (prefix, conn_type, ", ".join(DB_CONN_TYPES))
            )
        if options.get("database") is not None and not isinstance(options["database"], dict):
            raise ControlPlaneError("%soptions.database must be a dictionary (IDatabaseOptions)" % prefix)
    return {
        "name": item["name"],
        "title": item.get("title"),
        "environments": environments,
        "options": options,
        "proxyEnvironment": item.get("proxy_environment"),
        "cname": item.get("cname"),
        "managedBy": item.get("managed_by"),
    }


def check_app(record, registered, require_registered, prefix=""):
    """Rules on the merged record: it runs somewhere, its proxy target is one of its environments."""
    environments = record.get("environments") or []
    if not environments:
        raise ControlPlaneError("%senvironments must name at least one environment for app %r" % (prefix, record["name"]))
    target = record.get("proxyEnvironment")
    if target and target not in environments:
        raise ControlPlaneError(
            "%sproxy_environment: %r is not one of the app's environments %s" % (prefix, target, environments)
        )
    if require_registered:
        missing = [env for env in environments if env not in registered]
        if missing:
            raise ControlPlaneError(
                "%senvironments: not registered: %s (register them with nocobase.multienv.environment, "
                "or set require_registered_environments=false)" % (prefix, ", ".join(missing))
            )
