"""Sphinx extension of the docs site (tools/docsite/build.py): references to Ansible's own documentation, offline.

The pages antsibull-docs writes refer to labels of the Ansible documentation (the return values common to all
modules, action plugins, the configuration settings) and to plugins of other collections (community.docker's
modules). On docs.ansible.com intersphinx resolves them from inventories it downloads; here they become links
to the pages docs.ansible.com publishes for them. Every other reference that Sphinx cannot resolve, among them
any to this collection's own pages, stays a warning, and the build fails on it.
"""
from __future__ import annotations

import re

from docutils import nodes

ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/latest/"
# label: (page, title)
LABELS = {
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    "action_plugins": ("plugins/action.html", "Action Plugins"),
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
}
# antsibull-docs's label of a plugin or role page: ansible_collections.<namespace>.<name>.<plugin>_<type>
PLUGIN = re.compile(r"ansible_collections\.(?P<namespace>[a-z0-9_]+)\.(?P<name>[a-z0-9_]+)\."
                    r"(?P<plugin>[a-z0-9_]+)_(?P<type>[a-z]+)")
OWN = ("nocobase", "multienv")


def external(target):
    """(url, title) on docs.ansible.com for a label this site cannot have, or None."""
    if target in LABELS:
        page, title = LABELS[target]
        return ANSIBLE_DOCS + page, title
    match = PLUGIN.fullmatch(target)
    if match and (match["namespace"], match["name"]) != OWN:
        return (ANSIBLE_DOCS + "collections/%(namespace)s/%(name)s/%(plugin)s_%(type)s.html" % match.groupdict(),
                "%(namespace)s.%(name)s.%(plugin)s" % match.groupdict())
    return None


def resolve(app, env, node, contnode):
    if node.get("refdomain") != "std" or node.get("reftype") != "ref":
        return None
    found = external(node["reftarget"])
    if found is None:
        return None
    url, title = found
    reference = nodes.reference("", "", internal=False, refuri=url)
    reference += contnode if node.get("refexplicit") else nodes.inline(title, title)
    return reference


def setup(app):
    app.connect("missing-reference", resolve)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
