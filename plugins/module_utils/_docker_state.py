# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# What a Docker engine holds of a platform, reduced from one community.docker.docker_host_info
# listing, and the test that lets a role skip a container whose recorded spec is still wanted
# (docker compose's config-hash, the same idea).

from __future__ import annotations

import hashlib
import json

SPEC_LABEL = "org.nocobase.multienv.spec-hash"
ROLE_LABEL = "org.nocobase.multienv.role"
ENVIRONMENT_LABEL = "org.nocobase.multienv.environment"
SERVICE_LABEL = "com.docker.swarm.service.name"  # Docker Swarm's own label on a task's container


# How Docker Hub may be named in a reference; Docker lists its images without it.
_DEFAULT_REGISTRY_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def image_reference(image):
    """`image` as Docker lists it among an image's RepoTags, or its RepoDigests for a digest: Docker
    Hub's prefix dropped, a reference without a tag is `:latest`, a digest reference without its tag."""
    for prefix in _DEFAULT_REGISTRY_PREFIXES:
        if image.startswith(prefix):
            image = image[len(prefix):]
            break
    if "@" in image:
        repository, digest = image.split("@", 1)
        path, slash, name = repository.rpartition("/")
        return "%s%s%s@%s" % (path, slash, name.split(":", 1)[0], digest)
    name = image.rsplit("/", 1)[-1]
    return image if ":" in name else image + ":latest"


def engine_state(listing):
    """{containers: {name: {...}}, volumes: {name: labels}, networks: [names], images: {reference: id},
    swarm: {state, node_id}}.

    A task container of a Docker Swarm service is listed under the service's name (its own name holds
    a slot and a task id that change), with `service` set: of the service's containers on this engine
    the running one first, then the first by name.
    """
    containers = {}
    tasks = {}
    for item in listing.get("containers") or []:
        status = item.get("Status") or ""
        health = "healthy" if "(healthy)" in status else "unhealthy" if "(unhealthy)" in status else \
            "starting" if "(health: starting)" in status else None
        networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
        labels = item.get("Labels") or {}
        record = {
            "id": item.get("Id"),
            "image": item.get("Image"),
            "image_id": item.get("ImageID"),
            "labels": labels,
            "role": labels.get(ROLE_LABEL),
            "environment": labels.get(ENVIRONMENT_LABEL),
            "running": item.get("State") == "running",
            "health": health,
            "addresses": {network: (settings or {}).get("IPAddress") for network, settings in networks.items()},
            "mounts": [mount.get("Source") for mount in item.get("Mounts") or []],
            "service": labels.get(SERVICE_LABEL),
        }
        names = sorted(name.lstrip("/") for name in item.get("Names") or [])
        if record["service"]:
            tasks.setdefault(record["service"], []).append((not record["running"], names[:1], record))
            continue
        for name in names:
            containers[name] = record
    for service, candidates in tasks.items():
        containers[service] = min(candidates, key=lambda candidate: candidate[:2])[2]
    images = {}
    for item in listing.get("images") or []:
        for tag in (item.get("RepoTags") or []) + (item.get("RepoDigests") or []):
            if tag not in ("<none>:<none>", "<none>@<none>"):
                images[tag] = item.get("Id")
    swarm = (listing.get("host_info") or {}).get("Swarm") or {}
    return {
        "containers": containers,
        "volumes": {item["Name"]: item.get("Labels") or {} for item in listing.get("volumes") or []},
        "networks": sorted(item["Name"] for item in listing.get("networks") or []),
        "images": images,
        # The engine as a Docker Swarm node: its state (active when it is one) and its node id.
        "swarm": {"state": swarm.get("LocalNodeState") or "inactive", "node_id": swarm.get("NodeID") or ""},
    }


def images_to_pull(listings, platform, pull):
    """The images a Docker engine needs (the platform model's engine_images) and must be pulled
    onto before anything changes, as nocobase_image_pull `pull` says: each {endpoint, host (the
    inventory host its engine was read through), image, hosts (that need it), build, missing}.

    `listings`: the results of the run's docker_host_info loop (each with the host as its item).
    missing: the images the engine lacks (with never, those are listed to be reported, not pulled);
    always: also every image a container runs (not a base the agent image is built from).
    """
    endpoints = platform.get("endpoints") or {}
    read = {}
    for listing in listings:
        read.setdefault(endpoints[listing["item"]], (listing["item"], engine_state(listing)))
    pulls = []
    for endpoint, wanted in sorted((platform.get("engine_images") or {}).items()):
        host, state = read.get(endpoint, (None, {}))
        for entry in wanted:
            missing = image_reference(entry["image"]) not in (state.get("images") or {})
            if missing or pull == "always" and not entry["build"]:
                pulls.append({"endpoint": endpoint, "host": host, "image": entry["image"], "hosts": entry["hosts"],
                              "build": entry["build"], "missing": missing})
    return pulls


