"""What an engine holds, and when a container can be left alone (plugins/module_utils/_docker_state.py)."""
from __future__ import annotations

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    SPEC_LABEL,
    container_is_current,
    engine_state,
    image_reference,
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
