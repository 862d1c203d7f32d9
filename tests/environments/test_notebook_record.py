"""The record a saved notebook carries and the rules that find its environment again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jupyter_gpuenv.environments.fingerprint import environment_fingerprint
from jupyter_gpuenv.environments.model import Environment, environment_id, kernel_name_for
from jupyter_gpuenv.environments.notebook_record import (
    NotebookRecord,
    build_record,
    find_match,
    mismatch,
    missing_text,
    same_recorded_content,
)
from tests.support.fake_torch import TORCH_CU121

IMAGE_ID = "sha256:" + "ab" * 32


def env(kind, name, where, torch=None, cuda=None, image_id=None, python="3.11.9"):
    env_id = environment_id(kind, name, where)
    location = (
        {"image": f"{name}:latest", "image_id": image_id, "conda_env": None}
        if kind == "docker"
        else {"prefix": where}
    )
    return Environment(
        id=env_id,
        name=name,
        kind=kind,
        display_name=f"{name} ({kind})",
        kernel_name=kernel_name_for(env_id),
        location=location,
        python_version=python,
        python_executable=f"{where}/bin/python",
        torch_version=torch,
        cuda_version=cuda,
        cudnn_version="90100" if cuda else None,
        ipykernel=True,
    )


def no_fingerprint(_env):
    return None


def test_record_of_a_docker_environment_holds_no_host_path():
    image = env("docker", "trainer", "trainer", "2.9.0+cu121", "12.1", IMAGE_ID)
    image.python_executable = "/opt/conda/bin/python"
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    record = build_record(image, IMAGE_ID, ["NVIDIA A100-SXM4-40GB"] * 2, now=moment)

    assert record.to_json() == {
        "environment_id": image.id,
        "name": "trainer",
        "kind": "docker",
        "display_name": "trainer (docker)",
        "image": "trainer:latest",
        "image_id": IMAGE_ID,
        "python_version": "3.11.9",
        "torch_version": "2.9.0+cu121",
        "cuda_version": "12.1",
        "cudnn_version": "90100",
        "gpus": ["NVIDIA A100-SXM4-40GB"],
        "recorded_at": "2026-01-02T03:04:05Z",
        "fingerprint": IMAGE_ID,
    }


def test_record_of_a_conda_env_has_no_prefix(tmp_path):
    prefix = str(tmp_path / "envs" / "vision")
    record = build_record(env("conda", "vision", prefix, "2.9.0", "12.1"), "sha256:1", [])
    text = json.dumps(record.to_json())
    assert str(tmp_path) not in text and "/bin/python" not in text
    assert record.image is None and record.image_id is None


def test_unreadable_records_are_refused_and_odd_fields_dropped():
    assert NotebookRecord.from_json(None) is None
    assert NotebookRecord.from_json(["a"]) is None
    assert NotebookRecord.from_json({"name": "x", "kind": "conda"}) is None
    record = NotebookRecord.from_json(
        {
            "environment_id": "conda-x-1",
            "name": "x",
            "kind": "conda",
            "torch_version": {"evil": True},
            "gpus": ["A100", 3, "x" * 10_000],
            "cuda_version": 12.1,
            "unknown": "dropped",
        }
    )
    assert record is not None
    assert record.torch_version is None and record.cuda_version == "12.1"
    assert record.gpus == ["A100"] and record.display_name == "x"


def test_same_content_ignores_only_the_time():
    vision = env("conda", "vision", "/a", "2.9.0", "12.1")
    first = build_record(vision, "sha256:1", [], datetime(2026, 1, 1, tzinfo=UTC))
    later = build_record(vision, "sha256:1", [], datetime(2026, 2, 1, tzinfo=UTC))
    changed = build_record(vision, "sha256:2", [], datetime(2026, 2, 1, tzinfo=UTC))
    assert same_recorded_content(first.to_json(), later)
    assert not same_recorded_content(first.to_json(), changed)
    assert not same_recorded_content(None, later)


def test_rules_apply_strongest_first():
    recorded = env("docker", "trainer", "trainer", "2.9.0+cu121", "12.1", IMAGE_ID)
    record = build_record(recorded, IMAGE_ID, [])
    same_image = env("docker", "renamed", "renamed", "2.9.0+cu121", "12.1", IMAGE_ID)
    same_name = env("docker", "trainer", "trainer-2", "2.9.0+cu121", "12.1", "sha256:other")
    same_versions = env("conda", "other", "/o", "2.9.1", "12.1")
    cpu = env("conda", "cpu", "/c", "2.9.0+cpu", None)

    def rule(*candidates):
        match = find_match(record, candidates, no_fingerprint)
        return (match.rule, match.environment.name) if match else None

    assert rule(cpu, same_versions, same_name, same_image) == ("image_id", "renamed")
    assert rule(cpu, same_versions, same_name) == ("name_and_versions", "trainer")
    assert rule(cpu, same_versions) == ("torch_and_cuda", "other")
    assert rule(cpu) is None


def test_fingerprint_rule_asks_only_environments_of_the_same_kind():
    record = build_record(env("conda", "vision", "/a", "2.9.0", "12.1"), "sha256:vision", [])
    asked = []

    def fingerprint_of(candidate):
        asked.append(candidate.name)
        return "sha256:vision" if candidate.name == "copy" else None

    candidates = [env("venv", "v", "/v"), env("conda", "copy", "/b", "2.9.0", "11.8")]
    match = find_match(record, candidates, fingerprint_of)
    assert match is not None and (match.rule, match.environment.name) == ("fingerprint", "copy")
    assert match.exact and asked == ["copy"]


def test_a_record_without_torch_matches_only_by_content_or_name():
    record = build_record(env("venv", "plain", "/p"), "sha256:p", [])
    other = env("venv", "different", "/d")
    assert find_match(record, [other], no_fingerprint) is None
    match = find_match(record, [other, env("venv", "plain", "/q")], no_fingerprint)
    assert match is not None and match.rule == "name_and_versions" and not match.exact


def test_mismatch_and_missing_say_what_differs():
    record = build_record(env("conda", "vision", "/a", "2.9.0+cu121", "12.1"), None, [])
    running = env("docker", "torch", "torch", "2.13.0+cpu", None, IMAGE_ID)
    assert (
        mismatch(record, running)
        == "recorded with PyTorch 2.9 · CUDA 12.1, running PyTorch 2.13 · CPU"
    )
    assert mismatch(record, env("conda", "x", "/x", "2.9.1", "12.1")) is None
    text = missing_text(record)
    assert "vision (conda)" in text and "PyTorch 2.9 with CUDA 12.1" in text


@pytest.mark.parametrize("kind", ["conda", "venv"])
def test_fingerprint_is_the_same_for_the_same_packages_anywhere(
    tmp_path, kind, conda_prefix_factory, venv_factory
):
    def make(path, torch):
        if kind == "conda":
            return conda_prefix_factory(path, torch=torch)
        return venv_factory(path, ipykernel=False, torch=torch)

    here = make(tmp_path / "machine-a" / "vision", TORCH_CU121)
    there = make(tmp_path / "machine-b" / "renamed", TORCH_CU121)
    cpu = make(
        tmp_path / "machine-b" / "cpu", {**TORCH_CU121, "version": "2.9.0+cpu", "cuda": None}
    )

    def fp(path, name):
        return environment_fingerprint(env(kind, name, str(path)))

    first = fp(here, "vision")
    assert first and first.startswith("sha256:")
    assert fp(there, "renamed") == first
    assert fp(cpu, "cpu") != first
    assert fp(tmp_path / "missing", "gone") is None
