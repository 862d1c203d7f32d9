"""Make Debian's python3.11, moved to /opt/conda, find packages where conda's python does.

Debian patches site.py (site dirs ``local/lib/python3.11/dist-packages`` and
``lib/python3/dist-packages``) and sysconfig.py (install scheme ``posix_local``); upstream
CPython, as conda ships it, uses ``<prefix>/lib/python3.11/site-packages`` for both.
The interpreter runs the frozen copy of site.py compiled into it, so sitecustomize.py
does the same at start-up; the patched site.py is what ``-X frozen_modules=off`` reads.
Usage: as_conda_python.py <stdlib folder>.
"""

import re
import sys
from pathlib import Path

UPSTREAM_SITE_DIRS = """
            for libdir in libdirs:
                path = os.path.join(prefix, libdir,
                                    "python%d.%d" % sys.version_info[:2],
                                    "site-packages")
                sitepackages.append(path)
"""


def patch(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    new, count = re.subn(pattern, lambda _: replacement, text, count=1, flags=re.S)
    if count != 1:
        sys.exit(f"{path}: Debian's code not found ({pattern!r}); was python3.11 updated?")
    path.write_text(new)


stdlib = Path(sys.argv[1])
# From Debian's "if is_virtual_environment:" to the end of its deprecated dist-packages loop.
patch(
    stdlib / "site.py",
    r"\n            if is_virtual_environment:\n"
    r".*?\n                sitepackages\.append\(path\)\n",
    UPSTREAM_SITE_DIRS,
)
patch(
    stdlib / "sysconfig.py",
    r"""# default to /usr for package builds, /usr/local otherwise\n"""
    r"""\s*deb_build = os\.environ\.get\('DEB_PYTHON_INSTALL_LAYOUT', 'posix_local'\)\n"""
    r"""\s*if deb_build in \('deb', 'deb_system'\):\n\s*prefix_scheme = 'deb_system'\n"""
    r"""\s*else:\n\s*prefix_scheme = 'posix_local'\n""",
    "prefix_scheme = 'posix_prefix'\n",
)
