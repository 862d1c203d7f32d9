"""Build-time check of the layout (run with /opt/conda/bin/python)."""

import glob
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import site
import sys
import sysconfig

SITE = "/opt/conda/lib/python3.11/site-packages"
assert sys.prefix == sys.base_prefix == sys.exec_prefix == "/opt/conda", sys.prefix
assert sys.executable == "/opt/conda/bin/python", sys.executable
assert sysconfig.get_paths()["purelib"] == SITE, sysconfig.get_paths()
assert SITE in sys.path and not [p for p in sys.path if "dist-packages" in p], sys.path
assert site.getsitepackages() == [SITE], site.getsitepackages()
assert not os.path.exists("/usr/bin/python3"), "system python3 left behind"
for name in ("pip", "ipykernel", "jupyter_client"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable"
assert shutil.which("pip", path="/opt/conda/bin:/usr/local/bin:/usr/bin") is None

(record,) = glob.glob("/opt/conda/conda-meta/python-3.11.*.json")
with open(record) as handle:
    version = json.load(handle)["version"]
assert version == platform.python_version(), (record, platform.python_version())

import torch  # noqa: E402

assert torch.__file__ == f"{SITE}/torch/__init__.py", torch.__file__
assert (torch.__version__, torch.version.cuda) == ("2.9.0", "12.1"), torch.__version__
assert torch.backends.cudnn.version() == 90100
assert glob.glob(f"{SITE}/torch-*") == [], "torch has package metadata"
try:
    importlib.metadata.version("torch")
except importlib.metadata.PackageNotFoundError:
    pass
else:
    raise AssertionError("importlib.metadata finds torch")
print("pytorch-official layout ok:", sys.prefix, platform.python_version(), torch.__version__)
