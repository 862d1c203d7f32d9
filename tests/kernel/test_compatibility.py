"""The doctor's verdicts on real published data points (NVIDIA's tables, real arch lists)."""

from __future__ import annotations

import pytest

from jupyter_gpuenv.kernel.compatibility import ERROR, OK, WARNING, GpuInfo, HostInfo, evaluate

# torch.cuda.get_arch_list() of the PyTorch 2.x cu121 wheels: cubins only, no PTX.
CU121_ARCHS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def torch_env(cuda="12.1", archs=None, kind="conda", cudnn="90100", **extra):
    env = {
        "kind": kind,
        "torch_version": f"2.9.0+cu{cuda.replace('.', '')}" if cuda else "2.9.0+cpu",
        "cuda_version": cuda,
        "cudnn_version": cudnn if cuda else None,
        "torch_arch_list": CU121_ARCHS if archs is None else archs,
    }
    env.update(extra)
    return env


def host(driver=None, cc=None, **kwargs):
    return HostInfo.hypothetical_host(driver, cc, **kwargs)


def severities(result, predicate):
    return [f.severity for f in result.findings if predicate(f)]


def driver_finding(result):
    found = [f for f in result.findings if "build" in f.message and "driver" in f.message]
    assert len(found) == 1, result.to_json()
    return found[0]


@pytest.mark.parametrize(
    ("cuda", "driver", "severity", "fix_part"),
    [
        # CUDA 12.1: GA minimum 530.30.02; 12.x minor-version compatibility from 525.60.13.
        ("12.1", "470.82.01", ERROR, "upgrade the driver to ≥ 530.30.02"),
        ("12.1", "525.60.13", WARNING, "upgrade the driver to ≥ 530.30.02"),
        ("12.1", "530.30.02", OK, None),
        ("12.1", "535.54.03", OK, None),
        # CUDA 11.8: GA minimum 520.61.05; 11.x minor-version compatibility from 450.80.02.
        ("11.8", "450.80.02", WARNING, "upgrade the driver to ≥ 520.61.05"),
        ("11.8", "450.51.06", ERROR, "upgrade the driver to ≥ 520.61.05"),
        ("11.8", "520.61.05", OK, None),
        # Newer drivers keep running older builds (backward compatibility).
        ("11.8", "580.65.06", OK, None),
        ("12.4", "550.54.14", OK, None),
        ("12.6", "560.28.03", OK, None),
        ("12.8", "570.26", OK, None),
        ("12.8", "560.35.05", WARNING, "upgrade the driver to ≥ 570.26"),
        # CUDA 13 starts a new major: a 12.x driver cannot run it at all.
        ("13.0", "575.57.08", ERROR, "upgrade the driver to ≥ 580.65.06"),
        ("13.0", "580.65.06", OK, None),
    ],
)
def test_cuda_runtime_against_driver(cuda, driver, severity, fix_part):
    result = evaluate(torch_env(cuda=cuda, archs=["sm_80"]), host(driver, "8.0"))
    finding = driver_finding(result)
    assert finding.severity == severity, finding
    if fix_part:
        assert finding.fix.startswith(fix_part), finding.fix
    else:
        assert finding.fix is None
    assert result.verdict == severity


def test_driver_error_names_both_fixes_and_the_drivers_cuda():
    result = evaluate(torch_env(kind="docker"), host("470.82.01", "8.6"))
    finding = driver_finding(result)
    assert "needs driver ≥ 530.30.02" in finding.message
    assert "≥ 525.60.13 through minor-version compatibility" in finding.message
    assert "470.82.01 (CUDA 11.4)" in finding.message
    assert finding.fix == "upgrade the driver to ≥ 530.30.02, or use an image built for CUDA ≤ 11.4"


def test_minor_version_compatibility_can_be_refused_by_the_admin():
    result = evaluate(torch_env(), host("525.60.13", "8.6"), minor_version_compatibility=False)
    assert driver_finding(result).severity == ERROR


def test_the_drivers_cuda_version_is_derived_for_a_hypothetical_host():
    assert host("470.82.01").cuda_driver_version == "11.4"
    assert host("525.60.13").cuda_driver_version == "12.0"
    assert host("535.54.03").cuda_driver_version == "12.2"
    assert host("580.65.06").cuda_driver_version == "13.0"
    assert host("450.80.02").cuda_driver_version == "11.0"


def test_nvml_cuda_version_decides_when_the_driver_number_is_unknown():
    # A host where NVML gave the CUDA driver version but not the driver string.
    real = HostInfo(cuda_driver_version="12.0", gpus=[GpuInfo(0, "A10", None, "8.6")])
    assert driver_finding(evaluate(torch_env(cuda="12.1"), real)).severity == WARNING
    real = HostInfo(cuda_driver_version="11.4", gpus=[GpuInfo(0, "A10", None, "8.6")])
    assert driver_finding(evaluate(torch_env(cuda="12.1"), real)).severity == ERROR


