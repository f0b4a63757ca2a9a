"""What an engine holds, and when a container can be left alone (plugins/module_utils/_docker_state.py)."""
from __future__ import annotations

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    SPEC_LABEL,
    container_is_current,
    engine_state,
    image_reference,
    nodes_to_upgrade,
    spec_hash,
)

LISTING = {
    "containers": [{"Names": ["/nb-redis"], "Id": "c1", "Image": "redis:7", "ImageID": "sha256:r7", "State": "running",
                    "Status": "Up 5 minutes (healthy)", "Labels": {SPEC_LABEL: "h1", "org.nocobase.multienv.role": "redis"},
                    "NetworkSettings": {"Networks": {"nb-backend": {"IPAddress": "172.20.0.2"}}},
                    "Mounts": [{"Type": "volume", "Source": "/var/lib/docker/volumes/nb-redis-data/_data"}]},
                   {"Names": ["/nb-proxy"], "Id": "c2", "Image": "nginx", "ImageID": "sha256:n", "State": "exited",
                    "Status": "Exited (0) 1 minute ago", "Labels": {SPEC_LABEL: "h2"}}],
    "volumes": [{"Name": "nb-redis-data", "Labels": {"a": "b"}}],
    "networks": [{"Name": "nb"}, {"Name": "nb-backend"}],
    "images": [{"Id": "sha256:r7", "RepoTags": ["redis:7"]}, {"Id": "sha256:n", "RepoTags": ["nginx:latest"]},
               {"Id": "sha256:x", "RepoTags": ["<none>:<none>"]}],
}


def test_engine_state():
    state = engine_state(LISTING)
    assert state["containers"]["nb-redis"]["health"] == "healthy"
    assert state["containers"]["nb-redis"]["addresses"] == {"nb-backend": "172.20.0.2"}
    assert state["containers"]["nb-redis"]["mounts"] == ["/var/lib/docker/volumes/nb-redis-data/_data"]
    assert (state["containers"]["nb-redis"]["role"], state["containers"]["nb-redis"]["environment"]) == ("redis", None)
    assert state["containers"]["nb-proxy"]["running"] is False
    assert state["volumes"] == {"nb-redis-data": {"a": "b"}}
    assert state["networks"] == ["nb", "nb-backend"]
    assert state["images"] == {"redis:7": "sha256:r7", "nginx:latest": "sha256:n"}
    assert state["swarm"] == {"state": "inactive", "node_id": ""}
    swarm = engine_state({"host_info": {"Swarm": {"LocalNodeState": "active", "NodeID": "n1"}}})["swarm"]
    assert swarm == {"state": "active", "node_id": "n1"}


def test_a_swarm_task_container_is_listed_under_its_service_running_first():
    def task(name, container_id, state):
        return {"Names": ["/" + name], "Id": container_id, "State": state, "Status": "Up 1 minute (healthy)",
                "Labels": {"com.docker.swarm.service.name": "nb-agent-env_a", "org.nocobase.multienv.role": "agent"}}

    state = engine_state({"containers": [task("nb-agent-env_a.1.old", "c0", "exited"),
                                         task("nb-agent-env_a.2.b", "c2", "running"),
                                         task("nb-agent-env_a.1.a", "c1", "running")]})
    assert list(state["containers"]) == ["nb-agent-env_a"]
    agent = state["containers"]["nb-agent-env_a"]
    assert (agent["id"], agent["service"], agent["role"], agent["running"]) == ("c1", "nb-agent-env_a", "agent", True)
    assert engine_state(LISTING)["containers"]["nb-redis"]["service"] is None


@pytest.mark.parametrize("image, reference", [
    ("nginx", "nginx:latest"), ("nginx:1.27", "nginx:1.27"), ("registry:5000/team/app", "registry:5000/team/app:latest"),
    ("app@sha256:abc", "app@sha256:abc")])
def test_image_reference(image, reference):
    assert image_reference(image) == reference


