"""The platform on REAL NocoBase: the image tools/nocobase-image.sh builds from the npm registry.

inventories/offline (real NocoBase, port 13000) with the same overlay as the stand-in tests (own
name, ports, secrets): supervisor, two workers with their agents, the proxy, and two apps, crm in
[env_a, env_b] and hr in [env_b]. Everything the agent does here goes through NocoBase's own
multi-app manager API.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime

import pytest
import yaml
from browser import Browser
from harness import Platform, recap_changed

from conftest import REPO, free_port

IMAGE = "nocobase-multienv/nocobase:offline"
APPS = [
    {"name": "crm", "title": "CRM", "environments": ["env_a", "env_b"]},
    {"name": "hr", "title": "HR", "environments": ["env_b"]},
]
VERSION = (REPO / "tools" / "nocobase-image" / "VERSION").read_text().strip()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    inspected = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=False)
    assert inspected.returncode == 0, "%s is missing: tools/setup.sh --offline-images builds it" % IMAGE
    platform = Platform(tmp_path_factory.mktemp("real"))
    settings = platform.overlay / "group_vars" / "all" / "e2e.yml"
    variables = yaml.safe_load(settings.read_text())
    for stand_in_only in ("nocobase_image", "nocobase_extra_env", "worker_agent_extra_env", "nocobase_stale_after"):
        variables.pop(stand_in_only)
    variables.update({"apps_list": APPS, "apps_wait_timeout": 900, "worker_agent_heartbeat_interval": 10})
    settings.write_text(yaml.safe_dump(variables))
    started = time.monotonic()
    try:
        platform.cold = platform.playbook("site.yml", timeout=2700)
        platform.cold_seconds = time.monotonic() - started
        yield platform
    finally:
        platform.playbook("teardown.yml", check=False)


def app_info(platform, app, port=None, via_header=False):
    """(HTTP status, data.name or the body) of a sub-app's own app:getInfo."""
    if via_header:
        status, body = platform.get("/api/app:getInfo", {"X-App": app}, port=port)
    else:
        status, body = platform.get("/api/__app/%s/app:getInfo" % app, port=port)
    try:
        return status, json.loads(body)["data"]["name"]
    except (ValueError, KeyError, TypeError):
        return status, body[:300]


def agent_log_times(platform, env, pattern):
    """Times of the agent's log lines that match pattern."""
    log = platform.docker("logs", platform.container("agent-" + env)).stdout
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[nocobase-agent\] \w+ .*%s" % pattern, log, flags=re.M)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in stamps]


def test_the_apps_answer_as_themselves_through_the_proxy(real):
    for app in ("crm", "hr"):
        assert app_info(real, app) == (200, app)
        assert app_info(real, app, via_header=True) == (200, app)
        status, body = real.get("/apps/%s/admin/" % app)
        assert status == 200 and "<html" in body.lower(), (app, status, body[:300])
    # crm runs in both environments; each worker answers for it directly too.
    for env in ("env_a", "env_b"):
        assert app_info(real, "crm", port=real.ports[env]) == (200, "crm")
    status, body = real.get("/api/app:getInfo")
    assert status == 200 and json.loads(body)["data"]["version"] == VERSION  # the supervisor


# What a person opens through the proxy: (app, path under the proxy, the environment whose node must serve it).
# crm runs in env_a and env_b and is served from env_a, its first (proxy) environment.
PAGES = [("main", "", None), ("crm", "apps/crm/", "env_a"), ("hr", "apps/hr/", "env_b")]
SCREENSHOTS = REPO / ".cache" / "screenshots"


def sign_in_in_chromium(real, base, app, path, insecure_tls=False, attempts=3):
    """Open <base><path>admin/ in Chromium, sign in as root, check what the person sees and what the page
    did on the network; the browser, still open, for more. Tests on other xdist workers make and remove
    Docker networks meanwhile, and Chromium drops what is in flight when the machine's network changes:
    only then is the sign-in tried again, with a new browser (at most `attempts` times)."""
    attempt = 1
    while True:
        browser = Browser(SCREENSHOTS / real.name, insecure_tls=insecure_tls)
        try:
            _sign_in(browser, real, base, app, path)
            return browser
        except BaseException:
            again = attempt < attempts and browser.network_changed()
            browser.close()
            if not again:
                raise
        print("%s%s: Chromium dropped requests as the network changed (attempt %d); again" % (base, path, attempt))
        attempt += 1