def arch_findings(result):
    return [f for f in result.findings if f.message.startswith("GPU")]


@pytest.mark.parametrize(
    ("cc", "archs", "severity", "expect"),
    [
        # Same major, higher minor runs older cubins of that major.
        ("8.6", ["sm_80"], OK, "sm_80 kernels (compatible)"),
        ("8.6", ["sm_80", "compute_80"], OK, "sm_80 kernels (compatible)"),
        ("8.6", CU121_ARCHS, OK, "sm_86 kernels (native)"),
        # PTX JIT-compiles to any GPU of at least its capability.
        ("8.6", ["compute_80"], OK, "JIT-compiles them from compute_80"),
        ("12.0", ["sm_80", "sm_90", "compute_90"], OK, "JIT-compiles them from compute_90"),
        # Cubins never cross a major version, nor go down a minor.
        ("8.0", ["sm_86"], ERROR, "no kernel image for sm_80 in this build (has sm_86)"),
        ("9.0", ["sm_80", "sm_86"], ERROR, "no kernel image for sm_90"),
        ("12.0", CU121_ARCHS, ERROR, "no kernel image for sm_120 in this build"),
        (
            "10.0",
            ["sm_70", "sm_80", "sm_90"],
            ERROR,
            "no kernel image for sm_100 in this build (has sm_70, sm_80, sm_90)",
        ),
        # PTX does not go down either; arch-specific variants run on exactly their GPU.
        ("7.5", ["compute_80"], ERROR, "no kernel image for sm_75"),
        ("9.0", ["sm_90a"], OK, "sm_90a kernels (native)"),
        ("10.0", ["sm_90a", "compute_90a"], ERROR, "no kernel image for sm_100"),
        ("10.3", ["sm_100f"], OK, "sm_100f kernels (compatible)"),
    ],
)
def test_compute_capability_against_arch_list(cc, archs, severity, expect):
    result = evaluate(torch_env(archs=archs), host("580.65.06", cc))
    (finding,) = arch_findings(result)
    assert finding.severity == severity, finding
    assert expect in finding.message, finding.message
    assert f"compute capability {cc}" in finding.message


def test_missing_arch_fix_points_at_a_newer_cuda_for_new_gpus():
    result = evaluate(torch_env(archs=["sm_70", "sm_80", "sm_90"]), host("580.65.06", "10.0"))
    (finding,) = arch_findings(result)
    assert finding.fix == "install a PyTorch build for sm_100 (CUDA ≥ 12.8)"
    result = evaluate(torch_env(archs=["sm_75", "sm_120"], kind="docker"), host("580.65.06", "6.1"))
    (finding,) = arch_findings(result)
    assert "older CUDA" in finding.fix and finding.fix.startswith("use an image built for sm_61")


def test_ptx_jit_is_an_error_under_minor_version_compatibility():
    # PTX from the CUDA 12.1 compiler cannot be JIT-compiled by a CUDA 12.0 driver.
    result = evaluate(torch_env(archs=["compute_80"]), host("525.60.13", "8.6"))
    (finding,) = arch_findings(result)
    assert finding.severity == ERROR
    assert "needs PTX JIT from compute_80" in finding.message
    assert finding.fix == "upgrade the driver to ≥ 530.30.02"
    # A cubin for the GPU needs no JIT: minor-version compatibility is enough.
    result = evaluate(torch_env(archs=["sm_86"]), host("525.60.13", "8.6"))
    assert result.verdict == WARNING


def test_gpus_of_several_capabilities_are_checked_each():
    gpus = [
        GpuInfo(0, "A100", None, "8.0"),
        GpuInfo(1, "H100", None, "9.0"),
        GpuInfo(2, "A100", None, "8.0"),
    ]
    real = HostInfo(driver_version="550.54.14", gpus=gpus)
    result = evaluate(torch_env(archs=["sm_80"]), real)
    messages = [f.message for f in arch_findings(result)]
    assert messages[0].startswith("GPUs 0, 2 (A100, compute capability 8.0) runs")
    assert messages[1].startswith("GPU 1 (H100, compute capability 9.0): no kernel image for sm_90")
    # Only the GPUs the environment is given are checked.
    result = evaluate(torch_env(archs=["sm_80"]), real, requested_gpus=["0"])
    assert result.verdict == OK
    assert len(arch_findings(result)) == 1


def test_cpu_only_build_on_a_gpu_host_is_a_warning():
    result = evaluate(torch_env(cuda=None, archs=[]), host("535.54.03", "8.6"))
    assert result.verdict == WARNING
    (finding,) = result.findings
    assert (
        finding.message == "PyTorch 2.9.0+cpu is a CPU-only build: it cannot use this host's GPUs."
    )
    assert finding.fix == "install a PyTorch build for CUDA ≤ 12.2 to use the GPUs"


