"""An ``environment.yml`` read the way ``conda env create`` reads it, checked before any work.

What conda accepts: ``name``, ``channels``, ``dependencies`` (match specs such as
``numpy``, ``numpy=1.26``, ``numpy=1.26.4=py311h0_0``, and one ``pip:`` list whose lines
may be pip options such as ``--find-links ./wheels`` or ``--index-url URL``),
``variables`` and ``prefix``. A file that is not that is refused with the line at fault,
so nothing is solved or written for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import BadRequest

KNOWN_KEYS = {"name", "channels", "dependencies", "variables", "prefix"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when PyYAML has it


class InvalidEnvironmentFile(BadRequest):
    """The file is not an environment.yml conda would accept (400)."""


@dataclass
class EnvironmentSpec:
    """One environment.yml: what to solve, what pip installs after, what to set."""

    name: str | None
    channels: list[str]
    conda: list[str]
    pip: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    prefix: str | None = None
    text: str = ""
    base_dir: Path | None = None  # relative pip paths (``-e .``, ``./wheels``) start here
    source: Path | None = None  # the file it was read from, when there is one

    @property
    def pip_requirements(self) -> list[str]:
        """The ``pip:`` lines that name packages (not options)."""
        return [line for line in self.pip if not line.lstrip().startswith("-")]

    def requirements_text(self) -> str:
        """The ``pip:`` section as a requirements file (options included, as conda does)."""
        return "".join(f"{line}\n" for line in self.pip)


def read_environment_file(path: Path) -> EnvironmentSpec:
    """The spec of the file at ``path`` (relative paths in it start at its folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidEnvironmentFile(f"cannot read {path}: {err}") from None
    spec = parse_environment_yml(text, base_dir=path.absolute().parent)
    spec.source = path.absolute()
    return spec


def parse_environment_yml(text: str, base_dir: Path | None = None) -> EnvironmentSpec:
    """The spec of ``text``; :class:`InvalidEnvironmentFile` names the line that is wrong."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # parsed once: the nodes carry the lines
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        message = f"environment.yml is not valid YAML{where}: {problem}"
        raise InvalidEnvironmentFile(message) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise InvalidEnvironmentFile(
            "environment.yml must be a mapping with `dependencies` (and usually `name` and "
            "`channels`)"
        )
    lines = _key_lines(node)
    unknown = sorted(set(map(str, data)) - KNOWN_KEYS)
    if unknown:
        known = sorted(KNOWN_KEYS)
        raise _at(lines, unknown[0], f"unknown key {unknown[0]!r}; conda reads {known}")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not _valid_name(name)):
        raise _at(lines, "name", f"`name` must be a folder name without '/', not {name!r}")
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _at(lines, "channels", "`channels` must be a list of channel names or URLs")
    conda, pip = _dependencies(data.get("dependencies"), lines)
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise _at(lines, "variables", "`variables` must be a mapping of names to values")
    prefix = data.get("prefix")
    return EnvironmentSpec(
        name=name,
        channels=[c.strip() for c in channels if c.strip()],
        conda=conda,
        pip=pip,
        variables={str(k): "" if v is None else str(v) for k, v in variables.items()},
        prefix=str(prefix) if prefix else None,
        text=text,
        base_dir=base_dir,
    )


def _dependencies(value: Any, lines: dict[str, int]) -> tuple[list[str], list[str]]:
    if value is None:
        raise _at(lines, None, "environment.yml has no `dependencies`")
    if not isinstance(value, list):
        raise _at(lines, "dependencies", "`dependencies` must be a list")
    conda: list[str] = []
    pip: list[str] = []
    for item in value:
        if isinstance(item, dict) and set(item) == {"pip"} and isinstance(item["pip"], list):
            pip += [str(line).strip() for line in item["pip"] if str(line).strip()]
        elif isinstance(item, str | int | float) and str(item).strip():
            conda.append(str(item).strip())
        else:
            raise _at(
                lines,
                "dependencies",
                f"dependency {item!r} is neither a package spec nor a `pip:` list",
            )
    if pip and not any(_spec_name(spec) == "pip" for spec in conda):
        conda.append("pip")  # conda env create adds it too, or the pip section cannot run
    return conda, pip


def _spec_name(spec: str) -> str:
    for stop in " =<>!~[":
        spec = spec.split(stop, 1)[0]
    return spec.split("::")[-1].strip().lower()


def _valid_name(name: str) -> bool:
    return bool(name.strip()) and "/" not in name and name not in (".", "..") and " " not in name


def _key_lines(node: Any) -> dict[str, int]:
    """Line (1-based) of each top-level key, for messages."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            lines[str(key.value)] = key.start_mark.line + 1
    return lines


def _at(lines: dict[str, int], key: str | None, message: str) -> InvalidEnvironmentFile:
    line = lines.get(key) if key else None
    return InvalidEnvironmentFile(f"environment.yml line {line}: {message}" if line else message)
