"""Admin policy: kernelspec requests against c.GpuEnv, and per-user GPU grants."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from jupyter_gpuenv.config import GpuEnv
from jupyter_gpuenv.environments.model import Environment, environment_id, kernel_name_for
from jupyter_gpuenv.errors import PolicyViolation
from jupyter_gpuenv.gpu_set import GpuSet
from jupyter_gpuenv.provisioning.policy.launch_policy import (
    DOCKER_KEYS,
    effective_gpus,
    enforce_policy,
    local_gpu_environment,
    user_gpu_grant,
)

TORCH_IMAGE = "lab/torch:2.13-cpu"
VISION_IMAGE = "lab/vision:1"


def make_config(**traits: object) -> GpuEnv:
    c = Config()
    c.GpuEnv.docker_images = {
        "torch": TORCH_IMAGE,
        "vision": {
            "image": VISION_IMAGE,
            "gpus": [0, 1],
            "mounts": ["/data:/data:ro"],
            "shm_size": "8g",
            "environment": {"OMP_NUM_THREADS": "4"},
        },
    }
    c.GpuEnv.restrict_to_configured_images = True
    for name, value in traits.items():
        setattr(c.GpuEnv, name, value)
    return GpuEnv(config=c)


def docker_env(name: str, image: str, settings: dict | None = None) -> Environment:
    env_id = environment_id("docker", name, name)
    return Environment(
        id=env_id,
        name=name,
        kind="docker",
        display_name=name,
        kernel_name=kernel_name_for(env_id),
        location={"image": image, "image_id": "sha256:" + "0" * 64, "conda_env": None},
        settings=settings or {},
    )


TORCH = docker_env("torch", TORCH_IMAGE)
VISION = docker_env("vision", VISION_IMAGE)
NO_GRANT: dict[str, str] = {}


def refusal(config: GpuEnv, env: Environment | None, requested: dict, **kw: object) -> str:
    with pytest.raises(PolicyViolation) as info:
        enforce_policy(config, env, requested, environ=kw.pop("environ", NO_GRANT), **kw)
    assert info.value.status == 403
    return info.value.message


def test_server_written_spec_passes_and_keeps_admin_gpus() -> None:
    launch = enforce_policy(make_config(), VISION, {"environment_id": VISION.id}, environ={})
    assert launch.image == VISION_IMAGE
    assert launch.gpus.to_json() == ["0", "1"]
    assert launch.overrides == {"environment_id": VISION.id}
    assert launch.notes == []


def test_repeating_admin_settings_is_not_a_widening() -> None:
    requested = {
        "environment_id": VISION.id,
        "image": VISION_IMAGE,
        "mounts": ["/data:/data:ro"],
        "shm_size": "8g",
        "environment": {"OMP_NUM_THREADS": "4"},
    }
    launch = enforce_policy(make_config(), VISION, requested, environ={})
    assert launch.overrides["mounts"] == ["/data:/data:ro"]


def test_unknown_image_is_refused_and_named() -> None:
    message = refusal(make_config(), None, {"image": "evil/miner:latest"}, kernel_name="mine")
    assert "'mine'" in message
    assert "evil/miner:latest" in message
    assert "lab/torch:2.13-cpu" in message and "lab/vision:1" in message


def test_configured_image_by_reference_is_allowed() -> None:
    launch = enforce_policy(make_config(), None, {"image": VISION_IMAGE}, environ={})
    assert launch.image == VISION_IMAGE
    assert launch.gpus.to_json() == ["0", "1"]  # the settings of the entry that image belongs to


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("mounts", ["/:/host"], "extra mounts"),
        ("volumes", {"/etc": {"bind": "/etc2"}}, "extra mounts"),
        ("cap_add", ["SYS_ADMIN"], "added capabilities"),
        ("privileged", True, "privileged mode"),
        ("user", "1234:1234", "a different user"),
        ("network_mode", "host", "a network change"),
        ("devices", ["/dev/fuse"], "host devices"),
        ("pid_mode", "host", "host PID namespace"),
        ("shm_size", "64g", "/dev/shm size"),
        ("made_up_key", 1, "may not change"),
    ],
)
def test_host_access_keys_are_refused_under_restriction(
    key: str, value: object, named: str
) -> None:
    message = refusal(make_config(), TORCH, {"environment_id": TORCH.id, key: value})
    assert named in message
    assert key in message


def test_every_refusal_is_listed_at_once() -> None:
    message = refusal(
        make_config(),
        TORCH,
        {"image": "x/y:1", "mounts": ["/:/host"], "cap_add": ["NET_ADMIN"], "privileged": True},
    )
    for part in ("x/y:1", "extra mounts", "added capabilities", "privileged mode"):
        assert part in message


@pytest.mark.parametrize(
    "user",
    [
        "root",
        "0",
        "0:0",
        "root:root",
        "+0",
        "00",
        "000:65534",
        "65534:0",
        "65534:00",
        "nobody:root",
    ],
)
def test_root_is_refused_even_without_restriction(user: str) -> None:
    """Judged on the numbers after parsing: every spelling of uid 0 or gid 0 is refused."""
    config = make_config(restrict_to_configured_images=False)
    message = refusal(config, TORCH, {"user": user})
    assert "docker_allow_root" in message or "neither" in message


@pytest.mark.parametrize("user", ["65534:42", "nobody:shadow", "65534:disk", "65534:27"])
def test_privileged_groups_are_refused(user: str) -> None:
    config = make_config(restrict_to_configured_images=False)
    assert "privileged group" in refusal(config, TORCH, {"user": user})


@pytest.mark.parametrize("user", [" 0", "0 ", "-1", "1e3", "0x0", "nobody:", ":0", "", [0], True])
def test_malformed_users_are_refused(user: object) -> None:
    config = make_config(restrict_to_configured_images=False, docker_allow_root=True)
    assert "user" in refusal(config, TORCH, {"user": user})


def test_root_needs_allow_root_and_is_passed_as_numbers() -> None:
    allowed = make_config(restrict_to_configured_images=False, docker_allow_root=True)
    launch = enforce_policy(allowed, TORCH, {"user": "root"}, environ={})
    assert launch.overrides["user"] == "0:0"


def test_unsupported_keys_are_refused_by_name() -> None:
    config = make_config(restrict_to_configured_images=False)
    requested = {"environment_id": TORCH.id, "privileged": True, "config": {}, "volumes": []}
    message = refusal(config, TORCH, requested, supported=DOCKER_KEYS)
    assert "does not support (config, privileged, volumes;" in message


def test_without_restriction_the_user_is_the_admin() -> None:
    config = make_config(restrict_to_configured_images=False)
    requested = {"image": "any/image:1", "mounts": ["/srv:/srv"], "cap_add": ["SYS_PTRACE"]}
    launch = enforce_policy(config, None, requested, environ={})
    assert launch.image == "any/image:1"
    assert launch.overrides == {"mounts": ["/srv:/srv"], "cap_add": ["SYS_PTRACE"]}


def test_label_discovered_image_is_refused_under_restriction() -> None:
    stray = docker_env("someone/else:1", "someone/else:1")
    assert "not in c.GpuEnv.docker_images" in refusal(make_config(), stray, {})


def test_same_name_with_another_image_is_not_the_admins_entry() -> None:
    impostor = docker_env("torch", "evil/torch:1")
    assert "not in c.GpuEnv.docker_images" in refusal(make_config(), impostor, {})


def test_narrowing_is_allowed_under_restriction() -> None:
    requested = {"gpus": [1], "cap_drop": ["ALL"], "privileged": False}
    launch = enforce_policy(make_config(), VISION, requested, environ={})
    assert launch.gpus.to_json() == ["1"]
    assert launch.overrides == {"cap_drop": ["ALL"], "privileged": False}


# --- per-user GPU grants -------------------------------------------------------------


def test_grant_comes_from_user_gpus_env_then_nvidia_visible_devices() -> None:
    config = make_config()
    both = {"GPUENV_GPUS": "2", "NVIDIA_VISIBLE_DEVICES": "all"}
    grant = user_gpu_grant(config, both)
    assert grant is not None and grant.to_json() == ["2"] and grant.source == "GPUENV_GPUS"
    grant = user_gpu_grant(config, {"NVIDIA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"})
    assert grant is not None and grant.to_json() == ["GPU-aa", "GPU-bb"]
    assert user_gpu_grant(config, {}) is None
    custom = make_config(user_gpus_env="HUB_GPUS")
    grant = user_gpu_grant(custom, {"HUB_GPUS": "none", "GPUENV_GPUS": "0"})
    assert grant is not None and grant.to_json() == "none"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("all", "all", "all"),
        ("all", ["1"], ["1"]),
        (["0", "1"], "all", ["0", "1"]),
        (["0", "1", "2"], ["2", "0"], ["0", "2"]),
        (["0"], ["1"], "none"),
        ("none", "all", "none"),
        ("all", "none", "none"),
        (["GPU-ABC"], ["gpu-abc"], ["GPU-ABC"]),
        (["01"], ["1"], ["01"]),
    ],
)
def test_intersect_gpus(first: object, second: object, expected: object) -> None:
    assert GpuSet.parse(first).intersect(GpuSet.parse(second)).to_json() == expected


def test_effective_gpus_is_admin_setting_within_grant() -> None:
    config = make_config(gpus=[0, 1, 2, 3])
    assert effective_gpus(config, None, {}).to_json() == ["0", "1", "2", "3"]
    assert effective_gpus(config, None, {"GPUENV_GPUS": "1,3,5"}).to_json() == ["1", "3"]
    assert effective_gpus(config, [0, 1], {"GPUENV_GPUS": "1,3"}).to_json() == ["1"]
    assert effective_gpus(config, "all", {"GPUENV_GPUS": "7"}).to_json() == ["7"]
    assert effective_gpus(config, None, {"GPUENV_GPUS": "none"}).to_json() == "none"
    no_gpu = make_config(gpus="none")
    assert effective_gpus(no_gpu, None, {"GPUENV_GPUS": "all"}).to_json() == "none"


def test_gpus_beyond_the_grant_are_refused() -> None:
    grant = {"GPUENV_GPUS": "1"}
    message = refusal(make_config(), VISION, {"gpus": [0, 1]}, environ=grant)
    assert "GPUs 0 beyond the grant GPUENV_GPUS=1" in message
    message = refusal(make_config(), TORCH, {"gpus": "GPU-x"}, environ={"GPUENV_GPUS": "none"})
    assert "GPU-x" in message and "no GPU" in message


def test_all_means_all_of_the_grant() -> None:
    launch = enforce_policy(make_config(), TORCH, {"gpus": "all"}, environ={"GPUENV_GPUS": "2"})
    assert launch.gpus.to_json() == ["2"]
    assert launch.gpus.nvidia_visible_devices() == "2"
    assert launch.notes == ["GPUs limited to 2 by GPUENV_GPUS=2"]


def test_grant_applies_without_restriction_too() -> None:
    config = make_config(restrict_to_configured_images=False)
    assert "beyond the grant" in refusal(config, TORCH, {"gpus": [3]}, environ={"GPUENV_GPUS": "0"})


def test_no_gpu_hides_every_gpu_from_the_nvidia_runtime() -> None:
    launch = enforce_policy(make_config(), TORCH, {}, environ={"GPUENV_GPUS": ""})
    assert launch.gpus.to_json() == "none"
    assert launch.gpus.nvidia_visible_devices() == "void"


def test_nvidia_variables_cannot_bypass_the_grant() -> None:
    message = refusal(
        make_config(restrict_to_configured_images=False),
        TORCH,
        {"environment": {"NVIDIA_VISIBLE_DEVICES": "all", "FOO": "1"}},
        environ={"GPUENV_GPUS": "0"},
    )
    assert "NVIDIA_VISIBLE_DEVICES" in message
    launch = enforce_policy(make_config(), TORCH, {"environment": {"FOO": "1"}}, environ={})
    assert launch.overrides["environment"] == {"FOO": "1"}


def test_local_kernels_get_cuda_visible_devices() -> None:
    config = make_config(gpus="all")
    assert local_gpu_environment(config, None, {}) == {}
    assert local_gpu_environment(config, None, {"GPUENV_GPUS": "1,2"}) == {
        "CUDA_VISIBLE_DEVICES": "1,2"
    }
    assert local_gpu_environment(config, None, {"GPUENV_GPUS": "none"}) == {
        "CUDA_VISIBLE_DEVICES": ""
    }
    # In a container the NVIDIA runtime already narrowed and renumbered the GPUs: host
    # indexes would point at the wrong ones, UUIDs still name the right ones.
    in_container = {"GPUENV_GPUS": "1,2", "NVIDIA_VISIBLE_DEVICES": "1,2"}
    assert local_gpu_environment(config, None, in_container) == {}
    assert local_gpu_environment(config, None, {"NVIDIA_VISIBLE_DEVICES": "5"}) == {}
    by_uuid = {"GPUENV_GPUS": "GPU-a", "NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"}
    assert local_gpu_environment(config, None, by_uuid) == {"CUDA_VISIBLE_DEVICES": "GPU-a"}
    no_gpu = {"GPUENV_GPUS": "none", "NVIDIA_VISIBLE_DEVICES": "1"}
    assert local_gpu_environment(config, None, no_gpu) == {"CUDA_VISIBLE_DEVICES": ""}
    # A CUDA image's NVIDIA_VISIBLE_DEVICES=all is no narrowing.
    cuda_image = {"GPUENV_GPUS": "1", "NVIDIA_VISIBLE_DEVICES": "all"}
    assert local_gpu_environment(config, None, cuda_image) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_the_admins_allowlist_names_what_kernelspecs_may_set() -> None:
    """c.GpuEnv.kernel_env_allowlist: only those names; guarded names stay refused, and a
    value the admin's entry sets may be repeated."""
    config = make_config(
        restrict_to_configured_images=False, kernel_env_allowlist=["OMP_NUM_THREADS"]
    )
    launch = enforce_policy(config, TORCH, {"environment": {"OMP_NUM_THREADS": "4"}}, environ={})
    assert launch.overrides["environment"] == {"OMP_NUM_THREADS": "4"}
    message = refusal(config, TORCH, {"environment": {"PYTHONSTARTUP": "/x.py"}})
    assert "environment variable PYTHONSTARTUP (not among the names" in message
    assert "kernel_env_allowlist" in message
    guarded = make_config(kernel_env_allowlist=["LD_PRELOAD"])
    assert "LD_PRELOAD (it would change" in refusal(
        guarded, TORCH, {"environment": {"LD_PRELOAD": "/x.so"}}
    )
    # [] lets a kernelspec set nothing; None (the default) any unguarded name.
    assert "FOO" in refusal(
        make_config(kernel_env_allowlist=[]), TORCH, {"environment": {"FOO": "1"}}
    )
    assert enforce_policy(make_config(), TORCH, {"environment": {"FOO": "1"}}, environ={})
