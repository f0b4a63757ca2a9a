"""Write the per-component settings declared in plugins/module_utils/_workload.py (SETTINGS) where
operators read them: each role's defaults/main.yml and meta/argument_specs.yml, and the table of
docs/provisioning.md ("Memory and CPUs"), each between its BEGIN settings and END settings lines.

Usage: .venv/bin/python tools/settings.py [--check]
  --check  writes nothing; exits 1 naming the files that differ from the declaration (the tests run it).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import COLLECTIONS_PATH  # noqa: E402  (conftest links this checkout as the collection)

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.nocobase.multienv.plugins.module_utils._workload import SETTINGS  # noqa: E402

BEGIN = "BEGIN settings: tools/settings.py writes them from _workload.SETTINGS"


def _default(setting):
    return "null" if setting.default is None else setting.default


def blocks():
    """{path: (indent, [lines between the markers])}."""
    wanted = {}
    table = ["| variable | default | what |", "|---|---|---|"]
    for settings in SETTINGS.values():
        for setting in settings:
            role = REPO / "roles" / setting.role
            wanted.setdefault(role / "defaults" / "main.yml", ("", []))[1].extend(
                ["# " + setting.description, "%s: %s" % (setting.name, _default(setting))])
            spec = ["%s:" % setting.name, "  description: %s" % setting.description,
                    "  type: %s" % ("float" if setting.kind == "cpus" else "str")]
            if setting.default is not None:
                spec.append("  default: %s" % setting.default)
            wanted.setdefault(role / "meta" / "argument_specs.yml", ("      ", []))[1].extend(spec)
            table.append("| `%s` | %s | %s |" % (setting.name, "`%s`" % setting.default if setting.default else "none",
                                                 setting.description))
    wanted[REPO / "docs" / "provisioning.md"] = ("", table)
    return wanted


def render(path, indent, lines):
    text = path.read_text()
    if path.suffix == ".md":
        begin, end = "<!-- %s -->" % BEGIN, "<!-- END settings -->"
    else:
        begin, end = indent + "# " + BEGIN, indent + "# END settings"
    pattern = re.compile(r"^%s\n(.*?\n)?%s$" % (re.escape(begin), re.escape(end)), re.MULTILINE | re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise SystemExit("%s: one block between\n  %s\n  %s\nis needed" % (path.relative_to(REPO), begin, end))
    body = "".join(indent + line + "\n" if line else "\n" for line in lines)
    return pattern.sub(lambda match: begin + "\n" + body + end, text)


def main(argv):
    check = argv[1:] == ["--check"]
    differ = []
    for path, (indent, lines) in blocks().items():
        text = render(path, indent, lines)
        if text != path.read_text():
            differ.append(str(path.relative_to(REPO)))
            if not check:
                path.write_text(text)
    if differ:
        print(("differ from _workload.SETTINGS: " if check else "written: ") + ", ".join(differ))
    return 1 if check and differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
