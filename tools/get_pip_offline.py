"""Stand-in for pip's get-pip.py bootstrap script, which ansible-test downloads from a host this
network cannot reach.  It runs pip from a pip wheel fetched from the package index beside it, with
the same command line get-pip.py takes (pip install options and packages)."""
import glob
import os
import sys

wheels = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-*.whl")))
if not wheels:
    sys.exit("get_pip_offline: no pip wheel next to %s" % __file__)
sys.path.insert(0, wheels[-1])
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
