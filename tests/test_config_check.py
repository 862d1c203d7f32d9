"""Each c.GpuEnv setting checked on its own (traitlets' own validation, setting by setting)."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.config_check import checked_config, load_checked_config, setting_problems


def test_valid_settings_give_the_same_config_as_traitlets() -> None:
    c = Config()
    c.GpuEnv.probe_timeout = 12.5
    c.GpuEnv.gpus = [0, 1]
    c.GpuEnv.docker_images = {"torch": "pytorch/pytorch:2.9.0", "vision": {"image": "v:1"}}
    checked = checked_config(c)
    plain = GpuEnv(config=c)
    assert setting_problems(checked) == []
    for name in ("probe_timeout", "gpus", "docker_images", "venv_dirs"):
        assert getattr(checked, name) == getattr(plain, name)


def test_update_style_settings_are_applied() -> None:
    c = Config()
    c.GpuEnv.docker_images.update({"a": "img:1"})
    c.GpuEnv.docker_environment_allowlist.append("HTTP_PROXY")
    checked = checked_config(c)
    assert checked.docker_images == {"a": "img:1"}
    assert checked.docker_environment_allowlist == ["LANG", "LC_ALL", "TZ", "HTTP_PROXY"]


def test_each_invalid_setting_keeps_its_default_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = Config()
    c.GpuEnv.kernel_start_timeout = 30
    c.GpuEnv.image_build_timeout = "long"
    c.GpuEnv.gpus = "some"
    c.GpuEnv.venv_dirs = ["/a", 3]
    c.GpuEnv.block_incompatibel = False
    c.GpuEnv.docker_images = {
        "ok": "img:1",
        "noimage": {"display_name": "x"},
        "badkey": {"image": "img:1", "shm": "8g"},
        "badcpus": {"image": "img:1", "cpus": "two"},
        "badenv": {"image": "img:1", "conda_env": 3},
    }
    log = logging.getLogger("test-config-check")
    with caplog.at_level(logging.WARNING, logger=log.name):
        checked = checked_config(c, log=log)
    assert checked.kernel_start_timeout == 30.0
    assert checked.image_build_timeout == 900.0
    assert checked.gpus.is_all and checked.venv_dirs == GpuEnv().venv_dirs
    assert checked.docker_images == {"ok": "img:1"}
    problems = {p.setting: p for p in setting_problems(checked)}
    assert set(problems) == {
        "c.GpuEnv.image_build_timeout",
        "c.GpuEnv.gpus",
        "c.GpuEnv.venv_dirs",
        "c.GpuEnv.block_incompatibel",
        "c.GpuEnv.docker_images['noimage']",
        "c.GpuEnv.docker_images['badkey']",
        "c.GpuEnv.docker_images['badcpus']",
        "c.GpuEnv.docker_images['badenv']",
    }
    assert problems["c.GpuEnv.gpus"].consequence == "the default ('all') is used"
    assert problems["c.GpuEnv.venv_dirs"].expected == "a list of strings"
    assert "did you mean block_incompatible?" in problems["c.GpuEnv.block_incompatibel"].expected
    assert "'shm'" in problems["c.GpuEnv.docker_images['badkey']"].expected
    assert problems["c.GpuEnv.docker_images['badcpus']"].expected == "'cpus': a number of CPUs"
    assert "'conda_env'" in problems["c.GpuEnv.docker_images['badenv']"].expected
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(problems)
    assert all(any(setting in line for line in logged) for setting in problems)


def test_config_files_are_checked_the_same_way(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(tmp_path / "none"))
    config = tmp_path / "jupyter_server_config.py"
    config.write_text("c.GpuEnv.probe_timeout = 'fast'\nc.GpuEnv.kernel_start_timeout = 5\n")
    checked = load_checked_config(str(config))
    assert checked.kernel_start_timeout == 5.0
    assert [p.setting for p in setting_problems(checked)] == ["c.GpuEnv.probe_timeout"]
