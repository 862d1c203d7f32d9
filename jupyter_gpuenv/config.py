"""Every admin-facing setting of jupyter-gpuenv, in one traitlets configurable.

Admins write ``c.GpuEnv.<trait>`` in ``jupyter_server_config.py`` (or the JSON
equivalent); the server extension, the kernel provisioners and the ``jupyter gpuenv``
command all read the same object, so configuration happens once.
"""

from __future__ import annotations

import os
import re
from typing import Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    TraitType,
    Unicode,
    default,
    validate,
)
from traitlets.config import LoggingConfigurable

from .gpu_set import GpuSet, GpuSetError

DOCKER_ENTRY_KEYS = {
    "image",
    "display_name",
    "gpus",
    "mounts",
    "environment",
    "mem_limit",
    "cpus",
    "shm_size",
    "conda_env",
}


ENTRY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "display_name": ((str,), "a string"),
    "mounts": ((list, dict), "a list of mounts or a dict host path -> container path"),
    "environment": ((dict, list), "a dict of variables or a list of KEY=VALUE strings"),
    "mem_limit": ((str, int), 'a size such as "16g" or a number of bytes'),
    "cpus": ((int, float), "a number of CPUs"),
    "shm_size": ((str, int), 'a size such as "8g" or a number of bytes'),
    "conda_env": ((str,), "the name of a conda env inside the image"),
}


def docker_entry_problem(entry: Any) -> str | None:
    """What one docker_images entry was expected to be, or None when it is valid."""
    if isinstance(entry, str):
        return None if entry.strip() else "a non-empty image reference"
    if not isinstance(entry, dict) or "image" not in entry:
        return "an image reference or a dict with an 'image' key"
    if not isinstance(entry["image"], str) or not entry["image"].strip():
        return "'image': a non-empty image reference"
    unknown = set(entry) - DOCKER_ENTRY_KEYS
    if unknown:
        return f"keys among {sorted(DOCKER_ENTRY_KEYS)}, not {sorted(map(str, unknown))}"
    for key, (types, text) in ENTRY_TYPES.items():
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"{key!r}: {text}"
    if "gpus" in entry:
        try:
            GpuSet.parse(entry["gpus"])
        except GpuSetError as err:
            return f"'gpus': {GpuSetTrait.info_text} ({err})"
    return None


WARM_ENTRY_KEYS = {"count", "preimport"}
_MODULE_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"


def warm_entry_problem(entry: Any) -> str | None:
    """What one warm_kernels entry was expected to be, or None when it is valid."""
    if not isinstance(entry, dict):
        return 'a dict like {"count": 1, "preimport": ["torch"]}'
    unknown = set(entry) - WARM_ENTRY_KEYS
    if unknown:
        return f"keys among {sorted(WARM_ENTRY_KEYS)}, not {sorted(map(str, unknown))}"
    count = entry.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 64:
        return "'count': a number of kernels from 0 to 64"
    modules = entry.get("preimport", [])
    if not isinstance(modules, list) or not all(
        isinstance(m, str) and re.fullmatch(_MODULE_NAME, m) for m in modules
    ):
        return '\'preimport\': a list of module names such as ["torch", "numpy"]'
    return None


class GpuSetTrait(TraitType[GpuSet, Any]):
    """A trait holding a :class:`GpuSet`, set from "all", "none", ids or a count."""

    default_value = GpuSet()
    info_text = '"all", "none", a list of GPU indexes/UUIDs, or a count'

    def validate(self, obj: Any, value: Any) -> GpuSet:
        try:
            return GpuSet.parse(value)
        except GpuSetError as err:
            raise TraitError(f"c.GpuEnv.gpus: {err}") from err


