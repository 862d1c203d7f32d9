"""Build-time check of the layout (run with the system python3)."""

import importlib.metadata
import shutil
import sys

DIST = "/usr/local/lib/python3.11/dist-packages"
assert sys.executable == "/usr/bin/python3" and sys.prefix == "/usr", (sys.executable, sys.prefix)
assert DIST in sys.path, sys.path

import torch  # noqa: E402

assert torch.__file__ == f"{DIST}/torch/__init__.py", torch.__file__
assert torch.__version__ == "2.5.0a0+872d972e41.nv24.08", torch.__version__
assert (torch.version.cuda, torch.backends.cudnn.version()) == ("12.6", 90300)
# pip's normal form of the version, as in NGC's dist-info ("nv24.08" -> "nv24.8")
assert importlib.metadata.version("torch") == "2.5.0a0+872d972e41.nv24.8"
assert importlib.metadata.distribution("torch").read_text("INSTALLER").strip() == "pip"
# What a kernel imports at start-up (their .pyc are written now, as root: pip did not compile).
import ipykernel.ipkernel  # noqa: E402, F401
import ipykernel.kernelapp  # noqa: E402, F401

assert shutil.which("pip") == "/usr/local/bin/pip", shutil.which("pip")
print("ngc-pytorch layout ok:", sys.version.split()[0], torch.__version__)
