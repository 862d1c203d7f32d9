"""The py-rattler path, in process, against the session's local channel: CUDA builds chosen
by the ``__cuda`` override on this GPU-less machine, conflicts, taken names, failures and
interrupts that leave nothing behind, ``variables:`` and the pip section."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from jupyter_gpuenv.environments.create.create import (
    CreateRequest,
    plan_create,
    release,
    run_create,
)
from jupyter_gpuenv.environments.create.creator import EnvironmentCreator
from jupyter_gpuenv.environments.create.errors import (
    CreateFailed,
    EnvironmentExists,
    SolveConflict,
)
from jupyter_gpuenv.environments.create.job import CreateJob
from jupyter_gpuenv.environments.create.spec import read_environment_file


def no_driver() -> str | None:
    return None  # this machine's NVML answer; said outright so the test reads alone


def create(setup, yml, host=no_driver, **request):
    plan = plan_create(setup.config(), CreateRequest(read_environment_file(yml), **request), host)
    job = CreateJob("create")
    run_create(plan, job)
    return plan, job


def test_cuda_override_selects_the_cuda_build_and_none_the_cpu_build(create_setup, variant):
    yml = create_setup.environment_yml(["gpuenv-demo"])
    plan, job = create(create_setup, yml, name="gpu", cuda="12.4")
    assert plan.engine == "rattler" and job.cuda == "12.4"
    assert variant(create_setup.envs / "gpu") == "cuda"
    assert any("no NVIDIA driver" in w for w in job.warnings)

    create(create_setup, yml, name="cpu")  # no driver here and nothing requested
    assert variant(create_setup.envs / "cpu") == "cpu"


def test_cuda_comes_from_the_setting_then_the_host_driver(create_setup, variant):
    yml = create_setup.environment_yml(["gpuenv-demo"])
    plan = plan_create(
        create_setup.config(environment_create_cuda="12.2"),
        CreateRequest(read_environment_file(yml), name="x"),
        no_driver,
    )
    assert (plan.cuda.version, plan.cuda.source) == ("12.2", "c.GpuEnv.environment_create_cuda")
    release(plan)  # planned only
    create(create_setup, yml, host=lambda: "12.8", name="driver")
    assert variant(create_setup.envs / "driver") == "cuda"
    create(create_setup, yml, host=lambda: "12.8", name="nocuda", cuda="none")
    assert variant(create_setup.envs / "nocuda") == "cpu"
    create(create_setup, yml, host=lambda: "11.8", name="old-driver")
    assert variant(create_setup.envs / "old-driver") == "cpu"  # __cuda 11.8 < 12


def test_build_strings_variables_history_and_steps(create_setup, variant):
    yml = create_setup.environment_yml(
        ["gpuenv-demo=1.0=cpu_0", "gpuenv-tool"], variables={"DEMO_MODE": "fast"}
    )
    _plan, job = create(create_setup, yml, cuda="12.4")
    prefix = create_setup.envs / "demo"
    assert variant(prefix) == "cpu"  # the build string wins over the preferred cuda build
    assert variant(prefix, "gpuenv-lib") == "2.0"
    state = json.loads((prefix / "conda-meta" / "state").read_text())
    assert state == {"env_vars": {"DEMO_MODE": "fast"}}
    history = (prefix / "conda-meta" / "history").read_text()
    assert f"# cmd: jupyter gpuenv create -p {prefix} " in history
    assert "# update specs: ['gpuenv-demo=1.0=cpu_0', 'gpuenv-tool']" in history
    assert [s.key for s in job.steps] == ["solve", "download", "link"]
    assert job.steps[-1].done == job.steps[-1].total == 3
    assert all(s.state == "done" for s in job.steps[:-1])  # the caller ends the last
    assert create_setup.leftovers() == ["demo"]  # no staging sibling left
    assert str(prefix) in (create_setup.home / ".conda" / "environments.txt").read_text()


def test_a_conflict_names_the_packages_and_leaves_nothing(create_setup):
    yml = create_setup.environment_yml(["gpuenv-lib>=2", "gpuenv-app"])
    with pytest.raises(SolveConflict) as info:
        create(create_setup, yml)
    assert info.value.status == 422
    assert "gpuenv-app" in info.value.message and "gpuenv-lib" in info.value.message
    assert "<2" in info.value.message
    assert create_setup.leftovers() == []


def test_a_taken_name_is_refused_before_anything_runs(create_setup):
    yml = create_setup.environment_yml(["gpuenv-tool"])
    create(create_setup, yml)
    prefix = create_setup.envs / "demo"
    before = sorted(p.name for p in (prefix / "conda-meta").iterdir())
    other = create_setup.environment_yml(["gpuenv-demo"], file="other.yml")
    with pytest.raises(EnvironmentExists) as info:
        create(create_setup, other)
    assert info.value.status == 409 and str(prefix) in info.value.message
    assert sorted(p.name for p in (prefix / "conda-meta").iterdir()) == before
    assert not (prefix / "share" / "gpuenv-demo").exists()
    first = plan_create(
        create_setup.config(), CreateRequest(read_environment_file(other), name="twin"), no_driver
    )
    with pytest.raises(EnvironmentExists, match="being created by another request"):
        create(create_setup, other, name="twin")  # while the first is planned or running
    run_create(first, CreateJob("create"))
    assert (create_setup.envs / "twin" / "conda-meta").is_dir()
    (create_setup.envs / "plain-folder").mkdir()
    with pytest.raises(EnvironmentExists, match="a file or folder"):
        create(create_setup, other, name="plain-folder")


def test_a_failing_pip_section_leaves_no_prefix(create_setup):
    yml = create_setup.environment_yml(
        ["python", "pip"], pip=[*create_setup.pip_offline(), "no-such-package-gpuenv==1.0"]
    )
    with pytest.raises(CreateFailed) as info:
        create(create_setup, yml)
    assert "no-such-package-gpuenv" in info.value.message
    assert create_setup.leftovers() == []


def test_pip_section_installs_from_the_files_find_links_only(create_setup):
    yml = create_setup.environment_yml(
        ["python", "pip"], pip=[*create_setup.pip_offline(), "traitlets"]
    )
    _plan, job = create(create_setup, yml)
    python = create_setup.envs / "demo" / "bin" / "python"
    out = subprocess.run(
        [python, "-c", "import sys, traitlets; print(sys.prefix, traitlets.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == str(create_setup.envs / "demo")
    assert out[1].startswith(str(create_setup.envs / "demo" / "lib"))
    assert job.steps[-1].key == "pip" and "traitlets" in (job.steps[-1].detail or "") + str(
        [s.detail for s in job.steps]
    )


def test_creator_lists_the_new_environment_and_removes_it(create_setup, make_catalog):
    catalog = make_catalog(**{**create_setup.traits})
    creator = EnvironmentCreator(catalog, host_cuda=no_driver)
    yml = create_setup.environment_yml(["python", "pip", "gpuenv-demo"])
    plan = creator.plan(CreateRequest(read_environment_file(yml), name="listed"))
    job = CreateJob("create")
    done = threading.Event()
    job.listeners.append(lambda j: j.state != "running" and done.set())
    env = creator.run(plan, job)
    assert done.is_set() and job.state == "done"
    assert env is not None and env.kind == "conda" and env.name == "listed"
    assert job.environment_id == env.id
    assert env.python_version and env.python_executable
    prefix = creator.remove(env.id)
    assert prefix == create_setup.envs / "listed" and not prefix.exists()
    assert all(e.name != "listed" for e in catalog.list_environments_sync())
    assert create_setup.leftovers() == []
    assert os.environ["HOME"] == str(create_setup.home)


def test_a_killed_creates_staging_folder_is_swept_by_the_next_create(create_setup, make_catalog):
    """SIGKILL leaves the hidden staging folder; it is never listed, and the next create in
    that folder removes it (its process is gone), while a live process's is kept."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = create_setup.envs / f".old.gpuenv-creating-{dead.pid}-1"
    (abandoned / "conda-meta").mkdir(parents=True)
    live = create_setup.envs / f".busy.gpuenv-creating-{os.getpid()}-1"
    (live / "conda-meta").mkdir(parents=True)
    create(create_setup, create_setup.environment_yml(["gpuenv-lib"]))
    assert create_setup.leftovers() == [live.name, "demo"]
    listed = make_catalog(**create_setup.traits).list_environments_sync()
    assert [env.name for env in listed] == ["demo"]  # a create under way is never listed
