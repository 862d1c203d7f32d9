"""The start registry: steps in order, one current step, how a start ends, filters."""

from __future__ import annotations

import uuid

from jupyter_gpuenv.provisioning import start_progress


def new_id() -> str:
    return f"registry-{uuid.uuid4().hex}"


def test_steps_end_as_the_next_begins_and_a_wait_says_what_for() -> None:
    start = start_progress.begin(new_id(), "env-a", "a", "a (docker)")
    start.step("image", "Checking the image x")
    start.step("gpu-wait", "Waiting for a free GPU", waiting_for="gpu")
    start.detail("2 kernels ahead")
    data = start.to_json()
    assert [s["key"] for s in data["steps"]] == ["image", "gpu-wait"]
    assert [s["state"] for s in data["steps"]] == ["done", "running"]
    assert data["steps"][1]["waiting_for"] == "gpu"
    assert data["steps"][1]["detail"] == "2 kernels ahead"
    assert data["state"] == "starting" and data["message"] == "Waiting for a free GPU"
    start.finish("Kernel ready in 1.0 s")
    data = start.to_json()
    assert data["state"] == "ready" and data["ended"] is not None
    assert [s["state"] for s in data["steps"]] == ["done", "done", "done"]
    start.fail("too late")  # an ended start stays as it ended
    assert start.to_json()["state"] == "ready"


def test_a_failure_marks_the_current_step_and_keeps_the_reason() -> None:
    start = start_progress.begin(new_id(), "env-b")
    start.step("kernel-layer-build", "Kernel layer: building the image")
    start.fail("Building the ipykernel layer failed: no space left")
    data = start.to_json()
    assert data["state"] == "failed"
    assert data["reason"] == "Building the ipykernel layer failed: no space left"
    last = data["steps"][-1]
    assert (last["key"], last["state"]) == ("kernel-layer-build", "failed")


def test_starts_are_found_by_kernel_and_by_environment_and_a_restart_replaces() -> None:
    kernel_id, env_id = new_id(), f"env-{uuid.uuid4().hex}"
    first = start_progress.begin(kernel_id, env_id)
    first.fail("gone")
    second = start_progress.begin(kernel_id, env_id)
    assert start_progress.starts(kernel_id=kernel_id) == [second]
    assert start_progress.starts(environment_id=env_id) == [second]
    assert start_progress.starts(kernel_id=kernel_id, environment_id="other") == []
