"""Read what ``conda env export`` needs from a prefix — standard library only, Python >= 3.8.

Used two ways: imported on the host for local conda envs and venvs, and sent as
``python -c`` source into a short-lived container to read an image's conda prefix (or,
without one, the Python packages of the image's interpreter). The host turns the result
into environment.yml (export.py); nothing here formats YAML.

What conda reads, read the same way:
- ``conda-meta/*.json`` records (name, version, build, channel, url) and the anchor
  files (``*.dist-info/RECORD``, ``*.egg-info``) listed in their ``files``;
- ``conda-meta/history`` (for ``--from-history``) and ``conda-meta/state`` (env vars, for
  export and for the activation of local kernels alike, ``***unset***`` markers honoured);
- site-packages anchors that no conda record owns: packages installed by pip.
"""

from __future__ import annotations

import json
import os
import platform
import site
import sys
from email.parser import HeaderParser
from importlib import metadata

MARKER = "GPUENV-PREFIX "
ANCHOR_ENDINGS = (".egg-info/PKG-INFO", ".dist-info/RECORD", ".egg-info")
UNSET_VAR = "***unset***"
CONDARC_NAMES = (".condarc", "condarc")


def read_conda_prefix(prefix):
    """Records, history, env vars and non-conda Python packages of a conda prefix."""
    meta = os.path.join(prefix, "conda-meta")
    records = []
    corrupt = []
    for name in sorted(os.listdir(meta)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(meta, name), encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict) or "name" not in data:
                raise ValueError("not a package record")
        except (OSError, ValueError) as exc:
            corrupt.append(f"conda-meta/{name}: {exc}")
            continue
        files = data.get("files") or []
        records.append(
            {
                "name": data.get("name"),
                "version": data.get("version"),
                "build": data.get("build") or data.get("build_string") or "",
                "channel": data.get("channel") or data.get("schannel") or "",
                "url": data.get("url") or "",
                "anchors": [
                    f
                    for f in files
                    if isinstance(f, str) and f.endswith(ANCHOR_ENDINGS) and "site-packages" in f
                ],
            }
        )
    python = [r for r in records if r["name"] == "python"]
    pip = []
    if python:
        pip = _non_conda_packages(prefix, python[0]["version"] or "", records)
    return {
        "kind": "conda",
        "prefix": prefix,
        "records": records,
        "corrupt": corrupt,
        "history": _read_text(os.path.join(meta, "history")),
        "env_vars": exported_env_vars(prefix),
        "pip": pip,
        "condarc": _condarc_texts(prefix),
    }


def _non_conda_packages(prefix, python_version, records):
    """Python packages in site-packages whose anchor file no conda record lists."""
    major_minor = ".".join(python_version.split(".")[:2])
    sp_dir = f"lib/python{major_minor}/site-packages"
    sp_path = os.path.join(prefix, sp_dir)
    if not os.path.isdir(sp_path):
        return []
    conda_anchors = {a for r in records for a in r["anchors"]}
    out = []
    for fname in sorted(os.listdir(sp_path)):
        full = os.path.join(sp_path, fname)
        if fname.endswith(".dist-info"):
            anchor, meta_file = f"{sp_dir}/{fname}/RECORD", os.path.join(full, "METADATA")
        elif fname.endswith(".egg-info"):
            if os.path.isfile(full):
                anchor, meta_file = f"{sp_dir}/{fname}", full
            else:
                anchor, meta_file = f"{sp_dir}/{fname}/PKG-INFO", os.path.join(full, "PKG-INFO")
        elif fname.endswith(".egg") and os.path.isdir(full):
            anchor = f"{sp_dir}/{fname}/EGG-INFO/PKG-INFO"
            meta_file = os.path.join(full, "EGG-INFO", "PKG-INFO")
        else:
            continue
        if anchor in conda_anchors:
            continue
        dist = _read_metadata(meta_file)
        if dist is not None:
            dist["requested"] = os.path.isfile(os.path.join(full, "REQUESTED"))
            out.append(dist)
    return out


def read_python_packages(site_dirs=None):
    """Every distribution the running interpreter sees (pip mode: no conda prefix)."""
    paths = site_dirs if site_dirs is not None else _site_dirs()
    out = []
    seen = set()
    for dist in metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        requested = dist.read_text("REQUESTED") is not None
        out.append({"name": name, "version": dist.version, "requested": requested})
    return out


def _site_dirs():
    dirs = []
    try:
        dirs += list(site.getsitepackages())
    except AttributeError:  # old virtualenv's site module
        pass
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    unique = []
    for path in dirs:
        if os.path.isdir(path) and path not in unique:
            unique.append(path)
    return unique


def _read_metadata(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            headers = HeaderParser().parse(handle)
    except OSError:
        return None
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return {"name": name.strip(), "version": version.strip()}


def state_env_vars(prefix):
    """``conda env config vars`` of the prefix as written in ``conda-meta/state``, unset
    markers included (a variable removed with ``unset`` stays there as ``***unset***``)."""
    return _str_dict(_read_json(os.path.join(prefix, "conda-meta", "state")), "env_vars")


def exported_env_vars(prefix):
    """The ``variables:`` of ``conda env export``: the state's variables that are set."""
    return {k: v for k, v in state_env_vars(prefix).items() if v != UNSET_VAR}


def activation_env_vars(prefix):
    """What ``conda activate`` does with the prefix's variables: ``(set, unset names)``.

    Packages' ``etc/conda/env_vars.d/*.json`` first, then the state's variables over them;
    a variable whose value is the unset marker is removed from the environment.
    """
    merged = {}
    folder = os.path.join(prefix, "etc", "conda", "env_vars.d")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError:
        names = []
    for name in names:
        merged.update(_str_dict(_read_json(os.path.join(folder, name))))
    merged.update(state_env_vars(prefix))
    to_set = {k: v for k, v in merged.items() if v != UNSET_VAR}
    to_unset = [k for k, v in merged.items() if v == UNSET_VAR]
    return to_set, to_unset


def _read_json(path):
    text = _read_text(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _str_dict(data, key=None):
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _condarc_texts(prefix):
    """System, root-prefix and the prefix's own .condarc files, lowest precedence first."""
    paths = ["/etc/conda/.condarc", "/etc/conda/condarc"]
    parent = os.path.dirname(prefix.rstrip("/"))
    if os.path.basename(parent) == "envs":
        root = os.path.dirname(parent)
        paths += [os.path.join(root, name) for name in CONDARC_NAMES]
    paths += [os.path.join(prefix, name) for name in CONDARC_NAMES]
    texts = []
    for path in paths:
        text = _read_text(path)
        if text:
            texts.append(text)
    return texts


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def describe(candidates):
    """The first candidate that is a conda prefix, else this interpreter's packages."""
    for prefix in candidates:
        if prefix and os.path.isdir(os.path.join(prefix, "conda-meta")):
            return read_conda_prefix(prefix)
    return {
        "kind": "pip",
        "python_version": platform.python_version(),
        "prefix": sys.prefix,
        "packages": read_python_packages(),
    }


def main(argv):
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)
    candidates = list(argv) + [sys.prefix]
    sys.stdout.write(MARKER + json.dumps(describe(candidates)) + "\n")
    sys.stdout.flush()


def parse_output(text):
    for line in text.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    return None


def source():
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


if __name__ == "__main__":
    main(sys.argv[1:])
