"""``conda-meta/history`` -> the specs a user asked for, as ``conda env export --from-history``.

Mirrors conda's ``History.get_requested_specs_map``: only blocks with a ``# cmd:`` line
count; in each, ``remove specs`` drop names, then ``update specs`` (install/update/create)
and ``neutered specs`` set them; names no longer installed are left out. Specs are
written the way ``str(MatchSpec(spec))`` writes them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

HEAD_RE = re.compile(r"==>\s*(.+?)\s*<==")
CMD_RE = re.compile(r"#\s*cmd:\s*(.+)")
SPEC_RE = re.compile(r"#\s*(\w+)\s*specs:\s*(.+)?")
RELATION_RE = re.compile(r"^(=|==|!=|<=|>=|<|>)(?!=)(\S+)$")
NAME_END = re.compile(r"[\s=<>!~\[(]")
OPERATORS = "><$^|,"


def requested_specs(history: str | None, installed: Iterable[str]) -> list[str]:
    """The requested specs still installed, in the order conda's dict would hold them."""
    spec_map: dict[str, str] = {}
    for request in user_requests(history or ""):
        for spec in request.get("remove_specs", ()):
            spec_map.pop(spec_name(spec), None)
        for key in ("update_specs", "neutered_specs"):
            for spec in request.get(key, ()):
                spec_map[spec_name(spec)] = spec
    names = set(installed)
    return [match_spec_str(spec) for name, spec in spec_map.items() if name in names]


def user_requests(history: str) -> list[dict[str, list[str]]]:
    """One dict per transaction that has a ``# cmd:`` line, with its spec lists."""
    blocks: list[list[str]] = []
    for raw in history.splitlines():
        line = raw.strip()
        if not line:
            continue
        if HEAD_RE.match(line):
            blocks.append([])
        elif line.startswith("#") and blocks:
            blocks[-1].append(line)
    out = []
    for comments in blocks:
        item: dict[str, list[str]] = {}
        has_cmd = False
        for line in comments:
            has_cmd = has_cmd or bool(CMD_RE.match(line))
            match = SPEC_RE.match(line)
            if not match:
                continue
            action, text = match.group(1), match.group(2) or ""
            specs = [s for s in _parse_spec_list(text) if s and not s.endswith("@")]
            if specs and action in ("update", "install", "create"):
                item["update_specs"] = specs
            elif specs and action in ("remove", "uninstall"):
                item["remove_specs"] = specs
            elif specs and action == "neutered":
                item["neutered_specs"] = specs
        if has_cmd:
            out.append(item)
    return out


def _parse_spec_list(text: str) -> list[str]:
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else []
    # conda < 4.5 wrote "python>=3.5.1,jupyter >=1.0.0,<2.0"
    specs: list[str] = []
    for part in text.split(","):
        if RELATION_RE.match(part) and specs:
            specs[-1] = f"{specs[-1]},{part}"
        else:
            specs.append(part)
    return specs


def spec_name(spec: str) -> str:
    """The package name of a MatchSpec string (channel and subdir prefix removed)."""
    body = spec.strip().split("::", 1)[-1]
    match = NAME_END.search(body)
    return body[: match.start()] if match else body


def match_spec_str(spec: str) -> str:
    """``str(MatchSpec(spec))`` for the spec shapes conda writes into history."""
    text = spec.strip()
    channel = ""
    if "::" in text:
        channel, text = text.split("::", 1)
    brackets: dict[str, str] = {}
    if text.endswith("]") and "[" in text:
        text, _, inner = text[:-1].partition("[")
        brackets = _parse_brackets(inner)
    name = spec_name(text)
    rest = text[len(name) :].strip()
    version, build = _version_build(rest)
    version = brackets.pop("version", version)
    build = brackets.pop("build", build)
    out = f"{channel}::{name}" if channel else name
    extra: list[str] = []
    exact = False
    if version and version != "*":
        if any(c in version for c in OPERATORS):
            extra.append(f"version='{version}'")
        elif version[:2] in ("!=", "~="):
            if build:
                extra.append(f"version='{version}'")
            else:
                out += version
        elif version.endswith(".*"):
            out += "=" + version[:-2]
        elif version.endswith("*"):
            out += "=" + version[:-1]
        elif version.startswith("=="):
            out += version
            exact = True
        else:
            out += "==" + version
            exact = True
    if build and build != "*":
        if any(c in build for c in OPERATORS):
            extra.append(f"build='{build}'")
        elif "*" in build or not exact:
            extra.append(f"build={build}")
        else:
            out += "=" + build
    extra += [f"{k}={v}" for k, v in brackets.items()]
    return out + (f"[{','.join(extra)}]" if extra else "")


def _version_build(rest: str) -> tuple[str, str]:
    """Split the part after the name into conda's version and build matchers."""
    if not rest:
        return "", ""
    if " " in rest and not rest.startswith(("=", "<", ">", "!", "~")):
        version, _, build = rest.partition(" ")
        return version.strip(), build.strip()
    if rest.startswith("=="):
        version, _, build = rest[2:].partition("=")
        return "==" + version.strip(), build.strip()
    if rest.startswith(("<", ">", "!", "~")):
        return rest.replace(" ", ""), ""
    if rest.startswith("="):
        body = rest[1:]
        version, sep, build = body.partition("=")
        if sep:
            return version, build
        # "=1.2" is fuzzy: 1.2.*
        return (version if version.endswith("*") else version + "*"), ""
    return rest, ""


def _parse_brackets(inner: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in re.findall(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|[^,]+)", inner):
        out[key] = value.strip().strip("'\"")
    return out