class GpuEnv(LoggingConfigurable):
    """Which environments exist, which GPUs kernels get, and what users may do."""

    docker_images = Dict(
        default_value={},
        help="""Docker environments: name -> image reference, or name -> dict with keys
        image, display_name, gpus, mounts, environment, mem_limit, cpus, shm_size, conda_env.
        Example: {"torch": "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime",
                  "vision": {"image": "lab/vision:1", "gpus": [0], "shm_size": "8g"}}""",
    ).tag(config=True)

    docker_label_discovery = Bool(
        True,
        help="""Also list local images carrying the label org.jupyter.gpuenv.enable=true.
        Ignored when restrict_to_configured_images is True.""",
    ).tag(config=True)

    docker_discover_pytorch_images = Bool(
        True,
        help="""Also list local images that are PyTorch environments, judged from the image
        config alone (nothing is run): a PYTORCH_VERSION or NVIDIA_PYTORCH_VERSION
        variable (set by the official pytorch/pytorch and NGC images) or a repository
        named pytorch/pytorch or .../nvidia/pytorch. One entry per image, named from its
        repository and tag. Ignored when restrict_to_configured_images is True.""",
    ).tag(config=True)

    conda_envs_dirs = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""Folders whose subfolders are conda environments. The default (None) follows conda:
        envs_dirs from .condarc, $CONDA_ENVS_PATH, <root prefix>/envs from $CONDA_EXE or
        $CONDA_PREFIX, and ~/.conda/envs. Prefixes listed in ~/.conda/environments.txt are
        always included.""",
    ).tag(config=True)

    venv_dirs = List(
        Unicode(),
        help="""Folders whose subfolders are Python virtual environments (venv, virtualenv,
        uv): a prefix with pyvenv.cfg and bin/python. Default: ~/.virtualenvs and
        ~/.venvs when they exist.""",
    ).tag(config=True)

    pixi_project_dirs = List(
        Unicode(),
        help="""pixi projects, or folders holding pixi projects, whose installed
        environments (<project>/.pixi/envs/<env>, conda prefixes) are listed like conda
        environments: named after the project (<project>-<env> for an environment other
        than "default"). Empty by default.""",
    ).tag(config=True)

    gpus = GpuSetTrait(
        help="""GPUs given to kernels: "all", "none", a list of GPU indexes or UUIDs (MIG
        UUIDs included), or a count (any N GPUs, chosen by Docker or the scheduler). A
        per-environment "gpus" entry overrides it. On JupyterHub the per-user grant (see
        user_gpus_env) narrows it further.""",
    ).tag(config=True)

    docker_host = Unicode(
        help="""The Docker engine kernels and image probes use, e.g.
        unix:///var/run/docker.sock or tcp://manager:2376 (with DOCKER_TLS_VERIFY and
        DOCKER_CERT_PATH). Default: $DOCKER_HOST, else the local socket.""",
    ).tag(config=True)

    scheduler = CaselessStrEnum(
        ["docker", "swarm"],
        default_value="docker",
        help="""Where Docker kernels run. "docker": a container on docker_host. "swarm": a
        one-replica Docker Swarm service created through docker_host, which must then be a
        Swarm manager; Swarm picks the node and the GPUs (see docs/cluster.md).""",
    ).tag(config=True)

    swarm_gpu_resource = Unicode(
        "NVIDIA-GPU",
        help="""Swarm mode: the kind of node generic resource a kernel's GPU count reserves
        (node-generic-resources in each node's daemon.json).""",
    ).tag(config=True)

    gpu_wait_timeout = Float(
        600.0,
        help="""Swarm mode: seconds a kernel start waits for a node with enough free GPUs
        before it is refused.""",
    ).tag(config=True)

    swarm_allow_old_engine = Bool(
        False,
        help="""Swarm mode: start kernels even where the manager or a node runs a Docker
        Engine older than 25.0 (API 1.44), which cannot give a service no-new-privileges.
        Off (the default), such a start is refused with the engine's version. On, those
        kernels run without it: every capability is still dropped, but a setuid or setgid
        program in the image can change the kernel's user or group (to root of the
        container, say). Turn on only for images you trust.""",
    ).tag(config=True)

    probe_timeout = Float(
        60.0, help="Seconds one environment probe may take before it is reported as failed."
    ).tag(config=True)

    environment_create_dirs = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""Where `jupyter gpuenv create`, clone, remove and POST/DELETE
        /gpuenv/api/environments may create and remove conda environments. None (the
        default): anywhere the user can write, except on a JupyterHub user's server
        (hub_user set), where only under the user's home. A list: only under these folders
        (`~` is the user's home), on a Hub too. An empty list turns creating and removing
        environments off.""",
    ).tag(config=True)

    environment_create_cuda = Unicode(
        "",
        help="""CUDA version solved for when creating an environment and the request names
        none (the `__cuda` virtual package, like CONDA_OVERRIDE_CUDA), so GPU builds can be
        created on a CPU node. Empty: the host driver's CUDA version (NVML); "none": solve
        as a machine without CUDA.""",
    ).tag(config=True)

    environment_create_engine = CaselessStrEnum(
        ["auto", "conda", "mamba", "micromamba", "rattler"],
        default_value="auto",
        help="""What creates environments: "auto" uses a conda, mamba or micromamba CLI when
        one is installed ($CONDA_EXE, $MAMBA_EXE, PATH, the conda roots), so the user's
        .condarc, mirrors and credentials apply, else py-rattler; or name one.""",
    ).tag(config=True)

    notebook_record_spec = CaselessStrEnum(
        ["on", "off"],
        default_value="on",
        help="""Whether a notebook's environment record (metadata.gpuenv, written on save)
        carries the environment's `export --no-builds` environment.yml, so that `jupyter
        gpuenv restore` and the Lab can rebuild a conda or venv environment missing on
        another machine. "on" (the default) records it while it is at most
        notebook_record_spec_max_bytes; "off" never does. Docker environments record
        their image and digest instead.""",
    ).tag(config=True)

    notebook_record_spec_max_bytes = Integer(
        65536,
        help="""The largest environment.yml (bytes) a notebook's record carries; a larger
        one is left out so notebooks stay small (0: no limit). A typical PyTorch
        environment's --no-builds spec is 5-15 KB.""",
    ).tag(config=True)

    kernel_start_timeout = Float(
        60.0,
        help="""Seconds a kernel may take from container/process start to ready. Image
        work (building the ipykernel layer) is timed separately by image_build_timeout.""",
    ).tag(config=True)

    image_build_timeout = Float(
        900.0, help="Seconds the one-time ipykernel layer build of an image may take."
    ).tag(config=True)

    gpu_sample_interval = Float(
        2.0, help="Seconds between two NVML samples shared by all GPU status clients."
    ).tag(config=True)

    gpu_history_seconds = Float(
        600.0,
        help="""Seconds of GPU use kept in memory for charts and GET
        /gpuenv/api/gpus?history=SECONDS: one point per sample (gpu_sample_interval), at
        most gpu_history_seconds / gpu_sample_interval points. 0: keep no history.""",
    ).tag(config=True)

    gpu_idle_timeout = Float(
        0.0,
        allow_none=True,
        help="""Seconds a kernel may hold GPU memory while idle (no execution, no
        message) before the server shuts it down to free the GPU. 0 or None: never.""",
    ).tag(config=True)

    gpu_idle_warning = Float(
        300.0,
        help="""Seconds before an idle GPU kernel is shut down (c.GpuEnv.gpu_idle_timeout)
        that the Lab panel, the status bar and GET /gpuenv/api/kernels warn about it.""",
    ).tag(config=True)

    docker_allow_root = Bool(
        False,
        help="""Let kernelspecs ask for uid 0, gid 0 or a system group as their ``user``.
        Kernels otherwise run as the server's uid:gid (a root server: the notebook
        folder's owner, else uid 0 without capabilities), so files written into the
        notebook folder belong to whoever owns the server's files.""",
    ).tag(config=True)

    docker_environment_allowlist = List(
        Unicode(),
        default_value=["LANG", "LC_ALL", "TZ"],
        help="""Names of the server's environment variables passed into containers. Nothing
        else from the server's environment is passed; JUPYTERHUB_* variables and the
        server's tokens never are, even when listed. Per-environment "environment"
        entries are added explicitly.""",
    ).tag(config=True)

    kernel_env_allowlist = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""Names of the environment variables a kernelspec (or a broker request) may set
        for a Docker kernel. None (the default): any name but the guarded ones, which only
        the administrator's docker_images entries set: NVIDIA_* and DOCKER_RESOURCE_*
        (what the container runtime reads to pick GPUs) and the dynamic loader's LD_*. A
        list: only those names, guarded names still refused (e.g. ["PYTHONPATH",
        "OMP_NUM_THREADS"]; [] lets kernelspecs set none). Checked when a start is
        decided and again on the final container arguments.""",
    ).tag(config=True)

    restrict_to_configured_images = Bool(
        False,
        help="""Policy: only images named in docker_images may run, and user kernelspecs may
        not ask for other images, mounts, capabilities, privileges or networks.""",
    ).tag(config=True)

    user_gpus_env = Unicode(
        "GPUENV_GPUS",
        help="""Environment variable of the single-user server holding the user's GPU grant
        (comma-separated indexes or UUIDs, "all" or "none"), as set by the spawner.
        NVIDIA_VISIBLE_DEVICES is used when this one is unset.""",
    ).tag(config=True)

    show_all_gpu_processes = Bool(
        False,
        help="""Show every GPU and process in GPU status, not only the user's grant and
        the user's own kernels.""",
    ).tag(config=True)

    cuda_minor_version_compatibility = Bool(
        True,
        help="""Doctor: accept CUDA minor-version compatibility (a CUDA 12.x build on any
        12.x-capable driver >= the major's minimum).""",
    ).tag(config=True)

    block_incompatible = Bool(
        True,
        help="""Refuse to start a kernel in an environment the doctor judges an error for
        this host (the driver too old for the build's CUDA, no kernel image for the GPUs'
        compute capability), with the doctor's message and fix. False: start it anyway and
        show the warning in the kernel's first output.""",
    ).tag(config=True)

    warm_kernels = Dict(
        default_value={},
        help="""Kernels kept started ahead, per environment (catalog name or id): {"torch":
        {"count": 1, "preimport": ["torch"]}}. A kernel asked for in that environment's
        kernelspec is then handed out at once, moved to the notebook's folder; each warm
        kernel holds what a running kernel holds (memory, its GPUs). Docker (scheduler
        "docker") and conda/venv environments only; off by default (README: Warm kernels).""",
    ).tag(config=True)

    warm_kernel_max_age = Float(
        3600.0,
        help="""Seconds a warm kernel waits for a notebook before it is replaced by a fresh
        one (0: never replaced).""",
    ).tag(config=True)

    @validate("warm_kernel_max_age")
    def _validate_warm_kernel_max_age(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError("c.GpuEnv.warm_kernel_max_age: 0 or more seconds (0: never)")
        return float(proposal["value"])

    @validate("warm_kernels")
    def _validate_warm_kernels(self, proposal: Any) -> dict[str, Any]:
        for name, entry in proposal["value"].items():
            if not isinstance(name, str) or not name:
                raise TraitError("c.GpuEnv.warm_kernels: keys are environment names or ids")
            expected = warm_entry_problem(entry)
            if expected is not None:
                raise TraitError(f"c.GpuEnv.warm_kernels: entry {name!r} needs {expected}")
        return dict(proposal["value"])

    hub_user = Unicode(
        help="JupyterHub user name used to label containers; default $JUPYTERHUB_USER."
    ).tag(config=True)

    broker_url = Unicode(
        help="""JupyterHub with the kernel broker (docs/jupyterhub.md): the broker's URL,
        e.g. http://127.0.0.1:8890/services/gpuenv-broker/. Docker environments are then
        listed, started, signalled and stopped by the broker, authenticated with this
        server's $JUPYTERHUB_API_TOKEN, and this server needs no Docker access. Default:
        $GPUENV_BROKER_URL (set it through the spawner's environment).""",
    ).tag(config=True)

    @default("broker_url")
    def _broker_url_default(self) -> str:
        return os.environ.get("GPUENV_BROKER_URL", "")

    @validate("broker_url")
    def _check_broker_url(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if value and not value.startswith(("http://", "https://")):
            raise TraitError(f"broker_url must be an http:// or https:// URL, not {value!r}")
        return value if not value or value.endswith("/") else value + "/"

    @default("docker_host")
    def _docker_host_default(self) -> str:
        return os.environ.get("DOCKER_HOST", "")

    @default("hub_user")
    def _hub_user_default(self) -> str:
        return os.environ.get("JUPYTERHUB_USER", "")

    @default("venv_dirs")
    def _venv_dirs_default(self) -> list[str]:
        home = os.path.expanduser("~")
        return [p for p in (f"{home}/.virtualenvs", f"{home}/.venvs") if os.path.isdir(p)]

    rejected_docker_images = Dict(
        help="""docker_images entries left out because they are invalid: name -> (value,
        what was expected). Not a setting: filled when docker_images is set, so one bad
        entry is listed with its problem while the others keep working.""",
    )

    invalid_settings: List[Any] = List(
        help="""Settings of the configuration that were invalid and left at their default
        (SettingProblem records, filled by jupyter_gpuenv.config_check). Not a setting.""",
    )

    @validate("docker_images")
    def _validate_docker_images(self, proposal: Any) -> dict[str, Any]:
        valid: dict[str, Any] = {}
        rejected: dict[str, tuple[Any, str]] = {}
        for name, entry in proposal["value"].items():
            expected = docker_entry_problem(entry)
            if expected is None and isinstance(name, str) and name:
                valid[name] = entry
            else:
                rejected[str(name)] = (entry, expected or "a non-empty name")
        self.rejected_docker_images = rejected
        return valid

    def docker_entry(self, name: str) -> dict[str, Any]:
        """The normalised dict form of one docker_images entry."""
        entry = self.docker_images[name]
        return {"image": entry} if isinstance(entry, str) else dict(entry)

    def environment_gpus(self, settings: dict[str, Any] | None) -> GpuSet:
        """An environment's own "gpus" entry when it has one, else ``gpus``."""
        configured = (settings or {}).get("gpus")
        return GpuSet.parse(configured) if configured is not None else self.gpus


class GpuEnvBroker(LoggingConfigurable):
    """The kernel broker's rules (``c.GpuEnvBroker``), in the broker's own config file.

    The broker (``jupyter gpuenv broker``, a JupyterHub service) reads ``c.GpuEnv`` there
    too: its docker_images are the catalog these rules pick from.
    """

    default_policy = Dict(
        help="""Rules for every Hub user: environments (docker_images names, or "*"),
        max_kernels, max_gpus (at once), mounts ("host:container[:ro]", templated with
        {username}, {home}, {group}), notebook_roots (folders a notebook may run in;
        default ["{home}"]), mem_limit, cpus, shm_size.""",
    ).tag(config=True)

    group_policies = Dict(
        help="""Rules per Hub group (same keys as default_policy), added to the default:
        environments, mounts and notebook_roots add up, quotas take the largest.""",
    ).tag(config=True)

    user_policies = Dict(
        help="Rules per Hub user name; their max_kernels/max_gpus and limits decide.",
    ).tag(config=True)

    user_ids = Dict(
        help="""Hub user name -> "uid:gid" of their kernels, for users without a system
        account of the same name on this host.""",
    ).tag(config=True)

    min_uid = Integer(
        None,
        allow_none=True,
        help="""Lowest uid a Hub user's system account of the same name may have to run
        their kernels (accounts below are services). Default: UID_MIN of /etc/login.defs,
        else 1000. Hub users mapped in user_ids are not checked.""",
    ).tag(config=True)

    denied_groups = List(
        Unicode(),
        help="""Groups, besides root, sudo, wheel, adm, admin, docker, shadow, disk, lxd
        and libvirt, whose members' accounts never run kernels for a Hub user of the same
        name (map such users in user_ids).""",
    ).tag(config=True)

    kernel_ip = Unicode(
        "127.0.0.1",
        help="""Address kernels bind (host network). 127.0.0.1 serves single-user servers
        on this host (LocalProcessSpawner, SystemdSpawner).""",
    ).tag(config=True)

    instance_id = Unicode(
        help="""Stable id on this broker's containers: a restarted broker takes back those
        carrying it. Default: gpuenv-broker-<host name>.""",
    ).tag(config=True)

    server_check_interval = Float(
        15.0, help="Seconds between checks that each user with kernels still has a server."
    ).tag(config=True)

    hub_cache_seconds = Float(
        10.0,
        help="""Seconds the Hub's answers about a caller (their token, groups, running
        server) are used without asking again: a revoked token or a removed user works
        that much longer. 0 asks the Hub at every request.""",
    ).tag(config=True)

    require_encryption = Bool(
        True,
        help="""Start only kernels whose messages are encrypted (CurveZMQ): kernels listen on
        the host network, where any account could otherwise read their output. An image
        whose ipykernel cannot encrypt is refused with the reason.""",
    ).tag(config=True)

    @default("instance_id")
    def _instance_id_default(self) -> str:
        return f"gpuenv-broker-{os.uname().nodename}"