def pull_failure(pulls, results, pull, check_mode=False):
    """What to tell when images an engine needs are not there: a message naming each image, the
    engine and its hosts, and the fix; empty when every pull went through (or, in check mode, when
    pulls would be tried). `results`: the results of the pull loop over `pulls`, in its order."""
    if pull == "never":
        failed = [(item, None) for item in pulls if item["missing"]]
    elif check_mode:
        failed = []
    else:
        failed = [(item, result.get("msg") or "no image came back") for item, result in zip(pulls, results)
                  if not result.get("skipped") and not result.get("image")]
    if not failed:
        return ""
    unchanged = "no container, network, volume or secret of the platform was made or changed"
    if pull == "never":
        lines = ["nocobase_image_pull is never and these images are not on the Docker engine that needs them; %s:"
                 % unchanged]
    else:
        lines = ["These images could not be pulled onto the Docker engine that needs them: no registry is reachable "
                 "from it (or the registry has no such image); %s:" % unchanged]
    reasons = {_one_line(error) for dummy, error in failed if error}
    for item, error in failed:
        needed = ("to build the agent image of %s" if item["build"] else "for %s") % ", ".join(item["hosts"])
        has_it = "" if item["missing"] else ", which has it"
        lines.append("- %s %s, on the Docker engine at %s%s" % (item["image"], needed, item["endpoint"], has_it))
        if error and len(reasons) > 1:
            lines.append("  Docker: %s" % _one_line(error))
    if len(reasons) == 1:
        lines.append("Docker, for each: %s" % reasons.pop())
    lines.append("Fix: deploy the locally built images with make deploy IMAGES=offline (inventories/offline, or a copy "
                 "of it), or load or build each image on that engine (docker load, docker build -t IMAGE), or make a "
                 "registry reachable from it; then run again.")
    if pull == "always":
        lines.append("nocobase_image_pull is always, which pulls every image each run, even one the engine has; "
                     "missing pulls only the images an engine lacks.")
    return "\n".join(lines)


def _one_line(error):
    """Docker's error on one line: the daemon's own words when the client wrapped them
    ('... 500 Server Error for <API URL>: Internal Server Error ("<the daemon's words>")')."""
    text = " ".join(str(error).split())
    start, end = text.find('("'), text.rfind('")')
    if 0 <= start < end:
        text = text[start + 2:end]
    return text if len(text) <= 300 else text[:297] + "..."


def container_is_current(state, name, spec_hash, image, want_running=True, want_healthy=False):
    """True when the container `name` carries `spec_hash`, runs the image `image` now names, and is
    running (and healthy) if asked: then nothing about it needs to change."""
    current = (state.get("containers") or {}).get(name)
    if not current or current["labels"].get(SPEC_LABEL) != spec_hash:
        return False
    image_id = (state.get("images") or {}).get(image_reference(image))
    if image_id is None or image_id != current["image_id"]:
        return False
    if want_running and not current["running"]:
        return False
    return not want_healthy or current["health"] == "healthy"


def nodes_to_upgrade(platform, engines, unverified=()):
    """The NocoBase nodes of the platform model whose container is missing or runs another image than
    the model names for it (another tag, or the tag moved), or that an upgrade replaced but did not
    verify (their containers among `unverified`), in NocoBase's upgrade order: the supervisor, then
    the workers as the inventory lists them.  Each: host, container, role, environment,
    published_port, image (wanted) and running_image (as Docker lists it, or None)."""
    nodes = []
    for node in platform.get("nodes") or []:
        engine = engines.get(node["endpoint"]) or {}
        current = (engine.get("containers") or {}).get(node["container"])
        wanted_id = (engine.get("images") or {}).get(image_reference(node["image"]))
        if current is not None and wanted_id is not None and current["image_id"] == wanted_id \
                and node["container"] not in unverified:
            continue
        nodes.append({
            "host": node["host"],
            "container": node["container"],
            "role": "worker" if "environment" in node else "supervisor",
            "environment": node.get("environment"),
            "published_port": node.get("published_port"),
            "image": node["image"],
            "running_image": current["image"] if current is not None else None,
        })
    return nodes


def node_images(platform, engines):
    """{"supervisor": {host: image}, "worker": {host: image}}: the image each NocoBase node's container
    runs, as the engines were listed (None where it has no container). A backup keeps them in its
    manifest, for the rollback of an upgrade."""
    images = {"supervisor": {}, "worker": {}}
    for node in platform.get("nodes") or []:
        current = ((engines.get(node["endpoint"]) or {}).get("containers") or {}).get(node["container"])
        images["worker" if "environment" in node else "supervisor"][node["host"]] = current["image"] if current else None
    return images


def rollback_arguments(images):
    """What puts every node back on the images of node_images(), as words of a command line: an
    extra variable per role whose nodes ran one image, else where to set the role's image in the
    inventory, host by host."""
    extra, inventory = [], []
    for role in ("supervisor", "worker"):
        by_host = {host: image for host, image in ((images or {}).get(role) or {}).items() if image}
        distinct = sorted(set(by_host.values()))
        if len(distinct) == 1:
            extra.append("-e %s_image=%s" % (role, distinct[0]))
        elif distinct:
            inventory.append("%s_image in the inventory: %s" % (role, ", ".join(
                "%s on %s" % (by_host[host], host) for host in sorted(by_host))))
    return " ".join(extra) + ("" if not inventory else " (and set %s)" % "; ".join(inventory))


# What a spec hash leaves out: how the task waits or pulls (changing those must not recreate anything).
SPEC_HASH_IGNORES = ("pull", "state", "wait_timeout")
# Changes when the container action changes what it makes of a spec (every container is then made again).
SPEC_HASH_VERSION = 2


def spec_hash(key, spec, platform_settings):
    """The hash of what a container is made of: its spec (as the role gave it) and the platform
    settings the container action adds. Keyed with `key` (the AES key), so that the label, which
    anyone who lists containers sees, tells nothing about the secrets in the spec."""
    spec = {name: value for name, value in spec.items() if name not in SPEC_HASH_IGNORES}
    payload = json.dumps([SPEC_HASH_VERSION, spec] + list(platform_settings), sort_keys=True)
    return hashlib.sha256(("%s\n%s" % (key, payload)).encode("utf-8")).hexdigest()[:24]
