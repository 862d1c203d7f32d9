"""Each ``c.GpuEnv`` setting checked on its own, so one bad value never hides the rest.

traitlets refuses a whole configurable when one of its values is invalid, which would
take the server extension (and every ``/gpuenv/api`` route) down for one typo. Here each
setting of the ``GpuEnv`` section is tried alone: a valid one is applied, an invalid one
keeps its default, and an invalid ``docker_images`` entry is left out of the others. Each
becomes a :class:`SettingProblem` that REST, the Lab panel, the doctor and the server log
show with the setting's name, its value and what was expected.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any

from traitlets import TraitType
from traitlets.config import Config

from .config import GpuEnv
from .config_files import load_server_config

SECTION = "GpuEnv"
VALUE_CHARS = 200


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: which, its value (as written), what was expected, and the result."""

    setting: str
    value: str
    expected: str
    consequence: str

    @property
    def message(self) -> str:
        return (
            f"{self.setting} = {self.value} is invalid: expected {self.expected}; "
            f"{self.consequence}"
        )

    def to_json(self) -> dict[str, str]:
        return {
            "setting": self.setting,
            "value": self.value,
            "expected": self.expected,
            "consequence": self.consequence,
            "message": self.message,
        }


def checked_config(
    config: Config | None = None, parent: Any = None, log: logging.Logger | None = None
) -> GpuEnv:
    """``GpuEnv`` from ``config`` (or ``parent.config``) with every valid setting applied.

    Invalid settings keep their defaults and are listed in ``invalid_settings``; each
    problem (invalid docker_images entries included) is logged as a warning once.
    """
    if config is None:
        config = getattr(parent, "config", None) or Config()
    section = config[SECTION] if config._has_section(SECTION) else Config()
    traits = GpuEnv.class_traits(config=True)
    good = Config()
    problems: list[SettingProblem] = []
    for name, value in section.items():
        if name not in traits:
            problems.append(_unknown(name, value, sorted(traits)))
            continue
        try:
            GpuEnv(config=Config({SECTION: {name: value}}))
        except Exception as exc:
            problems.append(_invalid(name, value, traits[name], exc))
            continue
        good[name] = value
    gpuenv = GpuEnv(config=Config({SECTION: good}), **({"log": log} if log else {}))
    gpuenv.invalid_settings = problems
    if log is not None:
        for problem in setting_problems(gpuenv):
            log.warning("jupyter_gpuenv: %s", problem.message)
    return gpuenv


def load_checked_config(
    config_file: str | None = None, parent: Any = None, log: logging.Logger | None = None
) -> GpuEnv:
    """:func:`checked_config` over the files ``jupyter server`` reads (the CLI, jupyter_client)."""
    config = load_server_config(config_file)
    if parent is not None and getattr(parent, "config", None) is not None:
        config.merge(parent.config)  # explicit settings of the caller win over the files
    return checked_config(config, log=log)


def setting_problems(config: GpuEnv) -> list[SettingProblem]:
    """Every invalid setting of ``config``: global ones, then docker_images entries."""
    problems = [p for p in config.invalid_settings if isinstance(p, SettingProblem)]
    for name, (value, expected) in sorted(config.rejected_docker_images.items()):
        problems.append(docker_entry_problem(name, value, expected))
    return problems


def docker_entry_problem(name: str, value: Any, expected: str) -> SettingProblem:
    return SettingProblem(
        setting=f"c.GpuEnv.docker_images[{name!r}]",
        value=_shown(value),
        expected=expected,
        consequence="the environment is listed without a kernel until the entry is fixed",
    )


def problems_json(config: GpuEnv) -> list[dict[str, str]]:
    return [problem.to_json() for problem in setting_problems(config)]


def _invalid(name: str, value: Any, trait: TraitType[Any, Any], error: Exception) -> SettingProblem:
    default = trait.default_value_repr()
    if hasattr(trait.default_value, "to_json"):
        default = repr(trait.default_value.to_json())
    return SettingProblem(
        setting=f"c.GpuEnv.{name}",
        value=_shown(value),
        expected=_expected(trait, error),
        consequence=f"the default ({default}) is used",
    )


def _unknown(name: str, value: Any, names: list[str]) -> SettingProblem:
    close = difflib.get_close_matches(name, names, n=1)
    expected = f"a GpuEnv setting (did you mean {close[0]}?)" if close else "a GpuEnv setting"
    return SettingProblem(
        setting=f"c.GpuEnv.{name}",
        value=_shown(value),
        expected=expected,
        consequence="it is ignored",
    )


ITEM_WORDS = {"a unicode string": "strings", "an int": "integers", "a float": "numbers"}


def _expected(trait: TraitType[Any, Any], error: Exception) -> str:
    """The trait's own description, with an element type for lists ("a list of strings")."""
    text = trait.info()
    item = getattr(trait, "_trait", None)
    if isinstance(item, TraitType):
        item_text = item.info()
        text = f"{text} of {ITEM_WORDS.get(item_text, f'items that are each {item_text}')}"
    reason = str(error)
    if "expected" in reason or "trait of" in reason:
        return text  # traitlets' own message says no more than the trait's description
    prefix = f"c.GpuEnv.{trait.name}: "
    return f"{text} ({reason.removeprefix(prefix)})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
