"""Put /opt/conda/lib/python3.11/site-packages on sys.path, as conda's python does.

This python3.11 is Debian's, moved to /opt/conda. Its site module is frozen into the
binary, so the upstream site.py beside this file is not what runs at start-up: the frozen
one looks only at Debian's dist-packages folders. This restores upstream CPython's
``site.getsitepackages()`` and adds its folders, after the user site as upstream does.
"""

import os
import site
import sys


def getsitepackages(prefixes=None):
    """Upstream CPython 3.11's: ``<prefix>/lib/pythonX.Y/site-packages`` per prefix."""
    sitepackages = []
    seen = set()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in site.PREFIXES if prefixes is None else prefixes:
        if not prefix or prefix in seen:
            continue
        seen.add(prefix)
        libdirs = [sys.platlibdir] + (["lib"] if sys.platlibdir != "lib" else [])
        for libdir in libdirs:
            sitepackages.append(os.path.join(prefix, libdir, version, "site-packages"))
    return sitepackages


site.getsitepackages = getsitepackages
for _path in getsitepackages():
    if os.path.isdir(_path):
        site.addsitedir(_path)
del _path
