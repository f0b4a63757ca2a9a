"""A whole platform on the local Docker engine for the end-to-end and fault tests.

The platform is inventories/offline with an overlay inventory (like the Molecule scenario's) that
gives it its own name, free ports, secrets directory and the apps under test, so that it never
collides with a platform deployed by hand. It is converged once per session and torn down (with
its volumes and secrets) at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import user_password
from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import fingerprint
from harness import APPS, STANDIN_IMAGE, Platform, recap_changed
from helpers import producer

from conftest import COLLECTIONS_PATH, REPO


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    deployed = Platform(tmp_path_factory.mktemp("platform"))
    try:
        deployed.cold = deployed.playbook("site.yml")
        yield deployed
    finally:
        deployed.playbook("teardown.yml", check=False)


# ---------------------------------------------------------------- end to end


def test_every_app_is_reached_through_the_proxy_in_its_environment(platform):
    assert platform.get("/") == (200, "nocobase entry app\n")
    for path, headers, app, env in [
        ("/apps/crm/admin/", {}, "crm", "env_a"),
        ("/api/__app/crm/app:getLang", {}, "crm", "env_a"),
        ("/api/users:list", {"X-App": "crm"}, "crm", "env_a"),
        ("/apps/hr/admin/", {}, "hr", "env_a"),
    ]:
        status, body = platform.get(path, headers)
        assert status == 200, (path, body)
        assert body.startswith("app=%s environment=%s status=running" % (app, env)), (path, body)


def sign_in_lines(output):
    """The last task's output before the PLAY RECAP: where to sign in."""
    last = output.split("PLAY RECAP")[0].rsplit("TASK [", 1)[1]
    assert last.startswith("nocobase.multienv.proxy : Say where to sign in"), last
    return [line.strip() for line in last.splitlines()[1:] if line.strip()]


def test_the_deploy_ends_saying_where_to_sign_in_never_the_password(platform):
    url = "http://127.0.0.1:%d/" % platform.ports["proxy"]
    for run in (platform.cold, platform.playbook("site.yml", "--check")):
        assert sign_in_lines(run.stdout) == [
            "ok: [proxy] =>", "msg: |-",
            "NocoBase is at " + url,
            "Supervisor (the entry app) admin: %sadmin/" % url,
            "App crm admin: %sapps/crm/admin/" % url,
            "App hr admin: %sapps/hr/admin/" % url,
            "Sign in as the root account root@example.com (username root).",
            "Its password: in the file %s on the controller (cat it: it is never shown)" % (platform.secrets / "root_password"),
        ], run.stdout[-3000:]
        assert platform.root_password not in run.stdout + run.stderr
    # What it names is where one signs in.
    assert platform.get("/admin/")[0] == 200 and platform.get("/apps/crm/admin/")[0] == 200


def test_the_status_playbook_shows_every_environment_and_app_and_writes_json(platform, tmp_path):
    status_file = tmp_path / "status.json"
    result = platform.playbook("status.yml", "-e", "nocobase_status_file=%s" % status_file)
    assert "Environments: 2, 2 available" in result.stdout, result.stdout[-3000:]
    assert "env_a: running, env_b: running" in result.stdout  # hr, in both of its environments
    status = json.loads(status_file.read_text())
    assert status["platform"] == platform.name
    assert [(env["name"], env["available"]) for env in status["environments"]] == [("env_a", True), ("env_b", True)]
    apps = {app["name"]: app for app in status["apps"]}
    assert apps["crm"]["proxyTarget"]["environment"] == "env_a"
    assert {env: apps["hr"]["status"][env]["status"] for env in ("env_a", "env_b")} == {"env_a": "running", "env_b": "running"}
    # It reads only: no container, network or volume was touched, no secret written.
    assert not [line for line in result.stdout.splitlines() if line.startswith("changed: [") and "status.json" not in line
                and "localhost" not in line]


def test_the_two_environment_app_started_in_env_a_strictly_before_env_b(platform):
    first, second = platform.status("hr", "env_a"), platform.status("hr", "env_b")
    assert first["status"] == second["status"] == "running"
    assert first["requestId"] == second["requestId"]
    # env_b's start (1 s in the stand-in) began only after env_a's had ended.
    assert second["updatedAt"] - first["updatedAt"] >= 1000
    assert platform.standin_state("env_a")["startCounts"]["hr"] == 1
    assert platform.standin_state("env_b")["startCounts"]["hr"] == 1


def test_every_node_has_the_generated_root_account_and_refuses_the_default(platform):
    assert len(platform.root_password) == 32
    for node in ("supervisor", "env_a", "env_b"):
        port = platform.ports[node]
        assert platform.sign_in(port, "root@example.com", platform.root_password) == 200, node
        assert platform.sign_in(port, "admin@nocobase.com", "admin123") == 401, node
        assert platform.sign_in(port, "root@example.com", "admin123") == 401, node


