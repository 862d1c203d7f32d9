"""The environment probe: runs INSIDE an environment (its own python), standard library only.

Python >= 3.8, no third-party import at module level. It is sent as ``python -c`` source
(never run as a file, so nothing next to it can shadow a module) and prints JSON lines
tagged with ``MARKER``:

1. ``facts``: Python version, ipykernel presence (``find_spec``, no import), torch versions
   read from ``torch/version.py`` by file path (no torch import), conda-meta validity.
   Printed and flushed first, so a later hang still leaves these.
2. ``torch``: after ``import torch`` — cuDNN version and the CUDA arch flags the build
   was compiled for (``torch._C._cuda_getArchFlags()``; ``torch.cuda.get_arch_list()`` is
   empty without a GPU). An import failure is reported as a problem.

Lines are Python literals (``repr``), read back with ``ast.literal_eval``: the probe
imports no ``json``/``re``/``typing`` unless it must, as it runs once per environment.
"""

from __future__ import annotations

import os
import sys

MARKER = "GPUENV-PROBE "


def _emit(kind, data):
    sys.stdout.write(MARKER + repr({"kind": kind, "data": data}) + "\n")
    sys.stdout.flush()


def _find_spec(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _dist_version(name):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


def _torch_version_file():
    spec = _find_spec("torch")
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    for folder in locations:
        path = os.path.join(folder, "version.py")
        if os.path.isfile(path):
            return path
    return None


def _literal(text):
    text = text.strip()
    if text == "None":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and "\\" not in text:
        return text[1:-1]
    raise ValueError(text)


def _read_torch_version(path):
    """The assignments of torch/version.py (``cuda: Optional[str] = '12.1'``).

    Read line by line; a file of another shape is executed on its own instead.
    """
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        name = name.split(":", 1)[0].strip()
        if not sep or not name.isidentifier() or value.startswith("="):
            continue
        try:
            values[name] = _literal(value)
        except ValueError:
            continue
    if "__version__" in values:
        return values
    namespace = {"__name__": "torch.version", "__file__": path}
    exec(compile(text, path, "exec"), namespace)
    return namespace


def _check_conda_meta(prefix):
    folder = os.path.join(prefix, "conda-meta")
    problems: list[str] = []
    if not os.path.isdir(folder):
        return problems
    import json

    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            if not isinstance(record, dict) or "name" not in record:
                raise ValueError("not a package record")
        except (OSError, ValueError) as exc:
            problems.append(
                f"conda-meta/{name} is corrupt ({exc}): conda cannot read this environment; "
                "reinstall that package or recreate the environment"
            )
    return problems


def facts():
    data = {
        "python_version": sys.version.split()[0],
        "python_executable": sys.executable,
        "prefix": sys.prefix,
        "ipykernel": _find_spec("ipykernel") is not None,
        "ipykernel_version": _dist_version("ipykernel"),
        "torch_version": None,
        "cuda_version": None,
        "hip_version": None,
        "torch_location": None,
        "problems": _check_conda_meta(sys.prefix),
    }
    path = _torch_version_file()
    if path is not None:
        data["torch_location"] = os.path.dirname(path)
        try:
            version = _read_torch_version(path)
            data["torch_version"] = version.get("__version__")
            data["cuda_version"] = version.get("cuda")
            data["hip_version"] = version.get("hip")
        except Exception as exc:  # a broken install must still list
            data["problems"].append(f"torch/version.py could not be read: {exc}")
    return data


def _cudnn_dotted(value):
    """cuDNN's integer version as dotted text: 90100 -> 9.1.0, 8902 -> 8.9.2."""
    if value is None:
        return None
    value = int(value)
    if value >= 10000:
        major, rest = divmod(value, 10000)
    else:
        major, rest = divmod(value, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def torch_facts() -> dict:
    problems: list[str] = []
    data: dict = {"cudnn_version": None, "torch_arch_list": [], "problems": problems}
    try:
        import torch
    except BaseException as exc:  # SystemExit/ImportError/OSError from native libs
        problems.append(
            f"import torch failed ({type(exc).__name__}: {exc}); "
            "versions come from torch/version.py"
        )
        return data
    try:
        data["cudnn_version"] = _cudnn_dotted(torch.backends.cudnn.version())
    except Exception:
        data["cudnn_version"] = None
    try:
        flags = torch._C._cuda_getArchFlags()
    except Exception:
        flags = None
    data["torch_arch_list"] = flags.split() if flags else []
    return data


def main():
    # ``python -c`` puts the working folder first on sys.path; drop it so nothing there
    # can shadow the modules we look for.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)
    data = facts()
    _emit("facts", data)
    if data["torch_version"] is not None:
        _emit("torch", torch_facts())


def parse_output(text: str) -> dict | None:
    """Merge the tagged lines of a probe's stdout into one dict (None when none were seen)."""
    merged: dict | None = None
    problems: list = []
    for line in text.splitlines():
        if not line.startswith(MARKER):
            continue
        import ast

        try:
            item = ast.literal_eval(line[len(MARKER) :])
        except (ValueError, SyntaxError):
            continue
        if not isinstance(item, dict):
            continue
        data = item.get("data") or {}
        if merged is None:
            merged = {"problems": problems, "torch_probed": False}
        found = data.pop("problems", [])
        merged.update(data)
        merged["problems"] = problems
        problems.extend(found if isinstance(found, list) else [found])
        if item.get("kind") == "torch":
            merged["torch_probed"] = True
    return merged


def source():
    """This module's text, to run with ``python -c`` in an environment."""
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


if __name__ == "__main__":
    main()
