"""The collection's docs site, as docs.ansible.com renders collections: antsibull-docs writes every module,
plugin and role (its argument spec) of nocobase.multienv, from this checkout, as RST, and Sphinx makes HTML of
it. Offline, and any warning fails the build.

usage: build.py [DEST]   (default .cache/docsite; the site is DEST/build/html/index.html)

The steps are antsibull-docs's own: `antsibull-docs sphinx-init --use-current` writes the site's skeleton (Sphinx
configuration, index, build.sh) into DEST, then its build.sh renders the collection and runs
`sphinx-build -W --keep-going`. Two changes to the generated conf.py keep the build offline: no intersphinx
(it fetches its inventories from the internet), and references to Ansible's documentation resolve to links
to docs.ansible.com instead (ansible_docs_links.py). Run by tools/docs.sh (make docs), after setup, and by
tests/quality/test_docsite.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COLLECTIONS_PATH = REPO / ".cache" / "collections"
COLLECTION = "nocobase.multienv"
BIN = Path(sys.executable).parent
MARKER = ".nocobase-docsite"  # marks DEST as this script's, so that a rebuild may empty it

CONF_OFFLINE = """
# Added by tools/docsite/build.py: build offline. Intersphinx would fetch the inventories above from the
# internet; references to Ansible's documentation become links to docs.ansible.com (ansible_docs_links.py).
import sys as _sys
_sys.path.insert(0, {tools!r})
extensions = [_name for _name in extensions if _name != 'sphinx.ext.intersphinx'] + ['ansible_docs_links']
intersphinx_mapping = {{}}
"""


def prepare(dest: Path) -> None:
    """An empty DEST, only writable by its owner (antsibull-docs insists on that)."""
    if dest.exists():
        if any(dest.iterdir()) and not (dest / MARKER).exists():
            raise SystemExit("%s is not empty and not a docs site this script built: not touching it" % dest)
        shutil.rmtree(dest)
    dest.mkdir(mode=0o700, parents=True)
    dest.chmod(0o700)
    (dest / MARKER).write_text("built by tools/docsite/build.py; emptied by its next run\n")


def run(args, cwd: Path, env) -> None:
    print("docs: %s" % " ".join(str(arg) for arg in args), file=sys.stderr, flush=True)
    subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, check=True)


def build(dest: Path) -> Path:
    link = COLLECTIONS_PATH / "ansible_collections" / "nocobase" / "multienv"
    if not (link / "galaxy.yml").is_file():
        raise SystemExit("%s does not lead to this checkout: run tools/setup.sh" % link)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1",
               PATH="%s%s%s" % (BIN, os.pathsep, os.environ.get("PATH", "")))
    prepare(dest)
    run([BIN / "antsibull-docs", "sphinx-init", "--use-current", "--fail-on-error", "--dest-dir", dest,
         "--project", COLLECTION, "--copyright", "nocobase.multienv contributors",
         "--title", "nocobase.multienv", "--index-rst-source", HERE / "index.rst", COLLECTION], REPO, env)
    with open(dest / "conf.py", "a", encoding="utf-8") as conf:
        conf.write(CONF_OFFLINE.format(tools=str(HERE)))
    run(["bash", dest / "build.sh"], dest, env)
    return dest / "build" / "html"


def main(argv) -> int:
    dest = Path(argv[1]).resolve() if len(argv) > 1 else REPO / ".cache" / "docsite"
    html = build(dest)
    print("docs: the site is %s" % (html / "index.html"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