def _connects(platform, container, host, port):
    """Whether `container` opens a TCP connection to host:port (name or address) within 3 s."""
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n"
             "except OSError:\n sys.exit(1)")
    if "agent" in container:  # the agent image has Python, the proxy image has bash
        argv = ["python3", "-c", probe, host, str(port)]
    else:
        argv = ["timeout", "4", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', host, str(port)]
    return platform.docker("exec", container, *argv, check=False).returncode == 0


def test_no_secret_value_is_in_docker_inspect(platform):
    """Every container of the platform, its whole configuration and state, against every secret of the
    secrets directory; the nodes got theirs all the same (each signed in with the root password above)."""
    secrets = {path.name: path.read_text().strip() for path in platform.secrets.iterdir()
               if path.is_file() and not path.name.startswith("verified-")}
    assert {"aes_secret_key", "app_key", "db_password", "postgres_password", "redis_password", "root_password"} <= set(secrets)
    containers = platform.docker("ps", "-aq", "--filter", "label=org.nocobase.multienv.platform=" + platform.name).stdout.split()
    assert len(containers) == 8, containers  # Redis, PostgreSQL, the supervisor, two workers, two agents, the proxy
    inspected = platform.docker("inspect", *containers).stdout
    assert [name for name, value in secrets.items() if value in inspected] == []
    # The worker's NocoBase has DB_PASSWORD, from its file, in its environment.
    environ = platform.docker("exec", platform.container("worker-env_a"), "sh", "-c",
                              "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert "DB_PASSWORD=%s" % secrets["db_password"] in environ.splitlines()


def test_the_proxy_cannot_reach_redis_or_postgres(platform):
    proxy, agent = platform.container("proxy"), platform.container("agent-env_a")
    for service, port in (("redis", 6379), ("postgres", 5432)):
        name = platform.container(service)
        address = platform.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                  name).stdout.strip()
        assert address, name
        assert _connects(platform, agent, name, port), "the agent, on the back network, reaches %s" % name
        assert not _connects(platform, proxy, name, port), "%s resolves from the proxy" % name
        assert not _connects(platform, proxy, address, port), "the proxy reaches %s at %s" % (name, address)
    assert _connects(platform, proxy, platform.container("worker-env_a"), 13000)  # nodes stay reachable


def test_each_agent_serves_its_metrics_on_the_back_network_only(platform):
    """Prometheus's text from each agent, read from env_b's agent across the back network; the proxy, on
    the front network only, cannot reach it."""
    reader = platform.container("agent-env_b")
    scrape = ("import sys, urllib.request; "
              "print(urllib.request.urlopen('http://%s:9650/metrics' % sys.argv[1], timeout=5).read().decode())")
    for env in ("env_a", "env_b"):
        agent = platform.container("agent-" + env)
        text = platform.docker("exec", reader, "python3", "-c", scrape, agent).stdout
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        label = 'environment="%s"' % env
        assert samples["nocobase_multienv_agent_ready{%s}" % label] == "1", text
        assert float(samples["nocobase_multienv_agent_heartbeat_age_seconds{%s}" % label]) < 120, text
        assert float(samples['nocobase_multienv_apps{%s,status="running"}' % label]) >= 1, text
        assert samples["nocobase_multienv_stream_pending{%s}" % label] == "0", text
    assert not _connects(platform, platform.container("proxy"), platform.container("agent-env_a"), 9650)


def _container_env(platform, container):
    listed = platform.docker("inspect", "-f", "{{json .Config.Env}}", container).stdout
    return dict(item.split("=", 1) for item in json.loads(listed))


def test_each_container_holds_only_its_own_redis_user(platform):
    """The agent of env_a may write its environment's keys only; nodes hold no Redis URL at all."""
    agent_env = _container_env(platform, platform.container("agent-env_a"))
    assert not [value for value in agent_env.values() if "redis://" in value or platform.root_password in value]
    agent_url = platform.docker("exec", platform.container("agent-env_a"), "cat", agent_env["AGENT_REDIS_URL_FILE"]).stdout
    assert agent_url.startswith("redis://agent-env_a:") and platform.redis_password not in agent_url
    for node in ("supervisor", "worker-env_a", "worker-env_b"):
        assert not any("redis://" in value for value in _container_env(platform, platform.container(node)).values())
    # Redis's users, with their password hashes, are in a file it includes, not in its configuration.
    redis_config = json.loads(platform.docker("inspect", "-f", "{{json .Config}}", platform.container("redis")).stdout)
    assert redis_config["Cmd"][:2] == ["--include", "/run/redis-users.conf"]
    assert not [value for value in redis_config["Cmd"] + redis_config["Env"] if "--user" in value or "#" in value]
    users = platform.docker("exec", platform.container("redis"), "cat", "/run/redis-users.conf").stdout
    assert "\nuser agent-env_a #" in users and platform.redis_password not in users

    password = agent_url.split("@")[0].rsplit(":", 1)[1]
    agent = redis.Redis(host="127.0.0.1", port=platform.ports["redis"], username="agent-env_a", password=password,
                        decode_responses=True, socket_timeout=10)
    assert "crm" in agent.hkeys("nocobase:apps")  # it reads the platform's records
    assert agent.xinfo_groups("nocobase:commands:env_a")  # and owns its stream
    refused = {
        "a command for env_b": lambda: agent.xadd("nocobase:commands:env_b", {"action": "remove"}),
        "env_b's pending marks": lambda: agent.hset("nocobase:pending:env_b", "crm:stop", "x"),
        "env_b's completions": lambda: agent.delete("nocobase:processed:env_b"),
        "an app record": lambda: agent.hset("nocobase:apps", "crm", "{}"),
        "a request summary": lambda: agent.set("nocobase:request:x", "{}"),
        "a key outside the platform": lambda: agent.set("elsewhere", "1"),
        "the server's configuration": lambda: agent.config_set("appendonly", "no"),
        "flushing": agent.flushall,
    }
    for what, write in refused.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
            pytest.fail("agent-env_a may write %s" % what)
    operator = redis.Redis(host="127.0.0.1", port=platform.ports["redis"], username="operator",
                           password=user_password(platform.redis_password, "operator"), socket_timeout=10)
    assert operator.hget("nocobase:apps", "crm")  # the modules' user
    with pytest.raises(redis.exceptions.NoPermissionError):
        operator.config_get("requirepass")


def _ansible(tool, *args):
    """An Ansible command-line tool of this virtualenv with the repository's ansible.cfg, output captured."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    return subprocess.run([str(Path(sys.executable).with_name(tool)), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _plain(value):
    """A host variable as ansible-inventory --list prints it (an unsafe string is a one-key mapping)."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def _limits(platform, suffix):
    host_config = json.loads(platform.docker("inspect", "-f", "{{json .HostConfig}}", platform.container(suffix)).stdout)
    return host_config["Memory"], host_config["NanoCpus"]


def test_every_container_has_its_memory_limit_and_redis_never_evicts_a_record(platform):
    """The defaults of _workload.SETTINGS (docs/provisioning.md, "Memory and CPUs"), and the harness's
    own for env_b's worker (1.5 GiB, 1.5 CPUs), its heap derived from that."""
    mib = 1024 * 1024
    assert _limits(platform, "supervisor") == (4096 * mib, 0)
    assert _limits(platform, "worker-env_a") == (4096 * mib, 0)
    assert _limits(platform, "worker-env_b") == (1536 * mib, 1.5 * 10 ** 9)
    assert _limits(platform, "agent-env_a") == (256 * mib, 0)
    assert _limits(platform, "redis") == (1024 * mib, 0)
    assert _limits(platform, "postgres") == (4096 * mib, 0)
    assert _limits(platform, "proxy") == (256 * mib, 0)
    assert _container_env(platform, platform.container("worker-env_a"))["NODE_OPTIONS"] == "--max-old-space-size=3584"
    assert _container_env(platform, platform.container("worker-env_b"))["NODE_OPTIONS"] == "--max-old-space-size=1024"
    client = platform.redis()
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("maxmemory") == {"maxmemory": str(768 * mib)}


def test_a_changed_limit_makes_only_its_container_again(platform):
    ids = {suffix: platform.docker("inspect", "-f", "{{.Id}}", platform.container(suffix)).stdout.strip()
           for suffix in ("proxy", "redis", "supervisor", "worker-env_a", "agent-env_a")}
    changed = platform.playbook("site.yml", "-e", "proxy_memory=300m")
    assert _limits(platform, "proxy") == (300 * 1024 * 1024, 0)
    assert recap_changed(changed.stdout)["proxy"] > 0
    assert {key: value for key, value in recap_changed(changed.stdout).items() if key != "proxy"} == dict.fromkeys(
        [key for key in recap_changed(changed.stdout) if key != "proxy"], 0), changed.stdout[-4000:]
    after = {suffix: platform.docker("inspect", "-f", "{{.Id}}", platform.container(suffix)).stdout.strip()
             for suffix in ids}
    assert after["proxy"] != ids["proxy"]
    assert {suffix: after[suffix] for suffix in ids if suffix != "proxy"} == {
        suffix: ids[suffix] for suffix in ids if suffix != "proxy"}
    back = platform.playbook("site.yml")
    assert _limits(platform, "proxy") == (256 * 1024 * 1024, 0)
    again = platform.playbook("site.yml")
    assert set(recap_changed(again.stdout).values()) == {0}, (back.stdout[-2000:], again.stdout[-4000:])


def test_the_container_inventory_lists_exactly_the_platforms_running_nodes_in_groups(platform, tmp_path):
    # As an operator points inventories/containers.docker.yml at another platform: a copy with its name.
    shipped = (REPO / "inventories" / "containers.docker.yml").read_text()
    assert shipped.count("== 'nocobase'") == 1
    inventory = tmp_path / "containers.docker.yml"
    inventory.write_text(shipped.replace("== 'nocobase'", "== '%s'" % platform.name))
    label = "org.nocobase.multienv."
    # Decoys that must not be listed: a container of this platform that does not run (a leftover), and a
    # running one of another platform whose name begins with this one's, both labelled as env_a's worker.
    decoys = {platform.container("worker-env_a-leftover"): ("create", platform.name),
              "%sx-worker-env_a" % platform.name: ("run", platform.name + "x")}
    try:
        for name, (how, owner) in decoys.items():
            platform.docker(*(["create"] if how == "create" else ["run", "-d"]), "--name", name, "--network", "none",
                            "--label", label + "platform=" + owner, "--label", label + "role=worker",
                            "--label", label + "environment=env_a", "--entrypoint", "sleep", STANDIN_IMAGE, "300")
        listed = _ansible("ansible-inventory", "-i", str(inventory), "--list")
        assert listed.returncode == 0, listed.stderr
        inventory_json = json.loads(listed.stdout)
        hostvars = inventory_json.pop("_meta")["hostvars"]
        groups = {group: sorted(content.get("hosts", [])) for group, content in inventory_json.items()
                  if group not in ("all", "ungrouped")}
        nodes = {role: platform.container(role) for role in ("redis", "postgres", "supervisor", "proxy")}
        for env in ("env_a", "env_b"):
            nodes["worker " + env], nodes["agent " + env] = platform.container("worker-" + env), platform.container("agent-" + env)
        assert sorted(hostvars) == sorted(nodes.values())  # every node, nothing else
        assert groups == {
            "supervisor": [nodes["supervisor"]], "redis": [nodes["redis"]], "postgres": [nodes["postgres"]],
            "proxy": [nodes["proxy"]],
            "worker": [nodes["worker env_a"], nodes["worker env_b"]], "agent": [nodes["agent env_a"], nodes["agent env_b"]],
            "env_a": [nodes["worker env_a"]], "env_b": [nodes["worker env_b"]],
            "agent_env_a": [nodes["agent env_a"]], "agent_env_b": [nodes["agent env_b"]],
        }
        for host, variables in hostvars.items():
            assert _plain(variables["ansible_connection"]) == "community.docker.docker", host
            assert _plain(variables["ansible_host"]) == host
            assert _plain(variables["nocobase_container_platform"]) == platform.name

        # An ad-hoc command on env_a runs in env_a's worker, and only there (raw: NocoBase's image has no Python).
        adhoc = _ansible("ansible", "-i", str(inventory), "env_a", "-m", "ansible.builtin.raw",
                         "-a", "hostname; printenv ENVIRONMENT_NAME")
        assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
        reached = [line.split(" | ")[0] for line in adhoc.stdout.splitlines() if " | " in line]
        assert reached == [nodes["worker env_a"]], adhoc.stdout
        hostname = platform.docker("inspect", "-f", "{{.Config.Hostname}}", nodes["worker env_a"]).stdout.strip()
        assert adhoc.stdout.split(">>\n", 1)[1].split() == [hostname, "env_a"], adhoc.stdout
    finally:
        platform.docker("rm", "-f", *decoys, check=False)


HOSTILE_URL = ('http://worker_a"; } server { listen 80 default_server; location / { return 302 '
               'https://phish.example$request_uri; } } map $host $pwn { default "')


def test_hostile_records_never_reach_the_live_proxy(platform):
    """Records written straight into Redis, as anything holding its password could (issue 8)."""
    client = platform.redis()
    env_b = client.hget("nocobase:environments", "env_b")
    hostile = {
        ("nocobase:environments", "env_b"): json.dumps({"name": "env_b", "url": "http://x", "proxyUrl": HOSTILE_URL}),
        ("nocobase:apps", "default"): json.dumps({"name": "default", "environments": ["env_a"]}),
        ("nocobase:apps", "include"): json.dumps({"name": "include", "environments": ["env_a"]}),
        ("nocobase:apps", "evil"): json.dumps({"name": "evil", "environments": ["env_a"], "proxyEnvironment": "env_a\n}"}),
        ("nocobase:apps", "garbage"): "\xff{",
        # a good app whose environment's record is the hostile one
        ("nocobase:apps", "on_b"): json.dumps({"name": "on_b", "environments": ["env_b"]}),
    }
    for (key, field), value in hostile.items():
        client.hset(key, field, value)
    try:
        run = platform.playbook("proxy.yml")
        rendered = (platform.root / "proxy" / "nocobase.conf").read_text()
        for text in ("phish", "$pwn", "default_server", "evil"):
            assert text not in rendered, text
        keys = [line.split()[0] for line in rendered.splitlines() if line.startswith("    ") and line.strip()]
        # One `default` per map of the template's own, no `include` key: no name became nginx syntax.
        assert keys.count("default") == rendered.count("\nmap ") and "include" not in keys
        assert "phish" not in platform.docker("exec", platform.container("proxy"), "cat",
                                              "/etc/nginx/conf.d/nocobase.conf").stdout
        output = " ".join((run.stdout + run.stderr).split())  # warnings go to stderr
        for field in ("env_b", "default", "include", "evil", "garbage"):
            assert "skipped an untrusted record" in output and ("'%s'" % field) in output, field
        # The good apps keep their routes; hr, whose env_b is not trusted now, goes to env_a as placed.
        assert platform.get("/apps/crm/admin/")[0] == 200
        assert platform.get("/api/users:list", {"X-App": "crm"})[0] == 200
        status, _body = platform.get("/apps/evil/admin/")
        assert status != 302
        assert platform.get("/apps/on_b/admin/")[0] == 503  # no trusted URL for it: the unavailable page
    finally:
        client.hset("nocobase:environments", "env_b", env_b)
        for key, field in hostile:
            if key == "nocobase:apps":
                client.hdel(key, field)
        platform.playbook("proxy.yml")


def test_a_run_without_the_apps_list_deletes_nothing(platform):
    bare = platform.root / "without-apps-list"
    shutil.copytree(platform.overlay, bare)
    settings = bare / "group_vars" / "all" / "e2e.yml"
    variables = yaml.safe_load(settings.read_text())
    del variables["apps_list"]  # as if the operator forgot the file that holds it
    settings.write_text(yaml.safe_dump(variables))
    before = platform.redis().hgetall("nocobase:apps")
    run = platform.playbook("apps.yml", overlay=bare)
    assert set(recap_changed(run.stdout).values()) == {0}, run.stdout[-4000:]
    assert platform.redis().hgetall("nocobase:apps") == before
    assert platform.status("crm", "env_a")["status"] == "running"


def test_a_restarted_worker_gets_its_apps_back(platform):
    platform.docker("restart", platform.container("worker-env_a"))
    platform.wait(lambda: platform.get("/apps/crm/admin/")[0] == 200 and platform.get("/apps/hr/admin/")[0] == 200,
                  timeout=90, what="crm and hr served again")
    state = platform.standin_state("env_a")
    assert state["running"] == ["crm", "hr"]  # a fresh process, apps back from its own database
    assert platform.status("crm", "env_a")["status"] == "running"
    agent_log = platform.docker("logs", platform.container("agent-env_a")).stdout
    assert "heartbeats and commands pause" in agent_log  # it noticed, and resumed once healthy
    assert platform.root_password not in agent_log and platform.redis_password not in agent_log


def test_a_node_installed_with_other_root_credentials_fails_clearly(platform):
    run = platform.playbook("supervisor.yml", "-e", "nocobase_root_password=another-root-password", check=False)
    try:
        assert run.returncode != 0
        assert "%s refuses the root account root@example.com (HTTP 401)" % platform.container("supervisor") in run.stdout
        assert "installed earlier" in run.stdout and "another-root-password" not in run.stdout
    finally:
        platform.playbook("supervisor.yml")  # back to the platform's secrets


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _container_ids(platform):
    listed = platform.docker("ps", "-aq", "--no-trunc", "--filter",
                             "label=org.nocobase.multienv.platform=%s" % platform.name).stdout
    return sorted(listed.split())


def test_a_lost_secrets_directory_stops_the_run_before_anything_changes(platform):
    before = _container_ids(platform)
    kept = platform.root / "secrets-backup"
    platform.secrets.rename(kept)
    try:
        lost = platform.playbook("site.yml", check=False)
        assert lost.returncode != 0
        assert "the secrets directory was lost or moved" in lost.stdout, lost.stdout[-3000:]
        assert "%s-supervisor-storage" % platform.name in lost.stdout
        assert not (platform.secrets / "aes_secret_key").exists()  # no new key was made
    finally:
        shutil.rmtree(platform.secrets, ignore_errors=True)
        kept.rename(platform.secrets)
    other_key = "0123456789abcdef" * 4
    wrong = platform.playbook("site.yml", "-e", "nocobase_aes_secret_key=" + other_key, check=False)
    assert wrong.returncode != 0
    assert "nocobase_aes_secret_key is not the AES key the data in" in wrong.stdout, wrong.stdout[-3000:]
    assert other_key not in wrong.stdout + wrong.stderr
    assert _container_ids(platform) == before  # nothing was recreated either time


def nginx_reloads(platform):
    """Reloads nginx logged (its master logs every SIGHUP at notice level)."""
    logs = platform.docker("logs", platform.container("proxy"))
    return (logs.stdout + logs.stderr).count("signal 1 (SIGHUP) received")


def test_second_converge_changes_nothing_and_does_not_reload_nginx(platform):
    reloads = nginx_reloads(platform)
    again = platform.playbook("site.yml")
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-6000:]
    assert nginx_reloads(platform) == reloads
    check = platform.playbook("site.yml", "--check")
    assert set(recap_changed(check.stdout).values()) == {0}, check.stdout[-6000:]


