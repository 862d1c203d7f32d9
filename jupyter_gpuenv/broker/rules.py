"""The kernel broker's policy: what one Hub user may run, from the admin's rules only.

The broker (jupyter_gpuenv/broker) is the one process on a JupyterHub host with Docker
access. Each request comes with the caller's name and groups as the Hub reported them;
the admin's ``c.GpuEnvBroker`` rules (a default, per Hub group, per user) decide the
allowed environments, the quota (kernels and GPUs at once), mounts (templated with
``{username}``, ``{home}``, ``{group}``), resource limits and the folders a notebook may
run in. From those this module builds the ``c.GpuEnv`` one user's kernels are created
under, so the Docker provisioner's own policy and last gate apply unchanged, with the
user's uid:gid as the only user a container may run as.

Plain data in, plain data (or a PolicyViolation naming the limit) out; no Docker, no HTTP.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import GpuEnv
from ..errors import PolicyViolation
from ..gpu_set import GpuSet
from ..provisioning.policy.kernel_user import KernelUser
from ..provisioning.policy.user_view import NotSeen, Viewer, resolve_as

RULE_KEYS = frozenset(
    {
        "environments",
        "max_kernels",
        "max_gpus",
        "mounts",
        "notebook_roots",
        "mem_limit",
        "cpus",
        "shm_size",
    }
)
LIMIT_KEYS = ("mem_limit", "cpus", "shm_size")
ALL_ENVIRONMENTS = "*"
DEFAULT_NOTEBOOK_ROOTS = ("{home}",)
# What a template may expand a name into: no path separators, no dot-only names.
# Groups whose members administer the host or reach Docker: a Hub name that matches such
# an account gets no kernels as it (c.GpuEnvBroker.denied_groups adds to these).
DENIED_GROUPS = frozenset(
    {"root", "sudo", "wheel", "adm", "admin", "docker", "shadow", "disk", "lxd", "libvirt"}
)
LOGIN_DEFS = "/etc/login.defs"
DEFAULT_UID_MIN = 1000


@dataclass(frozen=True)
class AccountRules:
    """Which system accounts a Hub name may stand for without the admin's ``user_ids``."""

    min_uid: int = DEFAULT_UID_MIN
    denied_groups: frozenset[str] = DENIED_GROUPS


def login_uid_min(path: str = LOGIN_DEFS) -> int:
    """UID_MIN of /etc/login.defs (where ordinary accounts start), else 1000."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "UID_MIN" and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return DEFAULT_UID_MIN


def account_rules(min_uid: int | None, denied_groups: Iterable[str]) -> AccountRules:
    """The admin's settings over the host's defaults."""
    return AccountRules(
        min_uid=login_uid_min() if min_uid is None else int(min_uid),
        denied_groups=DENIED_GROUPS | {str(g) for g in denied_groups},
    )


def unsafe_account(entry: pwd.struct_passwd, rules: AccountRules) -> str | None:
    """Why kernels may not run as this account by name alone; None when they may."""
    if entry.pw_uid < rules.min_uid:
        return (
            f"has uid {entry.pw_uid}, below {rules.min_uid} where ordinary accounts start "
            "(UID_MIN, c.GpuEnvBroker.min_uid): a service account"
        )
    names = {g.gr_name for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    try:
        names.add(grp.getgrgid(entry.pw_gid).gr_name)
    except KeyError:
        pass
    denied = sorted(names & rules.denied_groups)
    if denied:
        return f"is in the group(s) {', '.join(denied)}"
    home = entry.pw_dir
    try:
        owner = os.stat(home).st_uid if os.path.isabs(home) else None
    except OSError:
        owner = None
    if os.path.realpath(home) == "/" or owner != entry.pw_uid:
        return "has no home of its own (missing, /, or owned by another account)"
    return None


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")


class RuleError(ValueError):
    """An admin rule that cannot be used (unknown key, wrong type); names the rule."""


@dataclass(frozen=True)
class HubUser:
    """A caller as the Hub identified it, and the system account its kernels run as."""

    name: str
    groups: tuple[str, ...]
    uid: int
    gid: int
    home: str

    @property
    def kernel_user(self) -> KernelUser:
        return KernelUser(self.uid, self.gid)


@dataclass
class UserRules:
    """One user's effective rules (``environments`` None: every configured one)."""

    environments: frozenset[str] | None = frozenset()
    max_kernels: int | None = None
    max_gpus: int | None = None
    mounts: list[str] = field(default_factory=list)
    notebook_roots: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)

    def allows_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments

    def to_json(self) -> dict[str, Any]:
        return {
            "environments": None if self.environments is None else sorted(self.environments),
            "max_kernels": self.max_kernels,
            "max_gpus": self.max_gpus,
            "mounts": list(self.mounts),
            "notebook_roots": list(self.notebook_roots),
            **self.limits,
        }


