"""Write the per-component settings declared in plugins/module_utils/_workload.py (SETTINGS) where
operators read them: each role's defaults/main.yml and meta/argument_specs.yml, and the two tables of
docs/provisioning.md ("Settings of the components", "Memory and CPUs"), each between its BEGIN and
END settings lines.

Usage: .venv/bin/python tools/settings.py [--check]
  --check  writes nothing; exits 1 naming the files that differ from the declaration (the tests run it).
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import COLLECTIONS_PATH  # noqa: E402  (conftest links this checkout as the collection)

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.nocobase.multienv.plugins.module_utils._workload import KIND_TYPES, SETTINGS  # noqa: E402

BEGIN = "BEGIN settings: tools/settings.py writes them from _workload.SETTINGS"
# The docs' two tables: the memory and CPU settings ("Memory and CPUs"), and the others.
TABLES = {"resources": "<!-- %s -->" % BEGIN,
          "components": "<!-- BEGIN component settings: tools/settings.py writes them from _workload.SETTINGS -->"}


def _yaml(value):
    """A default as YAML on one line (a template in double quotes, as the roles write them)."""
    if isinstance(value, str) and "{{" in value:
        return json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10000).replace("\n...\n", "").strip()


def _plain(text, first, indent):
    """`text` as a YAML plain scalar in lines of at most 120 characters (in the argument spec)."""
    if ": " in text or " #" in text or text[:1] in "[]{}&*!|>'\"%@`,?:-#":
        raise SystemExit("a setting's description cannot be a plain YAML scalar: %r" % text)
    lines = textwrap.wrap(text, 120 - 6 - len(indent))
    return [first + lines[0]] + [indent + line for line in lines[1:]]


def _paragraphs(setting):
    return setting.description if isinstance(setting.description, list) else [setting.description]


def _markdown(text):
    return re.sub(r"\b[CVO]\(([^)]*)\)", r"`\1`", text)


def blocks():
    """{path: (indent, [lines between the markers], begin marker or None)}."""
    wanted = {}
    tables = {table: ["| variable | role | default | what |", "|---|---|---|---|"] for table in TABLES}
    for settings in SETTINGS.values():
        for setting in settings:
            role = REPO / "roles" / setting.role
            comment = textwrap.wrap(re.sub(r"\b[CVO]\(([^)]*)\)", r"\1", " ".join(_paragraphs(setting))), 108)
            wanted.setdefault(role / "defaults" / "main.yml", ("", [], None))[1].extend(
                ["# " + line for line in comment] + ["%s: %s" % (setting.name, _yaml(setting.default))])
            spec = ["%s:" % setting.name]
            if isinstance(setting.description, list):
                spec.append("  description:")
                for paragraph in setting.description:
                    spec += _plain(paragraph, "    - ", "      ")
            else:
                spec += _plain(setting.description, "  description: ", "    ")
            spec.append("  type: %s" % KIND_TYPES[setting.kind])
            if setting.kind == "args":
                spec.append("  elements: str")
            if setting.default is not None:
                spec.append("  default: %s" % _yaml(setting.default))
            wanted.setdefault(role / "meta" / "argument_specs.yml", ("      ", [], None))[1].extend(spec)
            default = "none" if setting.default is None else "`%s`" % _yaml(setting.default)
            tables["resources" if setting.kind in ("size", "cpus") else "components"].append(
                "| `%s` | %s | %s | %s |" % (setting.name, setting.role, default,
                                             _markdown(" ".join(_paragraphs(setting)))))
    for table, lines in tables.items():
        wanted[(REPO / "docs" / "provisioning.md", table)] = ("", lines, TABLES[table])
    return wanted


def render(text, path, indent, lines, begin=None):
    if begin:
        end = "<!-- END settings -->"
    else:
        begin, end = indent + "# " + BEGIN, indent + "# END settings"
    pattern = re.compile(r"^%s\n(.*?\n)??%s$" % (re.escape(begin), re.escape(end)), re.MULTILINE | re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise SystemExit("%s: one block between\n  %s\n  %s\nis needed" % (path.relative_to(REPO), begin, end))
    body = "".join(indent + line + "\n" if line else "\n" for line in lines)
    return pattern.sub(lambda match: begin + "\n" + body + end, text)


def main(argv):
    check = argv[1:] == ["--check"]
    texts = {}
    for key, (indent, lines, begin) in blocks().items():
        path = key[0] if isinstance(key, tuple) else key
        texts[path] = render(texts.get(path, path.read_text()), path, indent, lines, begin)
    differ = []
    for path, text in texts.items():
        if text != path.read_text():
            differ.append(str(path.relative_to(REPO)))
            if not check:
                path.write_text(text)
    if differ:
        print(("differ from _workload.SETTINGS: " if check else "written: ") + ", ".join(differ))
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
