"""The SQL plan of the postgres role (plugins/module_utils/_postgres.py)."""
from __future__ import annotations

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._postgres import plan

SETTLED = {"role": {"login": True, "createdb": True}, "databases": {"db_a": "nocobase"},
           "user_login": True, "superuser_login": True}


def run(observed, databases=("db_a",)):
    return plan(observed, "nocobase", "postgres", list(databases), "user'pw", "super-pw")


def test_nothing_to_do_when_everything_holds():
    assert run(SETTLED) == []


def test_a_new_platform_gets_the_role_and_the_databases():
    steps = run({"role": None, "databases": {}, "user_login": False, "superuser_login": True}, ["db_a", "db_b"])
    assert [step["action"] for step in steps] == ["create role nocobase", "create database db_a", "create database db_b"]
    assert steps[0]["sql"] == "CREATE ROLE \"nocobase\" LOGIN CREATEDB PASSWORD 'user''pw';"  # the quote is doubled
    assert steps[1]["sql"] == 'CREATE DATABASE "db_a" OWNER "nocobase";'


def test_changed_passwords_rights_and_owners_are_set_again():
    observed = {"role": {"login": True, "createdb": False}, "databases": {"db_a": "someone"},
                "user_login": False, "superuser_login": False}
    assert [step["action"] for step in run(observed)] == [
        "grant LOGIN CREATEDB to nocobase", "set the password of nocobase", "set the password of postgres",
        "make nocobase the owner of db_a"]


@pytest.mark.parametrize("databases", [['x"; DROP DATABASE y; --'], ["Upper"], [""]])
def test_a_name_that_is_not_a_plain_identifier_never_reaches_sql(databases):
    with pytest.raises(ValueError, match="is not a valid PostgreSQL name"):
        run(dict(SETTLED, databases={}), databases)
