"""playbooks/upgrade.yml on a stand-in platform, between two stand-in releases built for the test.

Refused without a recent backup; the safe order (supervisor, then env_a checked, then env_b) read
from Docker's and the agents' timestamps; the maintenance page while it runs; a no-op rerun; and a
broken release (its boot fails in env_a only) that stops at env_a with env_b untouched.
"""
from __future__ import annotations

import datetime
import json
import threading
import uuid

import pytest
from harness import STANDIN_IMAGE, Platform, recap_changed

NEW_VERSION = "2.0.1-standin"
BROKEN_VERSION = "2.0.2-standin"


def _build(platform, tag, **env):
    """A stand-in release: the test image with other settings baked in."""
    dockerfile = "FROM %s\n%s" % (STANDIN_IMAGE, "".join("ENV %s=%s\n" % item for item in env.items()))
    result = platform.docker("build", "--quiet", "--tag", tag, "-", check=False, input=dockerfile)
    assert result.returncode == 0, result.stderr


def _time(docker_timestamp):
    """Docker's RFC 3339 time with nanoseconds -> an aware datetime."""
    stamp = docker_timestamp.strip().replace("Z", "+00:00")
    if "." in stamp:
        head, tail = stamp.split(".", 1)
        digits = "".join(c for c in tail if c.isdigit())
        stamp = "%s.%s%s" % (head, digits[:6].ljust(6, "0"), tail[len(digits):])
    return datetime.datetime.fromisoformat(stamp)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("upgrade")
    deployed = Platform(root, extra_vars={"nocobase_backup_dir": str(root / "backups")})
    suffix = uuid.uuid4().hex[:8]
    deployed.releases = {"new": "nocobase-multienv/nocobase-standin:upgrade-%s" % suffix,
                         "broken": "nocobase-multienv/nocobase-standin:broken-%s" % suffix}
    try:
        _build(deployed, deployed.releases["new"], STANDIN_APP_VERSION=NEW_VERSION)
        _build(deployed, deployed.releases["broken"], STANDIN_APP_VERSION=BROKEN_VERSION,
               STANDIN_FAIL_BOOT_ENVIRONMENTS="env_a")
        deployed.playbook("site.yml")
        yield deployed
    finally:
        deployed.playbook("teardown.yml", check=False)
        deployed.docker("rmi", *deployed.releases.values(), check=False)


def upgrade(platform, release, *args, check=True):
    return platform.playbook("upgrade.yml", "-e", "nocobase_image=" + platform.releases[release], *args, check=check)


def nodes(platform):
    return {"supervisor": platform.container("supervisor"), "env_a": platform.container("worker-env_a"),
            "env_b": platform.container("worker-env_b")}


def inspect(platform, container):
    return json.loads(platform.docker("inspect", container).stdout)[0]


def app_versions(platform):
    return {env: json.loads(raw).get("appVersion") for env, raw in platform.redis().hgetall("nocobase:environments").items()}


def through_proxy(platform):
    return {app: platform.get("/apps/%s/" % app)[0] for app in ("crm", "hr")}


class ProxyWatch:
    """What the proxy answers, every 0.2 s, while a playbook runs."""

    def __init__(self, platform):
        self.platform, self.answers, self.done = platform, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.wait(0.2):
            self.answers.append(self.platform.get("/apps/crm/"))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(timeout=10)


def test_an_upgrade_without_a_recent_backup_is_refused_before_anything_changes(platform):
    before = {name: inspect(platform, container)["Id"] for name, container in nodes(platform).items()}
    result = upgrade(platform, "new", check=False)
    assert result.returncode != 0
    assert "Run playbooks/backup.yml first" in result.stdout
    assert {name: inspect(platform, container)["Id"] for name, container in nodes(platform).items()} == before
    assert through_proxy(platform) == {"crm": 200, "hr": 200}  # no maintenance page either


def test_check_mode_predicts_the_upgrade_and_changes_nothing(platform):
    platform.playbook("backup.yml")
    before = {name: inspect(platform, container)["Id"] for name, container in nodes(platform).items()}
    result = upgrade(platform, "new", "--check")
    output = " ".join(result.stdout.split())
    assert "Replacing, in this order: %s;" % ", ".join(nodes(platform).values()) in output
    predicted = recap_changed(result.stdout)
    assert predicted["supervisor"] > 0 and predicted["worker_a"] > 0 and predicted["worker_b"] > 0, predicted
    assert {name: inspect(platform, container)["Id"] for name, container in nodes(platform).items()} == before
    assert through_proxy(platform) == {"crm": 200, "hr": 200}


