#!/bin/sh
# Entry point of the multi-host test harness's "Docker host" (tools/docker-host-image.sh): an
# SSH server and a Docker engine of its own. The engine keeps its data in /var/lib/docker, which
# the harness mounts as a volume (overlay2 cannot stack on the container's own overlay root).
set -eu

# The harness runs this container --privileged, or, where the outer engine cannot grant every
# capability (a nested engine), with all the capabilities it can and no seccomp or AppArmor
# profile: then sysfs and the cgroup hierarchies are mounted read-only, and dockerd needs them
# writable.
if awk '$2 == "/sys" && $4 ~ /^ro/ { found = 1 } END { exit !found }' /proc/mounts; then
  mount -o remount,rw /sys
fi
awk '($3 == "cgroup" || $3 == "cgroup2") && $4 ~ /^ro/ { print $2 }' /proc/mounts \
  | while IFS= read -r hierarchy; do mount -o remount,bind,rw "$hierarchy"; done
# cgroup v2: move this container's processes into a leaf so that dockerd may enable the
# controllers for its own children (what docker:dind does).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi

mkdir -p /run/sshd /root/.ssh
chmod 0700 /root/.ssh
ssh-keygen -A >/dev/null
/usr/sbin/sshd -e
rm -f /var/run/docker.pid
# shellcheck disable=SC2086  # DOCKER_HOST_DOCKERD_ARGS: more options, split on blanks
exec dockerd --storage-driver="${DOCKER_HOST_STORAGE_DRIVER:-overlay2}" \
  --host=unix:///var/run/docker.sock --log-level=warn ${DOCKER_HOST_DOCKERD_ARGS:-}
