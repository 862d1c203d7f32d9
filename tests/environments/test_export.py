"""environment.yml export of real prefixes, compared with what conda writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from jupyter_gpuenv.environments.conda_config import conda_cli
from jupyter_gpuenv.environments.export import (
    CorruptEnvironment,
    canonical_channel,
    reconstruct_conda_export,
)
from jupyter_gpuenv.errors import EnvironmentNotFound
from tests.support.dist_info import write_dist_info

from .conftest import TORCH_CU121

PY = ".".join(str(part) for part in sys.version_info[:3])
PY_MM = f"{sys.version_info[0]}.{sys.version_info[1]}"
PIP = metadata.version("pip")
IPYKERNEL = metadata.version("ipykernel")

PACKAGES = [
    ("numpy", "1.26.4", "py311h64a7726_0", "conda-forge"),
    ("cuda-cudart", "12.1.105", "0", "nvidia/label/cuda-12.1.0"),
    ("intel-openmp", "2023.1.0", "hdb19cb5_46306", "defaults"),
    ("scipy", "1.13.1", "py311h517d4fd_0", "conda-forge"),
]
HISTORY = [
    {
        "cmd": "/opt/conda/bin/conda create -n ml python=3.11 numpy scipy intel-openmp",
        "update_specs": [f"python={PY_MM}", "numpy", "scipy", "intel-openmp"],
    },
    {
        "cmd": "/opt/conda/bin/conda install -c pytorch -c nvidia pytorch pytorch-cuda=12.1",
        "update_specs": ["pytorch::pytorch=2.9.0", "pytorch-cuda=12.1", "cuda-cudart"],
    },
    {"cmd": "/opt/conda/bin/conda remove scipy", "remove_specs": ["scipy"]},
    {"cmd": "/opt/conda/bin/conda install 'numpy>=1.26'", "update_specs": ["numpy>=1.26"]},
]


@pytest.fixture
def ml_prefix(tmp_path: Path, conda_prefix_factory) -> Path:
    prefix = conda_prefix_factory(
        tmp_path / "envs" / "ml",
        packages=PACKAGES,
        pip_packages=[("torchinfo", "1.8.0"), ("Flash_Attn", "2.6.3")],
        history=HISTORY,
        torch=TORCH_CU121,
    )
    state = {"env_vars": {"CUDA_MODULE_LOADING": "LAZY", "OLD": "***unset***"}}
    (prefix / "conda-meta" / "state").write_text(json.dumps(state), encoding="utf-8")
    return prefix


def expected_full(prefix: Path, builds: bool) -> str:
    def dep(name: str, version: str, build: str) -> str:
        return f"  - {name}={version}={build}" if builds else f"  - {name}={version}"

    lines = [
        "name: ml",
        "channels:",
        "  - pytorch",
        "  - conda-forge",
        "  - nvidia/label/cuda-12.1.0",
        "  - defaults",
        "dependencies:",
        dep("cuda-cudart", "12.1.105", "0"),
        dep("intel-openmp", "2023.1.0", "hdb19cb5_46306"),
        dep("ipykernel", IPYKERNEL, "pyh3099207_0"),
        dep("numpy", "1.26.4", "py311h64a7726_0"),
        dep("pip", PIP, "pyh8b19718_1"),
        dep("python", PY, "hab00c5b_0_cpython"),
        dep("pytorch", "2.9.0", f"py{PY_MM}_cuda12.1_cudnn9.1.0_0"),
        dep("pytorch-cuda", "12.1", "ha16c6d3_6"),
        dep("scipy", "1.13.1", "py311h517d4fd_0"),
        "  - pip:",
        "      - flash-attn==2.6.3",
        "      - torchinfo==1.8.0",
        "variables:",
        "  CUDA_MODULE_LOADING: LAZY",
        f"prefix: {prefix}",
    ]
    return "\n".join(lines) + "\n"


def test_export_like_conda_env_export(ml_prefix: Path) -> None:
    assert reconstruct_conda_export("ml", ml_prefix) == expected_full(ml_prefix, builds=True)


def test_export_no_builds(ml_prefix: Path) -> None:
    text = reconstruct_conda_export("ml", ml_prefix, no_builds=True)
    assert text == expected_full(ml_prefix, builds=False)


def test_export_from_history(ml_prefix: Path) -> None:
    text = reconstruct_conda_export("ml", ml_prefix, from_history=True)
    # scipy was removed from the requests (still installed, not requested any more);
    # numpy keeps its place with the newer spec; only configured channels are listed.
    assert text == (
        "name: ml\n"
        "channels:\n"
        "  - defaults\n"
        "dependencies:\n"
        f"  - python={PY_MM}\n"
        "  - numpy[version='>=1.26']\n"
        "  - intel-openmp\n"
        "  - pytorch::pytorch=2.9.0\n"
        "  - pytorch-cuda=12.1\n"
        "  - cuda-cudart\n"
        "variables:\n"
        "  CUDA_MODULE_LOADING: LAZY\n"
        f"prefix: {ml_prefix}\n"
    )
    assert yaml.safe_load(text)["dependencies"][1] == "numpy[version='>=1.26']"


def test_condarc_channels_lead_the_list(ml_prefix: Path, isolated_conda_home: Path) -> None:
    (isolated_conda_home / ".condarc").write_text("channels: [conda-forge]\n", "utf-8")
    data = yaml.safe_load(reconstruct_conda_export("ml", ml_prefix))
    # each record's channel missing from the list goes in front, records by name
    assert data["channels"] == ["pytorch", "defaults", "nvidia/label/cuda-12.1.0", "conda-forge"]
    history = yaml.safe_load(reconstruct_conda_export("ml", ml_prefix, from_history=True))
    assert history["channels"] == ["conda-forge"]


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("https://conda.anaconda.org/conda-forge/linux-64", "conda-forge"),
        ("https://conda.anaconda.org/pytorch/noarch", "pytorch"),
        (
            "https://conda.anaconda.org/nvidia/label/cuda-12.1.0/linux-64",
            "nvidia/label/cuda-12.1.0",
        ),
        ("https://conda.anaconda.org/t/tk-0123/private/linux-64", "private"),
        ("https://repo.anaconda.com/pkgs/main/linux-64", "defaults"),
        ("https://repo.anaconda.com/pkgs/r/noarch", "defaults"),
        ("https://repo.anaconda.com/pkgs/free", "defaults"),
        ("pkgs/main", "defaults"),
        ("conda-forge", "conda-forge"),
        (
            "https://mirror.example/channels/vision/linux-64",
            "https://mirror.example/channels/vision",
        ),
        ("", "<unknown>"),
    ],
)
def test_channel_names(channel: str, name: str) -> None:
    assert canonical_channel(channel) == name


def test_channel_from_url_when_channel_field_is_empty() -> None:
    url = "https://conda.anaconda.org/pytorch/linux-64/pytorch-2.9.0-py3.11_0.conda"
    assert canonical_channel("", url) == "pytorch"


def test_venv_export(make_catalog, tmp_path: Path, venv_factory) -> None:
    prefix = venv_factory(
        tmp_path / "venvs" / "torchvenv",
        pip_packages=[("einops", "0.8.0"), ("torch_geometric", "2.6.1")],
        torch={"version": "2.13.0+cpu"},
    )
    site = next((prefix / "lib").glob("python3.*/site-packages"))
    for name in ("torch-2.13.0+cpu.dist-info", "einops-0.8.0.dist-info"):
        (site / name / "REQUESTED").write_text("", encoding="utf-8")
    write_dist_info(site, "pip", "24.0", "pip")
    catalog = make_catalog(venv_dirs=[str(prefix.parent)])
    (env,) = catalog.list_environments_sync()
    filename, text = catalog.export_sync(env.id)
    assert filename == "torchvenv-environment.yml"
    assert text == (
        "name: torchvenv\n"
        "channels:\n"
        "  - defaults\n"
        "dependencies:\n"
        f"  - python={PY}\n"
        "  - pip\n"
        "  - pip:\n"
        "      - einops==0.8.0\n"
        "      - torch==2.13.0+cpu\n"
        "      - torch-geometric==2.6.1\n"
    )
    _, history = catalog.export_sync("torchvenv", from_history=True)
    assert yaml.safe_load(history)["dependencies"] == [
        f"python={PY_MM}",
        "pip",
        {"pip": ["einops==0.8.0", "torch==2.13.0+cpu"]},
    ]


def test_export_through_the_catalog_and_bad_input(make_catalog, ml_prefix: Path) -> None:
    catalog = make_catalog(conda_envs_dirs=[str(ml_prefix.parent)])
    (env,) = catalog.list_environments_sync()
    filename, text = catalog.export_sync(env.id)
    assert filename == "ml-environment.yml"
    assert text == expected_full(ml_prefix, builds=True)
    with pytest.raises(EnvironmentNotFound):
        catalog.export_sync("conda-nothing-12345678")
    shutil.rmtree(ml_prefix)
    with pytest.raises(EnvironmentNotFound, match=f"folder {ml_prefix} no longer exists"):
        catalog.export_sync(env.id)


def test_corrupt_records_refuse_export(tmp_path: Path, conda_prefix_factory) -> None:
    prefix = conda_prefix_factory(tmp_path / "broken")
    (prefix / "conda-meta" / "zlib-1.3.1-0.json").write_text("[1,", encoding="utf-8")
    with pytest.raises(CorruptEnvironment, match="zlib-1.3.1-0.json") as info:
        reconstruct_conda_export("broken", prefix)
    assert info.value.status == 409


@pytest.mark.skipif(conda_cli() is None, reason="no conda/mamba CLI on this machine to compare")
@pytest.mark.parametrize(
    "flags", [(), ("--no-builds",), ("--from-history",)], ids=["full", "no-builds", "history"]
)
def test_reconstruction_agrees_with_the_conda_cli(ml_prefix: Path, flags: tuple[str, ...]):
    cli = conda_cli()
    assert cli is not None
    done = subprocess.run(
        [cli, "env", "export", "-p", str(ml_prefix), *flags],
        capture_output=True,
        text=True,
        check=True,
    )
    ours = reconstruct_conda_export(
        "ml", ml_prefix, no_builds="--no-builds" in flags, from_history="--from-history" in flags
    )
    theirs = yaml.safe_load(done.stdout)
    mine = yaml.safe_load(ours)
    for key in ("channels", "dependencies", "variables", "prefix"):
        assert mine.get(key) == theirs.get(key), key