def _sign_in(browser, real, base, app, path):
    def app_info_responses():
        return [response for response in browser.responses() if response.url == base + "api/app:getInfo"]

    with browser.screenshot_on_failure("%s-%s" % (base.split(":")[0], app)):
        browser.open(base + path + "admin/")
        browser.wait(lambda: browser.find("input[type=password]"), 240, "%s: the sign-in page" % app)
        assert browser.url == base + path + "signin?redirect=/admin/"
        assert "not found" not in browser.text().lower(), browser.text()
        before_sign_in = {response.request_id for response in browser.responses()}
        browser.find("input[placeholder='Username/Email']")[0].send_keys("root@example.com")
        browser.find("input[type=password]")[0].send_keys(real.root_password)
        browser.find("button[type=submit]")[0].click()
        browser.wait(lambda: browser.url == base + path + "admin/" and not browser.find("input[type=password]")
                     and "No pages yet" in browser.text() and app_info_responses(), 240, "%s: the admin page" % app)
        assert "not found" not in browser.text().lower(), browser.text()
        # Signed in to this very app: the client keeps each app's token under the app's name.
        token_key = "NOCOBASE_TOKEN" if app == "main" else "NOCOBASE_%s_TOKEN" % app.upper()
        assert browser.driver.execute_script("return localStorage.getItem(arguments[0])", token_key), token_key
        ours = [response for response in browser.responses() if response.url.startswith(base)]
        refused = [response for response in ours if response.status >= 400
                   and not (response.status == 401 and response.request_id in before_sign_in)]
        assert not refused, refused
        assert not [failed for failed in browser.failed_loads() if failed[0].startswith(base)]
        # The page's own app:getInfo names the app: its API calls reached that app.
        assert json.loads(browser.body(app_info_responses()[-1]))["data"]["name"] == app
        sockets = [socket for socket in browser.websockets().values() if socket["url"].startswith(base.replace("http", "ws"))]
        expected = base.replace("http", "ws") + "ws" + ("" if app == "main" else "?__appName=" + app)
        assert sockets and {socket["url"] for socket in sockets} == {expected}, sockets
        assert all(socket["status"] == 101 and not socket["closed"] for socket in sockets), sockets