def nocobase_role_can_create_databases(platform):
    query = platform.docker("exec", platform.container("postgres"), "psql", "-U", "postgres", "-d", "postgres", "-tAc",
                            "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'nocobase'")
    return query.stdout.strip() == "t"


def test_a_rerun_trusts_recorded_checks_until_told_to_check_everything(platform):
    # A change made by hand that the nodes do not notice: the NocoBase role loses CREATEDB.
    platform.docker("exec", platform.container("postgres"), "psql", "-U", "postgres", "-d", "postgres", "-c",
                    "ALTER ROLE nocobase NOCREATEDB")
    assert (platform.secrets / "verified-postgres").exists()
    trusted = platform.playbook("infrastructure.yml")
    assert set(recap_changed(trusted.stdout).values()) == {0}, trusted.stdout[-4000:]
    assert "Read the NocoBase role and the node databases" not in trusted.stdout  # checked before, same container
    assert not nocobase_role_can_create_databases(platform)
    full = platform.playbook("infrastructure.yml", "-e", "nocobase_skip_unchanged=false")
    assert recap_changed(full.stdout)["postgres"] > 0, full.stdout[-4000:]
    assert nocobase_role_can_create_databases(platform)
    # A lost record means: check again, and record it again.
    (platform.secrets / "verified-postgres").unlink()
    checked = platform.playbook("infrastructure.yml")
    assert "Read the NocoBase role and the node databases" in checked.stdout
    assert stat.S_IMODE((platform.secrets / "verified-postgres").stat().st_mode) == 0o600