@pytest.mark.parametrize("name, spec_hash, image, running, healthy, current", [
    ("nb-redis", "h1", "redis:7", True, True, True),
    ("nb-redis", "other", "redis:7", True, False, False),  # something asked differs
    ("nb-redis", "h1", "redis:8", True, False, False),  # another image
    ("nb-missing", "h1", "redis:7", True, False, False),
    ("nb-proxy", "h2", "nginx", True, False, False),  # stopped
    ("nb-proxy", "h2", "nginx", False, False, True),  # state present: stopped is fine
])
def test_container_is_current(name, spec_hash, image, running, healthy, current):
    assert container_is_current(engine_state(LISTING), name, spec_hash, image, running, healthy) is current


def test_a_tag_that_now_names_another_image_is_not_current():
    listing = dict(LISTING, images=[{"Id": "sha256:rebuilt", "RepoTags": ["redis:7"]}])
    assert not container_is_current(engine_state(listing), "nb-redis", "h1", "redis:7")


SETTINGS = ("nb", {"team": "a"}, "unless-stopped", 30)


def test_spec_hash_ignores_how_the_task_waits_or_pulls():
    spec = {"name": "nb-redis", "image": "redis:7", "env": {"A": "1"}}
    waits = dict(spec, state="healthy", pull="always", healthy_wait_timeout=60)
    assert spec_hash("k", spec, SETTINGS) == spec_hash("k", waits, SETTINGS)
    assert len(spec_hash("k", spec, SETTINGS)) == 24


@pytest.mark.parametrize("key, spec, settings", [
    ("other key", {"name": "nb-redis", "image": "redis:7", "env": {"A": "1"}}, SETTINGS),
    ("k", {"name": "nb-redis", "image": "redis:7", "env": {"A": "2"}}, SETTINGS),
    ("k", {"name": "nb-redis", "image": "redis:7", "env": {"A": "1"}}, ("nb", {}, "unless-stopped", 30)),
    ("k", {"name": "nb-redis", "image": "redis:7", "env": {"A": "1"}}, ("nb", {"team": "a"}, "always", 30)),
])
def test_spec_hash_changes_with_the_spec_the_settings_and_the_key(key, spec, settings):
    assert spec_hash(key, spec, settings) != spec_hash("k", {"name": "nb-redis", "image": "redis:7", "env": {"A": "1"}}, SETTINGS)


def test_spec_hash_tells_nothing_of_the_secrets_in_the_spec():
    assert "s3cret" not in spec_hash("k", {"env": {"PASSWORD": "s3cret"}}, SETTINGS)


def _node(container, image, environment=None):
    node = {"host": container, "container": container, "endpoint": "local", "image": image, "published_port": 1}
    if environment:
        node["environment"] = environment
    return node


def test_nodes_to_upgrade_are_those_on_another_image_in_nocobase_order():
    engines = {"local": {
        "containers": {"sup": {"image": "nb:1", "image_id": "sha256:1"}, "w_a": {"image": "nb:1", "image_id": "sha256:1"},
                       "w_b": {"image": "nb:2", "image_id": "sha256:2"}, "w_c": {"image": "nb:2", "image_id": "sha256:old2"}},
        "images": {"nb:1": "sha256:1", "nb:2": "sha256:2"}}}
    platform = {"nodes": [_node("sup", "nb:2"), _node("w_a", "nb:2", "env_a"), _node("w_b", "nb:2", "env_b"),
                          _node("w_c", "nb:2", "env_c"), _node("w_d", "nb:2", "env_d")]}
    plan = nodes_to_upgrade(platform, engines)
    # w_b runs nb:2 already; w_c runs an image the tag nb:2 no longer names; w_d has no container yet.
    assert [(n["container"], n["role"], n["environment"], n["running_image"]) for n in plan] == [
        ("sup", "supervisor", None, "nb:1"), ("w_a", "worker", "env_a", "nb:1"), ("w_c", "worker", "env_c", "nb:2"),
        ("w_d", "worker", "env_d", None)]
    # An image the engine lacks (to be pulled) is another image too; with every node on its image, nothing is left.
    assert [n["container"] for n in nodes_to_upgrade(platform, {"local": dict(engines["local"], images={})})] == [
        "sup", "w_a", "w_b", "w_c", "w_d"]
    settled = {"nodes": [_node("sup", "nb:1"), _node("w_b", "nb:2", "env_b")]}
    assert nodes_to_upgrade(settled, engines) == []
