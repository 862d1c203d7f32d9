"""The catalog over real conda prefixes and venvs: listing, caching, revalidation, errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from jupyter_gpuenv.environments.catalog import Catalog
from jupyter_gpuenv.environments.conda import site_packages
from jupyter_gpuenv.environments.model import Environment, environment_id
from jupyter_gpuenv.errors import EnvironmentNotFound
from tests.support.fake_torch import TorchSpec, write_fake_torch

from .conftest import TORCH_CU121


@pytest.fixture
def envs(tmp_path: Path, conda_prefix_factory, venv_factory) -> dict[str, Path]:
    conda_dir, venv_dir = tmp_path / "conda-envs", tmp_path / "venvs"
    return {
        "vision": conda_prefix_factory(conda_dir / "vision", torch=TORCH_CU121),
        "cpu": conda_prefix_factory(conda_dir / "cpu", torch={"version": "2.9.0+cpu"}),
        "myvenv": venv_factory(venv_dir / "myvenv"),
        "nokernel": venv_factory(venv_dir / "nokernel", ipykernel=False),
    }


def local_catalog(make_catalog, envs: dict[str, Path], **traits) -> Catalog:
    return make_catalog(
        conda_envs_dirs=[str(envs["vision"].parent)],
        venv_dirs=[str(envs["myvenv"].parent)],
        **traits,
    )


def by_name(environments: list[Environment]) -> dict[str, Environment]:
    return {env.name: env for env in environments}


def test_listing_reports_probed_versions(make_catalog, envs) -> None:
    catalog = local_catalog(make_catalog, envs)
    listed = by_name(catalog.list_environments_sync())
    assert sorted(listed) == ["cpu", "myvenv", "nokernel", "vision"]
    vision = listed["vision"]
    assert vision.kind == "conda"
    assert vision.id == environment_id("conda", "vision", str(envs["vision"]))
    assert vision.kernel_name == f"gpuenv-{vision.id}"
    assert vision.torch_version == "2.9.0+cu121"
    assert vision.cuda_version == "12.1"
    assert vision.cudnn_version == "9.1.0"
    assert vision.display_name == "vision (conda) · PyTorch 2.9 · CUDA 12.1"
    assert vision.location == {"prefix": str(envs["vision"])}
    assert vision.ipykernel and vision.problems == []
    assert listed["cpu"].display_name == "cpu (conda) · PyTorch 2.9 · CPU"
    assert listed["cpu"].cuda_version is None
    major_minor = ".".join(listed["myvenv"].python_version.split(".")[:2])
    assert listed["myvenv"].display_name == f"myvenv (venv) · Python {major_minor}"
    assert listed["myvenv"].torch_version is None
    nokernel = listed["nokernel"]
    assert nokernel.ipykernel is False
    assert len(nokernel.problems) == 1 and "ipykernel is not installed" in nokernel.problems[0]
    # conda first, then venvs; the REST shape has no server-side settings.
    assert [e.kind for e in catalog.list_environments_sync()] == ["conda"] * 2 + ["venv"] * 2
    assert "settings" not in vision.to_json()


def test_second_listing_probes_nothing(make_catalog, envs) -> None:
    catalog = local_catalog(make_catalog, envs)
    first = catalog.list_environments_sync()
    assert catalog.probe_counter.total == 4
    second = catalog.list_environments_sync()
    assert second is first
    assert catalog.probe_counter.total == 4


def test_a_restarted_catalog_is_warm_from_disk(make_catalog, envs, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache.json"
    first = local_catalog(make_catalog, envs, cache_path=cache)
    before = [e.to_json() for e in first.list_environments_sync()]
    assert first.probe_counter.total == 4 and cache.is_file()
    restarted = local_catalog(make_catalog, envs, cache_path=cache)
    assert [e.to_json() for e in restarted.list_environments_sync()] == before
    assert restarted.probe_counter.total == 0


def test_only_changed_environments_are_probed_again(make_catalog, envs, tmp_path) -> None:
    catalog = local_catalog(make_catalog, envs, revalidate_after=0.0)
    catalog.list_environments_sync()
    # pip installs torch into the plain venv, and a new conda env appears
    site = next((envs["myvenv"] / "lib").glob("python3.*/site-packages"))
    time.sleep(0.01)
    write_fake_torch(site, TorchSpec.from_dict({"version": "2.13.0+cpu"}, "pip"))
    (envs["vision"].parent / "scratch").mkdir()
    listed = by_name(catalog.list_environments_sync(refresh=True))
    assert listed["myvenv"].torch_version == "2.13.0+cpu"
    assert catalog.probe_counter.total == 5


def test_stale_snapshot_is_revalidated_in_the_background(
    make_catalog, envs, conda_prefix_factory
) -> None:
    catalog = local_catalog(make_catalog, envs, revalidate_after=0.0)
    catalog.list_environments_sync()
    conda_prefix_factory(envs["vision"].parent / "late")
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while "late" not in names and time.monotonic() < deadline:
        # each call answers from the snapshot at once and schedules a re-stat
        names = {env.name for env in catalog.list_environments_sync()}
        time.sleep(0.05)
    assert "late" in names
    assert catalog.probe_counter.total == 5


async def test_async_api_and_lookups(make_catalog, envs) -> None:
    catalog = local_catalog(make_catalog, envs)
    listed = await catalog.list_environments()
    vision = by_name(listed)["vision"]
    assert await catalog.get(vision.id) is vision
    assert catalog.get_sync(vision.id) is vision
    assert catalog.resolve_sync("vision") is vision
    with pytest.raises(EnvironmentNotFound, match="no environment with id 'conda-nope-00000000'"):
        await catalog.get("conda-nope-00000000")
    with pytest.raises(EnvironmentNotFound, match="id or name 'nope'"):
        catalog.resolve_sync("nope")
    assert catalog.probe_counter.total == 4


def test_annotators_run_after_each_scan(make_catalog, envs) -> None:
    catalog = local_catalog(make_catalog, envs)
    seen: list[list[str]] = []

    def annotate(environments: list[Environment]) -> None:
        seen.append([env.name for env in environments])
        for env in environments:
            env.compatibility = {"verdict": "ok", "findings": []}

    def broken(environments: list[Environment]) -> None:
        raise RuntimeError("an annotator bug must not break the listing")

    catalog.annotators += [broken, annotate]
    listed = catalog.list_environments_sync()
    assert seen == [[env.name for env in listed]]
    assert all(env.compatibility == {"verdict": "ok", "findings": []} for env in listed)
    catalog.list_environments_sync(refresh=True)
    assert len(seen) == 2


def test_cached_environments_never_probe(make_catalog, envs, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    first = local_catalog(make_catalog, envs, cache_path=cache)
    first.list_environments_sync()
    fresh = local_catalog(make_catalog, envs, cache_path=cache)
    # before its first scan, the listing saved on disk (facts only: never launch settings)
    cached = fresh.cached_environments()
    assert sorted(e.name for e in cached) == ["cpu", "myvenv", "nokernel", "vision"]
    assert by_name(cached)["vision"].settings == {}
    assert fresh.probe_counter.total == 0
    # a listing saved for other sources is not shown
    other = make_catalog(cache_path=cache, conda_envs_dirs=[str(envs["vision"].parent)])
    assert other.cached_environments() == []


def test_broken_environments_still_list(make_catalog, tmp_path: Path, conda_prefix_factory):
    envs_dir = tmp_path / "envs"
    corrupt = conda_prefix_factory(envs_dir / "corrupt")
    (corrupt / "conda-meta" / "openssl-3.3.1-h4ab18f5_0.json").write_text("{oops", "utf-8")
    no_kernel = conda_prefix_factory(envs_dir / "nokernel")
    (site_packages(no_kernel) / "_gpuenv_test_host_site.pth").unlink()
    crashing = envs_dir / "crashing"
    (crashing / "conda-meta").mkdir(parents=True)
    (crashing / "bin").mkdir()
    (crashing / "bin" / "python").write_text("#!/bin/sh\necho fatal >&2\nexit 1\n", "utf-8")
    (crashing / "bin" / "python").chmod(0o755)
    no_python = conda_prefix_factory(envs_dir / "r-only", python=False)
    listed = by_name(make_catalog(conda_envs_dirs=[str(envs_dir)]).list_environments_sync())
    assert "openssl-3.3.1-h4ab18f5_0.json is corrupt" in listed["corrupt"].problems[0]
    assert listed["corrupt"].python_version
    assert "conda install -p" in listed["nokernel"].problems[0]
    assert "exit 1" in listed["crashing"].problems[0]
    assert listed["crashing"].display_name == "crashing (conda)"
    assert "bin/python is missing" in listed["r-only"].problems[0]
    assert listed["r-only"].location == {"prefix": str(no_python)}


def test_disk_cache_survives_a_corrupt_file(make_catalog, envs, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    cache.write_text("not json", encoding="utf-8")
    catalog = local_catalog(make_catalog, envs, cache_path=cache)
    assert len(catalog.list_environments_sync()) == 4
    assert json.loads(cache.read_text(encoding="utf-8"))["format"] == 2


def test_a_cache_of_the_wrong_shape_is_ignored_and_rebuilt(
    make_catalog, envs, tmp_path: Path
) -> None:
    """The cache is the user's file: settings in it are never read, odd entries re-probed."""
    cache = tmp_path / "cache.json"
    first = local_catalog(make_catalog, envs, cache_path=cache)
    first.list_environments_sync()
    data = json.loads(cache.read_text(encoding="utf-8"))
    for item in data["listing"]:
        item["settings"] = {"mounts": ["/:/host"], "user": "root"}
    for entry in data["probes"].values():
        entry["result"]["torch_version"] = ["not", "a", "version"]
    cache.write_text(json.dumps(data), encoding="utf-8")

    poisoned = local_catalog(make_catalog, envs, cache_path=cache)
    assert poisoned.cached_environments() == []
    listed = poisoned.list_environments_sync()
    assert poisoned.probe_counter.total == len(data["probes"])
    assert all(env.settings.get("mounts") is None for env in listed)
    assert "/host" not in cache.read_text(encoding="utf-8")


def test_conda_env_list_adds_environments_in_the_background(
    make_catalog, tmp_path: Path, conda_prefix_factory, monkeypatch
) -> None:
    """Environments only the conda CLI knows (e.g. created with -p elsewhere) are added.

    No conda can be installed on the test machine (no conda channel is reachable), so an
    executable printing what ``conda env list --json`` prints stands in for it.
    """
    hidden = conda_prefix_factory(tmp_path / "elsewhere" / "hidden-env")
    known = conda_prefix_factory(tmp_path / "envs" / "known")
    bin_dir = tmp_path / "stand-in-conda-bin"
    bin_dir.mkdir()
    listing = json.dumps({"envs": [str(known), str(hidden), str(tmp_path / "gone")]})
    script = bin_dir / "conda"
    script.write_text(f"#!/bin/sh\ncat <<'JSON'\n{listing}\nJSON\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    catalog = make_catalog(conda_envs_dirs=[str(known.parent)], revalidate_after=0.0)
    names = {env.name for env in catalog.list_environments_sync()}
    deadline = time.monotonic() + 30
    while "hidden-env" not in names and time.monotonic() < deadline:
        time.sleep(0.05)
        names = {env.name for env in catalog.list_environments_sync()}
    assert names == {"known", "hidden-env"}