def check_rule(where: str, rule: object) -> dict[str, Any]:
    """One admin rule, checked for shape; RuleError says what is wrong and where."""
    if not isinstance(rule, Mapping):
        raise RuleError(f"{where} must be a dict of rules, not {rule!r}")
    unknown = sorted(str(k) for k in rule if k not in RULE_KEYS)
    if unknown:
        raise RuleError(
            f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(sorted(RULE_KEYS))})"
        )
    for key in ("max_kernels", "max_gpus"):
        value = rule.get(key)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and (not whole or value < 0):
            raise RuleError(f"{where}.{key} must be a whole number >= 0, not {value!r}")
    for key in ("environments", "mounts", "notebook_roots"):
        value = rule.get(key)
        if value is not None and (
            not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value)
        ):
            raise RuleError(f"{where}.{key} must be a list of strings, not {value!r}")
    return dict(rule)


def hub_user(
    name: str,
    groups: Iterable[str],
    user_ids: Mapping[str, str],
    accounts: AccountRules | None = None,
) -> HubUser:
    """The system account of a Hub user: ``user_ids`` (admin's "uid:gid"), else the
    account of that name when it is an ordinary one (``accounts``)."""
    home = f"/home/{name}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is not None:
        home = entry.pw_dir
    if name in user_ids:
        uid_text, _, gid_text = str(user_ids[name]).partition(":")
        try:
            uid, gid = int(uid_text), int(gid_text or uid_text)
        except ValueError as err:
            raise PolicyViolation(
                f"The administrator's uid:gid for {name!r} ({user_ids[name]!r}) is not numeric."
            ) from err
    elif entry is not None:
        uid, gid = entry.pw_uid, entry.pw_gid
        if uid != 0 and gid != 0:
            why = unsafe_account(entry, accounts or AccountRules())
            if why is not None:
                raise PolicyViolation(
                    f"Hub user {name!r} matches the system account {name!r}, which {why}; the "
                    "broker runs kernels only as ordinary accounts. An administrator can map "
                    "this Hub user in c.GpuEnvBroker.user_ids."
                )
    else:
        raise PolicyViolation(
            f"Hub user {name!r} has no system account on the broker's host and no entry in "
            "c.GpuEnvBroker.user_ids, so there is no uid for their kernels."
        )
    if uid == 0 or gid == 0:
        raise PolicyViolation(f"Kernels of {name!r} would run as uid/gid 0; the broker refuses.")
    return HubUser(name=name, groups=tuple(sorted(groups)), uid=uid, gid=gid, home=home)


def rules_for(
    user: HubUser,
    default: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, Any]],
    users: Mapping[str, Mapping[str, Any]],
) -> UserRules:
    """Default, then each of the user's groups (sorted), then the user's own rule.

    Environments, mounts and notebook folders add up; the quota is the largest any of
    them grants (the user's own rule, when it sets one, decides); a limit comes from the
    user's rule, else the first group that sets it, else the default.
    """
    layers: list[tuple[Mapping[str, Any], tuple[str, ...]]] = [(default, user.groups)]
    own_groups = [g for g in user.groups if g in groups]
    layers += [(groups[g], (g,)) for g in own_groups]
    own = users.get(user.name)
    if own is not None:
        layers.append((own, user.groups))
    rules = UserRules()
    environments: set[str] = set()
    every = False
    roots: list[str] = []
    for rule, group_names in layers:
        names = [str(n) for n in rule.get("environments") or []]
        every = every or ALL_ENVIRONMENTS in names
        environments.update(n for n in names if n != ALL_ENVIRONMENTS)
        for key in ("max_kernels", "max_gpus"):
            value = rule.get(key)
            if value is not None:
                current = getattr(rules, key)
                setattr(rules, key, value if current is None else max(current, value))
        for spec in rule.get("mounts") or []:
            for expanded in _expand(str(spec), user, group_names):
                if expanded not in rules.mounts:
                    rules.mounts.append(expanded)
        for spec in rule.get("notebook_roots") or []:
            roots += _expand(str(spec), user, group_names)
    if own is not None:
        for key in ("max_kernels", "max_gpus"):
            if own.get(key) is not None:
                setattr(rules, key, own[key])
    for key in LIMIT_KEYS:
        for rule in [own or {}, *(groups[g] for g in own_groups), default]:
            if rule.get(key) is not None:
                rules.limits[key] = rule[key]
                break
    if not any("notebook_roots" in rule for rule, _ in layers):
        roots = [r for spec in DEFAULT_NOTEBOOK_ROOTS for r in _expand(spec, user, ())]
    rules.notebook_roots = list(dict.fromkeys(os.path.realpath(r) for r in roots if r))
    rules.environments = None if every else frozenset(environments)
    return rules