# ---------------------------------------------------------------- faults: each ends with nothing lost

def control_plane(platform):
    """The collection's producer on the platform's Redis (published on 127.0.0.1)."""
    url = "redis://:%s@127.0.0.1:%d/0" % (platform.redis_password, platform.ports["redis"])
    return producer(url, stale_after=8)  # the inventory's nocobase_stale_after


def add_app(platform, name, environments, options=None):
    plane = control_plane(platform)
    record = {"name": name, "environments": environments, "options": options or {}}
    plane.client.pipeline([("HSET", plane.keys.apps, name, json.dumps(record, separators=(",", ":"), sort_keys=True))])
    return plane


def nothing_pending(platform, environments):
    client = platform.redis()
    return all(client.xpending("nocobase:commands:" + env, "workers")["pending"] == 0
               and client.hlen("nocobase:pending:" + env) == 0 for env in environments)


def test_redis_restarted_between_enqueue_and_consumption(platform):
    worker = platform.container("agent-env_b")  # the consumer of env_b
    plane = add_app(platform, "fault_redis", ["env_b"])
    platform.docker("pause", worker)
    try:
        request = plane.enqueue("fault_redis", "start", ["env_b"])["request_id"]
        plane.client.close()
        platform.docker("stop", platform.container("redis"))
        platform.docker("start", platform.container("redis"))
        client = platform.wait(lambda: _ping(platform), timeout=60, what="Redis back")
        assert client.xlen("nocobase:commands:env_b") >= 1  # the command survived the restart
    finally:
        platform.docker("unpause", worker)
    platform.wait(lambda: (platform.status("fault_redis", "env_b") or {}).get("status") == "running",
                  timeout=90, what="fault_redis running in env_b")
    assert platform.status("fault_redis", "env_b")["requestId"] == request
    assert platform.standin_state("env_b")["startCounts"]["fault_redis"] == 1
    platform.wait(lambda: nothing_pending(platform, ["env_b"]), what="nothing pending")


