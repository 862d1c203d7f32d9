"""The broker's rules: how default, group and user rules add up for one Hub user."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_gpuenv.broker import rules as broker_rules
from jupyter_gpuenv.broker.rules import HubUser, RuleError
from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.gpu_set import GpuSet
from tests.support.docker_engine import running_in_ci
from tests.support.system_user import SystemUser, UserUnavailable, system_user

ALICE = HubUser("alice", ("vision", "nlp"), 2001, 2001, "/home/alice")


def test_rules_add_up_across_default_groups_and_user() -> None:
    rules = broker_rules.rules_for(
        ALICE,
        {"environments": ["base"], "max_kernels": 1, "max_gpus": 0, "mem_limit": "4g"},
        {
            "vision": {
                "environments": ["vision"],
                "max_gpus": 2,
                "mounts": ["/srv/data/{group}:/data/{group}:ro"],
                "mem_limit": "16g",
            },
            "nlp": {"environments": ["nlp"], "max_kernels": 3},
            "other": {"environments": ["secret"], "max_gpus": 8},
        },
        {"alice": {"mounts": ["/scratch/{username}:/scratch"]}},
    )
    assert rules.environments == {"base", "vision", "nlp"}
    assert (rules.max_kernels, rules.max_gpus) == (3, 2)
    assert rules.mounts == ["/srv/data/vision:/data/vision:ro", "/scratch/alice:/scratch"]
    # The first group by name that sets a limit ("nlp" sets none, "vision" does).
    assert rules.limits == {"mem_limit": "16g"}
    assert rules.notebook_roots == [os.path.realpath("/home/alice")]


def test_a_users_own_quota_decides_even_when_lower() -> None:
    rules = broker_rules.rules_for(
        ALICE, {"max_kernels": 4}, {"vision": {"max_gpus": 2}}, {"alice": {"max_gpus": 0}}
    )
    assert (rules.max_kernels, rules.max_gpus) == (4, 0)


def test_star_allows_every_environment_and_nothing_means_none() -> None:
    assert broker_rules.rules_for(ALICE, {"environments": ["*"]}, {}, {}).environments is None
    assert broker_rules.rules_for(ALICE, {}, {}, {}).environments == frozenset()


def test_group_templates_expand_only_to_plain_names() -> None:
    odd = HubUser("alice", ("../etc", "ok"), 2001, 2001, "/home/alice")
    rules = broker_rules.rules_for(odd, {"mounts": ["/data/{group}:/d/{group}"]}, {}, {})
    assert rules.mounts == ["/data/ok:/d/ok"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"privileged": True}, "unknown keys privileged"),
        ({"max_gpus": -1}, "whole number"),
        ({"max_kernels": True}, "whole number"),
        ({"mounts": "/a:/b"}, "list of strings"),
        ([], "must be a dict"),
    ],
)
def test_bad_admin_rules_are_named(rule: object, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        broker_rules.check_rule("c.GpuEnvBroker.default_policy", rule)


def test_notebook_folder_must_resolve_under_a_root(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    (home / "project").mkdir(parents=True)
    (tmp_path / "bob").mkdir()
    (home / "escape").symlink_to(tmp_path / "bob")
    rules = broker_rules.UserRules(notebook_roots=[str(home)])
    me = broker_rules.HubUser("alice", (), os.getuid(), os.getgid(), str(home))

    def notebook_folder(cwd: str | None, rules: broker_rules.UserRules) -> str:
        return broker_rules.notebook_folder(cwd, rules, me)

    assert notebook_folder(str(home / "project"), rules) == str(home / "project")
    # None given: the first root that is a folder, never the broker's own working folder.
    missing = broker_rules.UserRules(notebook_roots=[str(tmp_path / "gone"), str(home)])
    assert notebook_folder(None, missing) == str(home)
    assert notebook_folder("", rules) == str(home)
    nowhere = broker_rules.UserRules(notebook_roots=[str(tmp_path / "gone")])
    with pytest.raises(PolicyViolation, match="none of the folders your kernels may use"):
        notebook_folder(None, nowhere)
    for outside in (str(tmp_path / "bob"), str(home / "escape"), f"{home}/../bob", "/"):
        with pytest.raises(PolicyViolation, match="outside the folders"):
            notebook_folder(outside, rules)
    # A sibling whose name merely starts like the root is not under it.
    (tmp_path / "alice-other").mkdir()
    with pytest.raises(PolicyViolation):
        notebook_folder(str(tmp_path / "alice-other"), rules)
    with pytest.raises(PolicyViolation, match="absolute path"):
        notebook_folder("relative/path", rules)


def test_quota_counts_kernels_and_gpus() -> None:
    rules = broker_rules.UserRules(max_kernels=2, max_gpus=2)
    broker_rules.check_quota(rules, 1, 1, 1)
    with pytest.raises(PolicyViolation, match="may run 2 at once"):
        broker_rules.check_quota(rules, 2, 0, 0)
    with pytest.raises(PolicyViolation, match="your kernels use 1"):
        broker_rules.check_quota(rules, 0, 1, 2)
    with pytest.raises(PolicyViolation, match="all GPUs"):
        broker_rules.check_quota(rules, 0, 0, None)
    assert broker_rules.gpu_count(GpuSet.parse("all"), 4) == 4
    assert broker_rules.gpu_count(GpuSet.parse([0, 1]), None) == 2
    assert broker_rules.gpu_count(GpuSet.parse("none"), 4) == 0


def test_user_config_keeps_only_allowed_environments_under_the_strict_policy() -> None:
    base = GpuEnv()
    base.docker_images = {"a": {"image": "img/a:1", "mounts": ["/srv:/srv:ro"]}, "b": "img/b:1"}
    rules = broker_rules.UserRules(
        environments=frozenset({"a"}), mounts=["/data/x:/data:ro"], limits={"mem_limit": "2g"}
    )
    config = broker_rules.user_config(base, ALICE, rules)
    assert list(config.docker_images) == ["a"]
    assert config.docker_images["a"]["mounts"] == ["/srv:/srv:ro", "/data/x:/data:ro"]
    assert config.docker_images["a"]["mem_limit"] == "2g"
    assert config.restrict_to_configured_images and not config.docker_allow_root
    assert config.hub_user == "alice" and config.broker_url == ""


def test_a_hub_user_without_an_account_or_mapping_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="no system account"):
        broker_rules.hub_user("no-such-user-here", [], {})
    mapped = broker_rules.hub_user("no-such-user-here", [], {"no-such-user-here": "3000:3000"})
    assert (mapped.uid, mapped.gid) == (3000, 3000)
    with pytest.raises(PolicyViolation, match="uid/gid 0"):
        broker_rules.hub_user("no-such-user-here", [], {"no-such-user-here": "0:0"})
    with pytest.raises(PolicyViolation, match="uid/gid 0"):
        broker_rules.hub_user("root", [], {})


@pytest.fixture
def ordinary_account() -> Iterator[SystemUser]:
    """An ordinary account (uid from UID_MIN up) with a home of its own."""
    try:
        with system_user("gpuenvhub", system=False) as user:
            home = Path(pwd.getpwnam(user.name).pw_dir)
            home.mkdir(mode=0o700)
            os.chown(home, user.uid, user.gid)
            try:
                yield user
            finally:
                shutil.rmtree(home, ignore_errors=True)
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must check Hub names against real accounts: {exc}")
        pytest.skip(str(exc))


def test_a_hub_name_maps_to_an_ordinary_account_only(ordinary_account: SystemUser) -> None:
    accounts = broker_rules.account_rules(None, [])
    assert accounts.min_uid == broker_rules.login_uid_min()
    user = broker_rules.hub_user(ordinary_account.name, ["g"], {}, accounts)
    assert (user.uid, user.gid) == (ordinary_account.uid, ordinary_account.gid)
    assert user.home == pwd.getpwnam(ordinary_account.name).pw_dir

    # In a group that administers the host or reaches Docker: refused, naming the group.
    subprocess.run(["usermod", "-aG", "adm", ordinary_account.name], check=True)
    with pytest.raises(PolicyViolation, match=r"in the group\(s\) adm.*user_ids"):
        broker_rules.hub_user(ordinary_account.name, [], {}, accounts)
    # The admin's own denied group, and the admin's explicit mapping as the way out.
    subprocess.run(["gpasswd", "-d", ordinary_account.name, "adm"], check=True, capture_output=True)
    own_group = grp.getgrgid(ordinary_account.gid).gr_name
    with pytest.raises(PolicyViolation, match=own_group):
        broker_rules.hub_user(
            ordinary_account.name, [], {}, broker_rules.account_rules(None, [own_group])
        )
    mapped = {ordinary_account.name: f"{ordinary_account.uid}:{ordinary_account.gid}"}
    assert broker_rules.hub_user(ordinary_account.name, [], mapped, accounts).uid == (
        ordinary_account.uid
    )


def test_service_accounts_and_homeless_accounts_are_refused() -> None:
    accounts = broker_rules.account_rules(None, [])
    # A service account present on every Debian host: uid 1, home /usr/sbin, not its own.
    with pytest.raises(PolicyViolation, match=r"uid 1, below \d+"):
        broker_rules.hub_user("daemon", [], {}, accounts)
    with pytest.raises(PolicyViolation, match="uid/gid 0"):
        broker_rules.hub_user("root", [], {}, accounts)
    try:
        with system_user("gpuenvsvc") as service, system_user("gpuenvnohome", False) as homeless:
            with pytest.raises(PolicyViolation, match="a service account"):
                broker_rules.hub_user(service.name, [], {}, accounts)
            with pytest.raises(PolicyViolation, match="no home of its own"):
                broker_rules.hub_user(homeless.name, [], {}, accounts)
            # An admin who lowers the bar still gets no account whose home is not its own.
            with pytest.raises(PolicyViolation, match="no home of its own"):
                broker_rules.hub_user(
                    service.name, [], {}, broker_rules.account_rules(100, [])
                )
    except UserUnavailable as exc:
        if running_in_ci():
            pytest.fail(f"CI must check Hub names against real accounts: {exc}")
        pytest.skip(str(exc))


def test_uid_min_is_read_from_login_defs(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t 5000\nUID_MAX 60000\n")
    assert broker_rules.login_uid_min(str(defs)) == 5000
    assert broker_rules.login_uid_min(str(tmp_path / "missing")) == 1000

