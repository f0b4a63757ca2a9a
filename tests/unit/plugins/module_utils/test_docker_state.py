"""What an engine holds, and when a container can be left alone (plugins/module_utils/_docker_state.py)."""
from __future__ import annotations

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    SPEC_LABEL,
    container_is_current,
    engine_state,
    image_reference,
    images_to_pull,
    node_images,
    nodes_to_upgrade,
    pull_failure,
    rollback_arguments,
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
    ("app@sha256:abc", "app@sha256:abc"),
    # Docker lists Docker Hub's images without the registry, and a digest without the tag.
    ("docker.io/library/redis:7", "redis:7"), ("index.docker.io/library/redis", "redis:latest"),
    ("docker.io/bitnami/redis:7", "bitnami/redis:7"), ("redis:7@sha256:abc", "redis@sha256:abc"),
    ("registry:5000/team/app:1@sha256:abc", "registry:5000/team/app@sha256:abc")])
def test_image_reference(image, reference):
    assert image_reference(image) == reference


def test_an_image_is_found_by_its_digest_too():
    listing = {"images": [{"Id": "sha256:i1", "RepoTags": ["redis:7"], "RepoDigests": ["redis@sha256:abc"]},
                          {"Id": "sha256:i2", "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]}]}
    images = engine_state(listing)["images"]
    assert images == {"redis:7": "sha256:i1", "redis@sha256:abc": "sha256:i1"}
    assert image_reference("docker.io/library/redis:7@sha256:abc") in images


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
    waits = dict(spec, state="healthy", pull="always", wait_timeout=60)
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
    # A node an upgrade replaced but did not verify is upgraded again, whatever it runs.
    assert [n["container"] for n in nodes_to_upgrade(settled, engines, ["w_b"])] == ["w_b"]


PLATFORM = {
    "endpoints": {"redis": "10.0.0.10", "postgres": "10.0.0.10", "worker_a": "10.0.0.12"},
    "engine_images": {
        "10.0.0.10": [{"image": "postgres:16", "hosts": ["postgres"], "build": False},
                      {"image": "redis:7", "hosts": ["redis"], "build": False}],
        "10.0.0.12": [{"image": "nb:2", "hosts": ["worker_a"], "build": False},
                      {"image": "python:3.12-slim", "hosts": ["worker_a"], "build": True}],
    },
}
# The run's docker_host_info loop: one host per engine; 10.0.0.10 has redis:7, 10.0.0.12 its base image.
LISTINGS = [dict(LISTING, item="postgres"),
            {"item": "worker_a", "images": [{"Id": "sha256:p", "RepoTags": ["python:3.12-slim"]}]}]


def _pulled(pulls):
    return [(pull["host"], pull["image"], pull["missing"]) for pull in pulls]


@pytest.mark.parametrize("pull, expected", [
    ("missing", [("postgres", "postgres:16", True), ("worker_a", "nb:2", True)]),
    ("never", [("postgres", "postgres:16", True), ("worker_a", "nb:2", True)]),  # to be reported
    # always: what a container runs again, even where the engine has it; not the agent's base.
    ("always", [("postgres", "postgres:16", True), ("postgres", "redis:7", False), ("worker_a", "nb:2", True)]),
])
def test_images_to_pull_are_those_each_engine_needs_and_lacks(pull, expected):
    assert _pulled(images_to_pull(LISTINGS, PLATFORM, pull)) == expected


def test_an_engine_with_every_image_pulls_nothing():
    listings = [dict(LISTINGS[0], images=LISTING["images"] + [{"Id": "sha256:pg", "RepoTags": ["postgres:16"]}]),
                dict(LISTINGS[1], images=LISTINGS[1]["images"] + [{"Id": "sha256:nb", "RepoTags": ["nb:2"]}])]
    assert images_to_pull(listings, PLATFORM, "missing") == []
    assert images_to_pull(listings, PLATFORM, "never") == []


UNREACHABLE = ('Error pulling image nb:2 - 500 Server Error for http+docker://localhost/v1.41/images/create?tag=2&fromImage=nb: '
               'Internal Server Error ("Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: '
               'no such host")')


def test_a_failed_pull_names_the_image_the_engine_the_hosts_docker_s_reason_and_the_fix():
    pulls = images_to_pull(LISTINGS, PLATFORM, "missing")
    results = [{"changed": True, "image": {"Id": "sha256:pg"}}, {"changed": False, "msg": UNREACHABLE}]
    message = pull_failure(pulls, results, "missing")
    assert "no registry is reachable" in message
    assert "- nb:2 for worker_a, on the Docker engine at 10.0.0.12" in message
    assert "postgres:16" not in message  # it was pulled
    assert 'Docker, for each: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host' in message
    assert "make deploy IMAGES=offline" in message
    assert pull_failure(pulls, [results[0], results[0]], "missing") == ""


def test_pull_failures_with_different_reasons_give_each_its_own():
    pulls = images_to_pull(LISTINGS, PLATFORM, "missing")
    message = pull_failure(pulls, [{"msg": "denied"}, {"msg": UNREACHABLE}], "missing")
    assert "- postgres:16 for postgres, on the Docker engine at 10.0.0.10\n  Docker: denied\n" in message
    assert "Docker, for each" not in message


def test_never_reports_every_missing_image_even_in_check_mode():
    pulls = images_to_pull(LISTINGS, PLATFORM, "never")
    message = pull_failure(pulls, [], "never", check_mode=True)
    assert message.startswith("nocobase_image_pull is never")
    assert "- postgres:16 for postgres, on the Docker engine at 10.0.0.10" in message
    assert "make deploy IMAGES=offline" in message and "Docker:" not in message and "Docker, for each" not in message


def test_check_mode_pulls_nothing_so_reports_nothing():
    pulls = images_to_pull(LISTINGS, PLATFORM, "missing")
    assert pull_failure(pulls, [{"changed": True, "image": None}] * 2, "missing", check_mode=True) == ""
    skipped = [{"skipped": True}] * 2  # a play of a run whose first play pulled
    assert pull_failure(pulls, skipped, "missing") == ""


def test_the_base_of_the_agent_image_is_named_as_such():
    listings = [dict(LISTINGS[0], images=[]), dict(LISTINGS[1], images=[])]
    pulls = images_to_pull(listings, PLATFORM, "never")
    assert "- python:3.12-slim to build the agent image of worker_a, on the Docker engine at 10.0.0.12" in pull_failure(
        pulls, [], "never")


def test_always_says_which_images_the_engine_has_and_how_to_pull_only_the_missing():
    pulls = images_to_pull(LISTINGS, PLATFORM, "always")
    message = pull_failure(pulls, [{"msg": UNREACHABLE}] * len(pulls), "always")
    assert "- redis:7 for redis, on the Docker engine at 10.0.0.10, which has it\n" in message
    assert "- postgres:16 for postgres, on the Docker engine at 10.0.0.10\n" in message
    assert "missing pulls only the images an engine lacks" in message


def test_the_rollback_names_each_roles_image_from_the_backup():
    engines = {"local": {"containers": {"sup": {"image": "nb:1", "image_id": "sha256:1"},
                                        "w_a": {"image": "nb:1", "image_id": "sha256:1"},
                                        "w_b": {"image": "nb:0", "image_id": "sha256:0"}}}}
    platform = {"nodes": [_node("sup", "nb:2"), _node("w_a", "nb:2", "env_a"), _node("w_b", "nb:2", "env_b"),
                          _node("w_c", "nb:2", "env_c")]}
    images = node_images(platform, engines)
    assert images == {"supervisor": {"sup": "nb:1"}, "worker": {"w_a": "nb:1", "w_b": "nb:0", "w_c": None}}
    assert rollback_arguments(images) == "-e supervisor_image=nb:1 (and set worker_image in the inventory: nb:1 on w_a, nb:0 on w_b)"
    images["worker"]["w_b"] = "nb:1"
    assert rollback_arguments(images) == "-e supervisor_image=nb:1 -e worker_image=nb:1"