def _ping(platform):
    try:
        client = platform.redis()
        client.ping()
        return client
    except redis.RedisError:
        return None


def test_agent_killed_while_holding_the_start_lock(platform):
    agent = platform.container("agent-env_b")
    plane = add_app(platform, "fault_lock", ["env_b"], options={"standinStartSeconds": 6})
    request = plane.enqueue("fault_lock", "start", ["env_b"])["request_id"]
    client = platform.redis()
    platform.wait(lambda: (platform.status("fault_lock", "env_b") or {}).get("status") == "initializing",
                  what="the start under way")
    assert client.exists("nocobase:lock:fault_lock")
    platform.docker("kill", agent)
    # The lock expires (AGENT_LOCK_TTL_MS=3000) while the agent is down.
    platform.wait(lambda: not client.exists("nocobase:lock:fault_lock"), timeout=30, what="the lock to expire")
    assert (platform.status("fault_lock", "env_b") or {}).get("status") == "initializing"
    platform.docker("start", agent)
    platform.wait(lambda: (platform.status("fault_lock", "env_b") or {}).get("status") == "running",
                  timeout=120, what="fault_lock running after the agent came back")
    assert platform.status("fault_lock", "env_b")["requestId"] == request
    assert platform.standin_state("env_b")["startCounts"]["fault_lock"] == 1  # NocoBase was asked once
    assert client.zscore("nocobase:processed:env_b", request) is not None
    platform.wait(lambda: nothing_pending(platform, ["env_b"]), what="nothing pending")
    plane.client.close()