def test_the_supervisor_then_each_worker_is_replaced_and_checked_before_the_next(platform):
    with ProxyWatch(platform) as watch:
        result = upgrade(platform, "new")
    assert "Replacing, in this order: %s;" % ", ".join(nodes(platform).values()) in " ".join(result.stdout.split())

    started = {name: _time(inspect(platform, container)["State"]["StartedAt"]) for name, container in nodes(platform).items()}
    assert started["supervisor"] < started["env_a"] < started["env_b"]
    # env_a's agent registered the new version (the check of env_a waits for it) before env_b was replaced.
    log = platform.docker("logs", "--timestamps", platform.container("agent-env_a")).stdout.splitlines()
    registered = [_time(line.split()[0]) for line in log if NEW_VERSION in line and "registered" in line]
    assert registered and started["env_a"] < registered[0] < started["env_b"], log[-20:]

    assert {inspect(platform, c)["Config"]["Image"] for c in nodes(platform).values()} == {platform.releases["new"]}
    assert app_versions(platform) == {"env_a": NEW_VERSION, "env_b": NEW_VERSION}
    assert platform.standin_state("env_a")["apps"] == {"crm": "running", "hr": "running"}
    assert platform.standin_state("env_b")["apps"] == {"hr": "running"}
    # The maintenance page answered while nodes were replaced; the apps are routed again after.
    assert any(status == 503 and "being upgraded" in body for status, body in watch.answers), watch.answers[:5]
    assert through_proxy(platform) == {"crm": 200, "hr": 200}


def test_a_rerun_of_the_same_upgrade_changes_nothing(platform):
    result = upgrade(platform, "new")
    assert "Nothing to upgrade" in result.stdout
    assert set(recap_changed(result.stdout).values()) == {0}, result.stdout[-3000:]


def test_a_broken_release_stops_at_the_failing_node_and_says_how_to_roll_back(platform):
    env_b_before = inspect(platform, nodes(platform)["env_b"])["Id"]
    backup = sorted(p.name for p in (platform.root / "backups").iterdir())[-1]
    result = upgrade(platform, "broken", "-e", "nocobase_health_timeout=20", check=False)
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    assert "The upgrade stopped at %s (%s)" % (nodes(platform)["env_a"], platform.releases["broken"]) in output
    assert "Replaced before it: %s." % nodes(platform)["supervisor"] in output
    assert "Not touched: %s." % nodes(platform)["env_b"] in output
    # The images the backup recorded for each role (it was taken before the first upgrade).
    assert ("ansible-playbook playbooks/restore.yml -e nocobase_restore_from=%s -e nocobase_restore_confirm=true "
            "-e supervisor_image=%s -e worker_image=%s." % (backup, STANDIN_IMAGE, STANDIN_IMAGE)) in output

    assert inspect(platform, nodes(platform)["env_b"])["Id"] == env_b_before  # untouched
    assert inspect(platform, nodes(platform)["supervisor"])["Config"]["Image"] == platform.releases["broken"]
    status, body = platform.get("/apps/hr/")
    assert status == 503 and "being upgraded" in body

    # Going back to the good release is an upgrade like any other; it ends the maintenance.
    upgrade(platform, "new")
    assert app_versions(platform) == {"env_a": NEW_VERSION, "env_b": NEW_VERSION}
    assert inspect(platform, nodes(platform)["env_b"])["Id"] == env_b_before
    assert through_proxy(platform) == {"crm": 200, "hr": 200}


def test_an_upgrade_that_failed_at_the_last_worker_is_finished_by_a_rerun(platform):
    """env_b is replaced but fails its version check: a rerun verifies it and ends the maintenance."""
    worker_b = platform.overlay / "host_vars" / "worker_b.yml"
    saved = worker_b.read_text()
    worker_b.write_text(saved + "nocobase_upgrade_version: 9.9.9\n")
    try:
        failed = platform.playbook("upgrade.yml", "-e", "nocobase_image=" + STANDIN_IMAGE, check=False)
    finally:
        worker_b.write_text(saved)
    assert failed.returncode != 0
    assert "The upgrade stopped at %s" % nodes(platform)["env_b"] in " ".join(failed.stdout.split()), failed.stdout[-3000:]
    assert inspect(platform, nodes(platform)["env_b"])["Config"]["Image"] == STANDIN_IMAGE  # replaced, not verified
    assert platform.get("/apps/hr/")[0] == 503

    rerun = platform.playbook("upgrade.yml", "-e", "nocobase_image=" + STANDIN_IMAGE)
    output = " ".join(rerun.stdout.split())
    assert "Replacing, in this order: %s;" % nodes(platform)["env_b"] in output
    assert "(not verified by an earlier upgrade: %s)" % nodes(platform)["env_b"] in output
    assert through_proxy(platform) == {"crm": 200, "hr": 200}