def assert_websockets_went_to_their_nodes(real, since):
    """The proxy's access log: each app's /ws went to its own node (a WebSocket is logged when it
    closes, and Docker copies the log asynchronously, so the log is read until every app's is there)."""
    environments = {env: json.loads(record) for env, record in real.redis().hgetall("nocobase:environments").items()}
    conf = (real.root / "proxy" / "nocobase.conf").read_text()
    supervisor = re.search(r'map \$nocobase_app \$nocobase_upstream \{\n    default "([^"]+)"', conf).group(1)
    expected = {app: {environments[env].get("proxyUrl") or environments[env]["url"]} if env else {supervisor}
                for app, dummy, env in PAGES}

    def websockets_logged():
        log = real.docker("logs", "--since", since, real.container("proxy")).stdout
        upstreams = {}
        for line in log.splitlines():
            found = re.search(r'"GET /ws(?:\?__appName=(\w+))? HTTP/1.1" 101 .* upstream=(\S+) ', line)
            if found:
                upstreams.setdefault(found.group(1) or "main", set()).add(found.group(2))
        return upstreams, log

    deadline = time.monotonic() + 30
    upstreams, log = websockets_logged()
    while set(upstreams) != set(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
        upstreams, log = websockets_logged()
    assert upstreams == expected, log[-3000:]


def sign_in_to_every_page(real, base, insecure_tls=False):
    """The supervisor and each app signed in to in Chromium through the proxy at base; then each
    WebSocket's node, from the proxy's access log of that time."""
    since = real.docker("exec", real.container("proxy"), "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    for app, path, dummy in PAGES:
        started = time.monotonic()
        sign_in_in_chromium(real, base, app, path, insecure_tls=insecure_tls).close()
        print("%s: signed in through the proxy at %s in %.1f s" % (app, base, time.monotonic() - started))
    assert_websockets_went_to_their_nodes(real, since)


def test_a_worker_limited_to_1_5_gib_runs_two_sub_apps_and_its_heap_follows_the_limit(real):
    """env_b's worker (the harness sizes it: 1.5 GiB, 1.5 CPUs) runs crm and hr; NocoBase's process sees the
    cgroup's limit and a V8 heap derived from it (NODE_OPTIONS, _workload.heap_mib)."""
    mib = 1024 * 1024
    worker = real.container("worker-env_b")
    host_config = json.loads(real.docker("inspect", "-f", "{{json .HostConfig}}", worker).stdout)
    assert (host_config["Memory"], host_config["NanoCpus"]) == (1536 * mib, 1.5 * 10 ** 9)
    for app in ("crm", "hr"):
        assert app_info(real, app, port=real.ports["env_b"]) == (200, app)
    limit = real.docker("exec", worker, "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null "
                        "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert limit == str(1536 * mib)
    heap = int(real.docker("exec", worker, "node", "-e",
                           "console.log(require('v8').getHeapStatistics().heap_size_limit)").stdout)
    assert 1024 * mib <= heap <= 1100 * mib, heap  # --max-old-space-size=1024, and V8's young generation
    used = real.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", worker).stdout.strip()
    print("env_b's worker with crm and hr: %s" % used)
    # Every other component has its default limit (_workload.SETTINGS), and Redis never evicts a record.
    limits = {suffix: json.loads(real.docker("inspect", "-f", "{{json .HostConfig}}", real.container(suffix)).stdout)["Memory"]
              for suffix in ("supervisor", "worker-env_a", "agent-env_a", "redis", "postgres", "proxy")}
    assert limits == {"supervisor": 4096 * mib, "worker-env_a": 4096 * mib, "agent-env_a": 256 * mib,
                      "redis": 1024 * mib, "postgres": 4096 * mib, "proxy": 256 * mib}
    assert real.redis().config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_a_person_signs_in_to_the_supervisor_and_each_app_in_chromium(real):
    sign_in_to_every_page(real, "http://127.0.0.1:%d/" % real.ports["proxy"])


def test_an_attachment_uploaded_through_the_proxy_downloads_through_it(real):
    """crm (in env_a and env_b): a file uploaded from the signed-in page opens from its link."""
    base = "http://127.0.0.1:%d/" % real.ports["proxy"]
    content = "uploaded through the proxy %s" % time.time()
    browser = sign_in_in_chromium(real, base, "crm", "apps/crm/")
    with browser, browser.screenshot_on_failure("attachment"):
        browser.driver.set_script_timeout(60)
        # As the client uploads: the API through the proxy, with the app's header and token.
        uploaded = browser.driver.execute_async_script("""
            const [content, done] = [arguments[0], arguments[arguments.length - 1]];
            const form = new FormData();
            form.append('file', new Blob([content], {type: 'text/plain'}), 'through-the-proxy.txt');
            fetch('/api/attachments:create', {method: 'POST', body: form, headers: {
                'X-App': 'crm', 'Authorization': 'Bearer ' + localStorage.getItem('NOCOBASE_CRM_TOKEN')}})
              .then(r => r.json().then(body => done({status: r.status, body: body})), e => done({error: String(e)}));
        """, content)
        assert uploaded.get("status") == 200, uploaded
        url = uploaded["body"]["data"]["url"]
        assert url.startswith("/files/crm/"), url  # NocoBase's stable file URL of the app
        # The person opens the file's link: the stable URL redirects to the local file of crm's node.
        browser.open(base + url.lstrip("/"))
        browser.wait(lambda: browser.text() == content, 60, "the file's content")
        # ... to the local file, which only the query parameter __appName routes to crm's node.
        assert browser.url == "%sstorage/uploads/%s?__appName=crm" % (base, uploaded["body"]["data"]["filename"])


def test_every_environment_reports_the_real_version(real):
    records = real.redis().hgetall("nocobase:environments")
    for env in ("env_a", "env_b"):
        assert json.loads(records[env])["appVersion"] == VERSION


def test_the_first_environment_ran_before_the_second_started(real):
    first, second = real.status("crm", "env_a"), real.status("crm", "env_b")
    assert first["status"] == second["status"] == "running"
    assert first["requestId"] == second["requestId"]
    assert first["updatedAt"] < second["updatedAt"]
    running_in_a = agent_log_times(real, "env_a", "start crm -> running")
    starting_in_b = agent_log_times(real, "env_b", "starting crm")
    assert len(running_in_a) == 1 and len(starting_in_b) == 1
    assert starting_in_b[0] >= running_in_a[0]  # env_b began only after env_a's install had ended
    assert real.status("hr", "env_b")["status"] == "running"


def test_the_default_root_password_is_refused_everywhere(real):
    for node in ("supervisor", "env_a", "env_b"):
        port = real.ports[node]
        assert real.sign_in(port, "admin@nocobase.com", "admin123") == 401, node
        assert real.sign_in(port, "root@example.com", "admin123") == 401, node
        assert real.sign_in(port, "root@example.com", real.root_password) == 200, node


def test_a_second_converge_changes_nothing(real):
    again = real.playbook("site.yml", timeout=1800)
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-6000:]


def test_a_restarted_worker_brings_its_apps_back(real):
    real.docker("restart", real.container("worker-env_b"))
    started = time.monotonic()
    real.wait(lambda: app_info(real, "hr") == (200, "hr") and app_info(real, "crm", port=real.ports["env_b"]) == (200, "crm"),
              timeout=600, what="hr and crm back in env_b")
    print("apps back %.1f s after docker restart" % (time.monotonic() - started))
    for app in ("crm", "hr"):
        assert real.status(app, "env_b")["status"] == "running"
    assert app_info(real, "crm", port=real.ports["env_a"]) == (200, "crm")  # env_a untouched


def test_over_https_every_page_signs_in_and_its_websocket_is_wss(real):
    """Last: turns on proxy_tls (a generated certificate), as an operator would, with proxy.yml."""
    port = free_port()
    real.playbook("proxy.yml", "-e", json.dumps({"proxy_tls": True, "proxy_tls_published_port": port}))
    base = "https://127.0.0.1:%d/" % port
    sign_in_to_every_page(real, base, insecure_tls=True)
    # A page opened over plain HTTP arrives at the same page over HTTPS.
    with Browser(SCREENSHOTS / real.name, insecure_tls=True) as browser, browser.screenshot_on_failure("redirect"):
        browser.open("http://127.0.0.1:%d/apps/hr/admin/" % real.ports["proxy"])
        browser.wait(lambda: browser.find("input[type=password]"), 240, "hr's sign-in page over HTTPS")
        assert browser.url == base + "apps/hr/signin?redirect=/admin/"
