"""The JupyterHub docs and README: every config name they use exists, every snippet parses."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from jupyter_gpuenv.config import GpuEnv

pytestmark = pytest.mark.hub

ROOT = Path(__file__).resolve().parents[2]
HUB_DOC = ROOT / "docs" / "jupyterhub.md"
README = ROOT / "README.md"

# Configurable classes the docs name, where they are importable here (the test extras
# install jupyterhub); DockerSpawner/KubeSpawner traits are not checked.
CLASSES = {
    "GpuEnv": "jupyter_gpuenv.config:GpuEnv",
    "GpuEnvBroker": "jupyter_gpuenv.config:GpuEnvBroker",
    "Spawner": "jupyterhub.spawner:Spawner",
    "LocalProcessSpawner": "jupyterhub.spawner:LocalProcessSpawner",
    "SimpleLocalProcessSpawner": "jupyterhub.spawner:SimpleLocalProcessSpawner",
    "JupyterHub": "jupyterhub.app:JupyterHub",
    "MappingKernelManager": "jupyter_server.services.kernels.kernelmanager:MappingKernelManager",
    "ServerApp": "jupyter_server.serverapp:ServerApp",
}
CONFIG_NAME = re.compile(r"\bc\.([A-Za-z]+)\.([A-Za-z_][A-Za-z0-9_]*)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def hub_section(readme: str) -> str:
    start = readme.index("## JupyterHub")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end < 0 else readme[start:end]


def documents() -> dict[str, str]:
    return {
        "docs/jupyterhub.md": HUB_DOC.read_text(),
        "README.md#JupyterHub": hub_section(README.read_text()),
        "binder/setup_envs.sh": (ROOT / "binder" / "setup_envs.sh").read_text(),
    }


def trait_names(class_name: str) -> set[str]:
    module_name, attr = CLASSES[class_name].split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return set(cls.class_trait_names(config=True))


def test_every_config_name_is_a_real_trait() -> None:
    unknown = []
    seen = set()
    for where, text in documents().items():
        for class_name, trait in CONFIG_NAME.findall(text):
            if not CLASSES.get(class_name):
                continue
            seen.add(class_name)
            if trait not in trait_names(class_name):
                unknown.append(f"{where}: c.{class_name}.{trait}")
    assert not unknown, "not configurable traits: " + ", ".join(unknown)
    assert {"GpuEnv", "GpuEnvBroker", "Spawner", "MappingKernelManager"} <= seen


def test_policy_traits_are_documented() -> None:
    text = HUB_DOC.read_text()
    for trait in (
        "docker_images",
        "restrict_to_configured_images",
        "docker_allow_root",
        "user_gpus_env",
        "show_all_gpu_processes",
        "hub_user",
        "conda_envs_dirs",
        "gpus",
    ):
        assert trait in GpuEnv.class_trait_names(config=True)
        assert f"c.GpuEnv.{trait}" in text, trait


def test_python_snippets_compile_and_yaml_snippets_parse() -> None:
    blocks = FENCE.findall(HUB_DOC.read_text()) + FENCE.findall(hub_section(README.read_text()))
    languages = [lang for lang, _ in blocks]
    assert languages.count("python") >= 5 and "yaml" in languages
    for lang, body in blocks:
        if lang == "python":
            ast.parse(body)
        elif lang == "yaml":
            values = yaml.safe_load(body)
            for entry in values.get("singleuser", {}).get("extraFiles", {}).values():
                config = entry["stringData"]
                ast.parse(textwrap.dedent(config))
                for class_name, trait in CONFIG_NAME.findall(config):
                    assert trait in trait_names(class_name), f"c.{class_name}.{trait}"


def test_broker_settings_are_documented() -> None:
    text = HUB_DOC.read_text()
    for trait in sorted(trait_names("GpuEnvBroker")):
        assert f"`{trait}`" in text, trait
    assert "c.GpuEnv.broker_url" in hub_section(README.read_text())


@pytest.mark.parametrize(
    "heading", ["Recipe 1: a local Hub", "Recipe 2: DockerSpawner", "Recipe 3: Zero to JupyterHub"]
)
def test_recipes_are_there(heading: str) -> None:
    assert f"## {heading}" in HUB_DOC.read_text()


def test_readme_links_the_docs_and_binder() -> None:
    readme = README.read_text()
    assert "(docs/jupyterhub.md)" in hub_section(readme)
    badge = readme.split("\n## ", 1)[0]
    match = re.search(r"\(https://mybinder\.org/v2/gh/([^)]+)\)", badge)
    assert match and "mybinder.org/badge_logo.svg" in badge
    assert (ROOT / "binder" / "postBuild").exists()