def _expand(template: str, user: HubUser, group_names: Iterable[str]) -> list[str]:
    """The template once per group when it names ``{group}``, else once."""
    values = {"username": user.name, "home": user.home}
    if not _SAFE_NAME.fullmatch(user.name):
        return []
    if "{group}" not in template:
        return [template.format(**values, group="")]
    return [
        template.format(**values, group=g) for g in group_names if _SAFE_NAME.fullmatch(g)
    ]


def notebook_folder(cwd: object, rules: UserRules, user: HubUser) -> str:
    """The notebook folder to mount, resolved as ``user``'s account sees it (user_view):
    refused when it lies outside their notebook roots or behind a folder they cannot
    enter. None given: the first of those roots that is a folder (never the broker's own
    working folder)."""
    if cwd is None or cwd == "":
        for root in rules.notebook_roots:
            if os.path.isdir(root):
                return os.path.realpath(root)
        raise PolicyViolation(
            "No notebook folder was given, and none of the folders your kernels may use "
            "exists on this host."
        )
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd:
        raise PolicyViolation(f"The notebook folder must be an absolute path, not {cwd!r}.")
    try:
        seen = resolve_as(cwd, Viewer.of(user.kernel_user))
    except NotSeen as err:
        # Only what the caller gave: the resolved path is what root sees, which may be
        # another account's (a symlink to /proc/<pid>/cwd, say).
        raise PolicyViolation(f"The notebook folder cannot be used: {err}.") from None
    real = seen.path
    for root in rules.notebook_roots:
        if real == root or real.startswith(root.rstrip("/") + "/"):
            if not seen.is_dir:
                raise PolicyViolation(f"The notebook folder {cwd} is not a folder on this host.")
            return real
    allowed = ", ".join(rules.notebook_roots) or "none"
    raise PolicyViolation(
        f"The notebook folder {cwd} is outside the folders your kernels may use ({allowed})."
    )


def user_config(base: GpuEnv, user: HubUser, rules: UserRules) -> GpuEnv:
    """``c.GpuEnv`` for this user's kernels: the allowed docker_images entries only, each
    with the user's mounts and limits, under the strict policy. (The uid:gid is no entry
    key: the broker sets it as the admin's ``user`` of the launch.)"""
    entries: dict[str, Any] = {}
    for name in base.docker_images:
        if not rules.allows_environment(name):
            continue
        entry = dict(base.docker_entry(name))
        entry["mounts"] = [*(entry.get("mounts") or []), *rules.mounts]
        entry.update(rules.limits)
        entries[name] = entry
    config = GpuEnv()
    for name in base.trait_names(config=True):
        if name not in ("docker_images", "rejected_docker_images"):
            setattr(config, name, getattr(base, name))
    config.docker_images = entries
    config.broker_url = ""
    config.restrict_to_configured_images = True
    config.docker_allow_root = False
    config.docker_label_discovery = False
    config.docker_discover_pytorch_images = False
    config.hub_user = user.name
    config.docker_environment_allowlist = []
    return config


def gpu_count(gpus: GpuSet, host_gpus: int | None) -> int | None:
    """How many GPUs a kernel's set takes (None: "all" where the host's count is unknown)."""
    if gpus.is_none:
        return 0
    if gpus.count is not None:
        return gpus.count
    if gpus.ids is not None:
        return len(gpus.ids)
    return host_gpus


def check_quota(
    rules: UserRules, running: int, gpus_in_use: int, wanted: int | None
) -> None:
    """Refuse a start beyond the user's kernels or GPUs at once."""
    if rules.max_kernels is not None and running + 1 > rules.max_kernels:
        raise PolicyViolation(
            f"Quota: you already run {running} kernel(s) and may run {rules.max_kernels} at "
            "once. Shut one down first."
        )
    if rules.max_gpus is None or wanted == 0:
        return
    if wanted is None:
        raise PolicyViolation(
            f"Quota: this kernel asks for all GPUs, and you may use {rules.max_gpus} at once. "
            'Pick a kernel with fewer GPUs or set "gpus" to a number.'
        )
    if gpus_in_use + wanted > rules.max_gpus:
        raise PolicyViolation(
            f"Quota: this kernel asks for {wanted} GPU(s); your kernels use {gpus_in_use} and "
            f"you may use {rules.max_gpus} at once."
        )