def test_two_playbook_runs_enqueueing_the_same_starts_at_once(platform):
    race = APPS + [{"name": "race_one", "environments": ["env_a", "env_b"]}, {"name": "race_two", "environments": ["env_b"]}]
    extra = platform.root / "race.yml"
    extra.write_text(yaml.safe_dump({"apps_list": race}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(REPO / "inventories" / "offline"),
               "-i", str(platform.overlay), str(REPO / "playbooks" / "apps.yml"), "-e", "@" + str(extra)]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _run in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for app, envs in (("race_one", ["env_a", "env_b"]), ("race_two", ["env_b"])):
        for env in envs:
            assert platform.status(app, env)["status"] == "running"
            assert platform.standin_state(env)["startCounts"][app] == 1, (app, env)
    assert nothing_pending(platform, ["env_a", "env_b"])


def test_a_stale_environment_gets_the_unavailable_page(platform):
    worker = platform.container("worker-env_b")
    add_app(platform, "fault_stale", ["env_b"]).client.close()
    reloads = nginx_reloads(platform)
    platform.docker("stop", worker)
    try:
        # nocobase_stale_after is 8 s in this inventory; the agent beat every second while its worker ran.
        time.sleep(9)
        platform.playbook("proxy.yml")
        status, body = platform.get("/apps/fault_stale/admin/")
        assert status == 503
        assert body == "NocoBase app fault_stale is unavailable: the environment that serves it does not answer.\n"
        assert platform.get("/api/users:list", {"X-App": "fault_stale"})[0] == 503
        assert platform.get("/apps/crm/admin/")[0] == 200  # env_a's apps are not affected
        assert nginx_reloads(platform) == reloads + 1  # the changed file was loaded by a reload
        info = control_plane(platform).read_environments(["env_b"])["env_b"]
        assert info["available"] is False and info["heartbeatAge"] > 8
    finally:
        platform.docker("start", worker)
    platform.wait(lambda: control_plane(platform).read_environments(["env_b"])["env_b"]["available"],
                  timeout=60, what="env_b available again")
    platform.playbook("proxy.yml")
    assert "is unavailable" not in platform.get("/apps/fault_stale/admin/")[1]


def test_redis_down_during_a_converge_fails_clearly_and_writes_nothing(platform):
    before = platform.redis().hgetall("nocobase:apps")
    extra = platform.root / "more.yml"
    extra.write_text(yaml.safe_dump({"apps_list": APPS + [{"name": "late_app", "environments": ["env_a"]}]}))
    platform.docker("stop", platform.container("redis"))
    try:
        run = platform.playbook("apps.yml", "-e", "@" + str(extra), check=False)
    finally:
        platform.docker("start", platform.container("redis"))
    assert run.returncode != 0
    assert "cannot reach Redis at 127.0.0.1:%d" % platform.ports["redis"] in run.stdout
    assert platform.redis_password not in run.stdout + run.stderr
    client = platform.wait(lambda: _ping(platform), timeout=60, what="Redis back")
    assert client.hgetall("nocobase:apps") == before


# ---------------------------------------------------------------- backup and restore (last: it replaces everything)

def test_a_backup_brings_data_secrets_and_apps_back_after_losing_everything(platform, tmp_path):
    backups, vault = tmp_path / "backups", ("-e", "nocobase_backup_vault_password=e2e-vault-password")
    settings = ("-e", "nocobase_backup_dir=%s" % backups) + vault
    postgres, worker = platform.container("postgres"), platform.container("worker-env_a")

    def psql(database, sql):
        return platform.docker("exec", postgres, "psql", "-U", "postgres", "-d", database, "-tAc", sql).stdout.strip()

    platform.playbook("site.yml")  # as the inventory says (earlier tests left apps of theirs)
    # An app database as NocoBase makes one (owned by the NocoBase role) with a row, and a file in a storage volume.
    psql("postgres", "CREATE DATABASE e2e_app OWNER nocobase")
    psql("e2e_app", "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
    platform.docker("exec", worker, "sh", "-c", "echo kept > /app/nocobase/storage/e2e-proof.txt")
    running = {(app["name"], env) for app in APPS for env in app["environments"]}
    assert all(platform.status(app, env)["status"] == "running" for app, env in running)

    # What an environment named env_a-backup (or env_a-restore) would run: never taken for a throw-away container.
    decoys = [worker + "-backup", worker + "-restore"]
    for decoy in decoys:
        platform.docker("run", "-d", "--name", decoy, "--entrypoint", "sleep", STANDIN_IMAGE, "900")
    # Another backup that is being written, one a failed backup left a day ago, and the lock of a running backup.
    backups.mkdir(mode=0o700)
    (backups / "20990101T000000Z").mkdir()
    (backups / "20200101T000000Z").mkdir()
    os.utime(backups / "20200101T000000Z", (time.time() - 86400, time.time() - 86400))
    (backups / ".lock").mkdir()
    (backups / ".lock" / "owner").write_text("backup 20990101T000000Z\n")
    held = platform.playbook("backup.yml", *settings, check=False)
    assert held.returncode != 0
    assert "is held by the run backup 20990101T000000Z" in " ".join(held.stdout.split()), held.stdout[-3000:]
    shutil.rmtree(backups / ".lock")
    try:
        platform.playbook("backup.yml", *settings, "-e", "nocobase_backup_secrets=true")
        assert [platform.docker("inspect", "-f", "{{.State.Running}}", decoy).stdout.strip() for decoy in decoys] == ["true"] * 2
    finally:
        platform.docker("rm", "-f", *decoys, check=False)
    [backup] = [path.parent for path in backups.glob("*/manifest.json")]
    assert sorted(path.name for path in backups.iterdir()) == sorted([backup.name, "20990101T000000Z"])  # no lock left
    manifest = json.loads((backup / "manifest.json").read_text())
    assert {"databases/e2e_app.dump", "databases/nocobase_supervisor.dump", "control-plane.json", "secrets.vault",
            "volumes/%s-worker-env_a-storage.tar.gz" % platform.name} <= set(manifest["files"])
    assert manifest["platform"] == platform.name and manifest["protocol_schema"] == 1
    assert platform.redis_password not in (backup / "secrets.vault").read_text()  # encrypted
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert stat.S_IMODE((backup / "databases" / "e2e_app.dump").stat().st_mode) == 0o600

    # A corrupted copy is refused before anything is touched, even with the confirmation.
    corrupt = tmp_path / "corrupt"
    shutil.copytree(backup, corrupt)
    with open(corrupt / "databases" / "e2e_app.dump", "ab") as dump:
        dump.write(b"tampered")
    before = _container_ids(platform)
    refused = platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=%s" % corrupt,
                                "-e", "nocobase_restore_confirm=true", check=False)
    assert refused.returncode != 0
    assert "databases/e2e_app.dump (checksum differs)" in " ".join(refused.stdout.split()), refused.stdout[-3000:]
    assert _container_ids(platform) == before
    # A manifest changed to match a changed file is refused: it is not signed with the platform's key.
    tampered = tmp_path / "tampered"
    shutil.copytree(corrupt, tampered)
    manifest_tampered = dict(manifest, files=dict(manifest["files"], **{
        "databases/e2e_app.dump": _sha256(tampered / "databases" / "e2e_app.dump")}))
    (tampered / "manifest.json").write_text(json.dumps(manifest_tampered, indent=4))
    refused = platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=%s" % tampered,
                                "-e", "nocobase_restore_confirm=true", check=False)
    assert refused.returncode != 0
    assert "The manifest of the backup is not signed with this platform" in " ".join(refused.stdout.split()), refused.stdout[-3000:]
    assert _container_ids(platform) == before
    # Secrets other than the backup's are refused: the data needs the ones it was made with.
    other = platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=" + backup.name,
                              "-e", "nocobase_restore_confirm=true", "-e", "nocobase_root_password=another-root-password",
                              check=False)
    assert other.returncode != 0
    assert "secrets are not the ones the backup was made with (root_password)" in " ".join(other.stdout.split()), other.stdout[-3000:]
    assert "another-root-password" not in other.stdout and _container_ids(platform) == before
    # The platform exists: no restore onto it without the confirmation.
    unconfirmed = platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=" + backup.name, check=False)
    assert unconfirmed.returncode != 0
    assert "set nocobase_restore_confirm=true to do so" in " ".join(unconfirmed.stdout.split()), unconfirmed.stdout[-3000:]
    assert _container_ids(platform) == before

    # Everything is lost: containers, volumes and the secrets directory (the overlay tears all of it down).
    aes_key = (platform.secrets / "aes_secret_key").read_text().strip()
    platform.playbook("teardown.yml")
    assert not platform.secrets.exists() and _container_ids(platform) == []
    # Signed with the platform's key, but a dump that creates another database than its name says: no
    # database is replaced (e2e_app's dump is the supervisor's).
    swapped = tmp_path / "swapped"
    shutil.copytree(backup, swapped)
    shutil.copyfile(swapped / "databases" / "nocobase_supervisor.dump", swapped / "databases" / "e2e_app.dump")
    swapped_manifest = json.dumps(dict(manifest, files=dict(manifest["files"], **{
        "databases/e2e_app.dump": _sha256(swapped / "databases" / "e2e_app.dump")})), indent=4)
    (swapped / "manifest.json").write_text(swapped_manifest)
    (swapped / "manifest.sig").write_text(fingerprint(swapped_manifest, "%s %s" % (platform.name, aes_key)))
    refused = platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=%s" % swapped, check=False)
    assert refused.returncode != 0
    assert ("databases/e2e_app.dump creates the database nocobase_supervisor, not e2e_app as the manifest says"
            in " ".join(refused.stdout.split())), refused.stdout[-3000:]
    # A restore that stops half way keeps the lock until it is run again; this is another restore.
    assert (backups / ".lock" / "owner").read_text() == "restore of %s\n" % swapped
    shutil.rmtree(backups / ".lock")
    # It had started Redis and PostgreSQL: the platform exists again, so the restore is confirmed.
    platform.playbook("restore.yml", *settings, "-e", "nocobase_restore_from=" + backup.name,
                      "-e", "nocobase_restore_confirm=true")

    assert psql("e2e_app", "SELECT body FROM notes") == "kept"
    assert platform.docker("exec", worker, "cat", "/app/nocobase/storage/e2e-proof.txt").stdout == "kept\n"
    assert all(platform.status(app, env)["status"] == "running" for app, env in running)
    assert platform.get("/apps/crm/admin/")[0] == 200
    again = platform.playbook("site.yml")
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-6000:]