def test_cpu_build_on_a_cpu_host_is_fine():
    result = evaluate(torch_env(cuda=None, archs=[]), HostInfo())
    assert result.verdict == OK


def test_gpu_build_on_a_host_without_gpu_works_on_the_cpu():
    no_gpu = HostInfo(reason="libnvidia-ml.so not found: no NVIDIA driver on this machine")
    result = evaluate(torch_env(), no_gpu)
    assert result.verdict == WARNING
    assert severities(result, lambda f: "CPU only" in f.message) == [WARNING]
    assert "libnvidia-ml.so not found" in result.headline()
    # Configured without GPUs says so instead.
    result = evaluate(torch_env(), host("535.54.03", "8.6"), requested_gpus="none")
    assert result.verdict == WARNING
    assert "configured without GPUs" in result.headline()


def test_missing_cudnn():
    result = evaluate(torch_env(cudnn=None), host("535.54.03", "8.6"))
    assert result.verdict == WARNING
    (finding,) = [f for f in result.findings if "cuDNN" in f.message]
    assert finding.fix.startswith("install cuDNN for CUDA 12 (pip install nvidia-cudnn-cu12")
    # When the probe could not import torch, cuDNN is unknown rather than missing.
    result = evaluate(
        torch_env(cudnn=None, problems=["import torch failed: libcudart.so.12: not found"]),
        host("535.54.03", "8.6"),
    )
    assert result.verdict == OK
    # cuDNN 8 encodes its version differently from cuDNN 9.
    result = evaluate(torch_env(cudnn="8902"), host("535.54.03", "8.6"))
    assert any(f.message.startswith("cuDNN 8.9.2") for f in result.findings)


@pytest.mark.parametrize(
    ("cuda", "runtime", "has_gpu", "expected"),
    [
        ("12.1", False, True, ERROR),
        (None, False, True, WARNING),
        ("12.1", True, True, OK),
        ("12.1", None, True, OK),  # Docker could not be asked: nothing said
    ],
)
def test_docker_environment_asking_for_gpus_without_nvidia_runtime(
    cuda, runtime, has_gpu, expected
):
    env = torch_env(cuda=cuda, archs=["sm_86"] if cuda else [], kind="docker")
    gpu_host = host("535.54.03", "8.6", docker_nvidia_runtime=runtime)
    result = evaluate(env, gpu_host)
    runtime_findings = [f for f in result.findings if "NVIDIA runtime" in f.message]
    if expected == OK:
        assert runtime_findings == []
    else:
        assert [f.severity for f in runtime_findings] == [expected]
        assert "nvidia-ctk runtime configure" in runtime_findings[0].fix
    # An environment configured without GPUs asks for none.
    assert not [
        f
        for f in evaluate(env, gpu_host, requested_gpus="none").findings
        if "NVIDIA runtime" in f.message
    ]


def test_environment_without_torch_is_informative_ok():
    result = evaluate({"kind": "venv", "torch_version": None}, host("535.54.03", "8.6"))
    assert result.verdict == OK
    assert result.to_json() == {
        "verdict": "ok",
        "findings": [
            {
                "severity": "ok",
                "message": "No PyTorch or CUDA runtime in this environment: nothing to check.",
                "fix": None,
            }
        ],
    }


def test_environment_objects_and_their_settings_are_read_like_dicts():
    from jupyter_gpuenv.environments.model import Environment

    env = Environment(
        id="docker-torch-1",
        name="torch",
        kind="docker",
        display_name="torch",
        kernel_name="gpuenv-docker-torch-1",
        location={"image": "torch:1"},
        torch_version="2.9.0+cu121",
        cuda_version="12.1",
        cudnn_version="90100",
        torch_arch_list=CU121_ARCHS,
        settings={"gpus": "none"},
    )
    result = evaluate(env, host("535.54.03", "8.6"))
    assert "configured without GPUs" in result.headline()


@pytest.mark.parametrize(
    ("driver", "cc"), [("latest", None), (None, "eight"), (None, "8"), ("5x5", "8.6")]
)
def test_hypothetical_host_rejects_unreadable_values(driver, cc):
    with pytest.raises(ValueError):
        host(driver, cc)


@pytest.mark.parametrize(
    "environment", [{"NVIDIA_VISIBLE_DEVICES": "all"}, ["LANG=C", "NVIDIA_VISIBLE_DEVICES=all"]]
)
def test_nvidia_visible_devices_asks_for_gpus_even_without_a_gpu_request(environment):
    env = torch_env(kind="docker", settings={"gpus": "none", "environment": environment})
    result = evaluate(env, host("535.54.03", "8.6", docker_nvidia_runtime=False))
    (finding,) = [f for f in result.findings if "NVIDIA runtime" in f.message]
    assert finding.message.startswith(
        "This image asks for GPUs (NVIDIA_VISIBLE_DEVICES=all), but Docker has no NVIDIA runtime"
    )
