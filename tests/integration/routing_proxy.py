"""nginx running the proxy role's rendered configuration, with three echo upstreams in the same
container: 127.0.0.1:9000 the supervisor, 9001 env_a, 9002 env_b. Each echo answers with its name,
the request target, the upgrade and the host headers it received. Used by test_proxy_routing.py and
benchmarks/proxy_routing.py."""
from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
import uuid

from test_tls_proxy_template import render_proxy_template

from conftest import free_port

IMAGE = "nocobase-multienv/nginx:offline"
SUPERVISOR_URL = "http://127.0.0.1:9000"
RECORDS = [
    {"name": "crm", "proxyTarget": {"available": True, "url": "http://127.0.0.1:9001"}},
    {"name": "hr", "proxyTarget": {"available": True, "url": "http://127.0.0.1:9002"}},
    {"name": "ops", "proxyTarget": {"available": False, "url": "http://127.0.0.1:9002"}},
]


def echo_servers():
    servers = []
    for upstream, port in (("supervisor", 9000), ("env_a", 9001), ("env_b", 9002)):
        servers.append("server {\n    listen 127.0.0.1:%d;\n    access_log off;\n    default_type text/plain;\n"
                       '    return 200 "%s $request_uri upgrade=$http_upgrade host=$http_host '
                       'forwarded=$http_x_forwarded_host,$http_x_forwarded_proto\\n";\n}\n' % (port, upstream))
    return "\n".join(servers)


def request(port, target, headers, quiet=False):
    """(status, body) of one GET; None for a connection failure when quiet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode().strip()
    except OSError:
        if quiet:
            return None
        raise
    finally:
        connection.close()


@contextlib.contextmanager
def routing_proxy(out, template=None):
    """(container name, published port) of nginx with the configuration rendered into `out` (from
    `template`, default the role's), removed on exit."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode:
        raise RuntimeError("%s is missing: tools/setup.sh --offline-images builds it" % IMAGE)
    render_proxy_template(out, [{"name": "nocobase", "tls": False, "port": 13443}], RECORDS, SUPERVISOR_URL,
                          template=template)
    conf = out / "conf.d"
    conf.mkdir()
    (out / "nocobase.conf").rename(conf / "nocobase.conf")
    (conf / "echo.conf").write_text(echo_servers())
    name, port = "nbroute-" + uuid.uuid4().hex[:8], free_port()
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "bridge", "-p", "127.0.0.1:%d:80" % port,
                    "-v", "%s:/etc/nginx/conf.d:ro" % conf, IMAGE], check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 30
        while request(port, "/__nocobase_proxy_health", {}, quiet=True) != (200, "ok"):
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
                raise RuntimeError("nginx did not answer in 30 s:\n%s%s" % (logs.stdout, logs.stderr))
            time.sleep(0.2)
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False, timeout=60)
