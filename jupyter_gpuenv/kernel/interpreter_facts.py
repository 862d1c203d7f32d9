"""What pip needs to know about an image's interpreter to pick wheels for it.

Sent as ``python -c`` source to the image's python by the kernel layer builder; prints one
JSON line. Standard library only, Python >= 3.8 (also older interpreters of images).
"""

import importlib.util
import json
import os
import platform
import sys


def facts() -> dict:
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    impl = sys.implementation
    iv = impl.version
    return {
        "version": platform.python_version(),
        "major_minor": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "implementation": impl.name,
        "implementation_version": f"{iv.major}.{iv.minor}.{iv.micro}",
        "machine": platform.machine(),
        "libc": libc,
        "musl": not libc and os.path.exists("/lib/ld-musl-" + platform.machine() + ".so.1"),
        "ipykernel": importlib.util.find_spec("ipykernel") is not None,
        "pip": importlib.util.find_spec("pip") is not None,
    }


def source() -> str:
    """This module's source, run in the image as ``python -c``."""
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


if __name__ == "__main__":
    print(json.dumps(facts()))
