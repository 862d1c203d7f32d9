"""``jupyter execute`` (nbclient's CLI) trains a small PyTorch model in a Docker env kernel."""

from __future__ import annotations

import re

import pytest
from nbformat.v4 import new_code_cell

from tests.clients.conftest import (
    containers_of,
    stream_text,
    unique_name,
    write_notebook,
)

TRAIN = """\
import os, torch
torch.manual_seed(0)
x = torch.linspace(-1, 1, 64).unsqueeze(1)
y = 3 * x + 0.5
model = torch.nn.Linear(1, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
first = None
for step in range(300):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    first = loss.item() if first is None else first
    loss.backward()
    optimizer.step()
print(f"first loss {first:.6f}")
print(f"final loss {loss.item():.6f}")
print(f"weight {model.weight.item():.4f} bias {model.bias.item():.4f}")
print("torch", torch.__version__, "env", os.environ["JUPYTER_GPUENV_ENVIRONMENT_ID"])
"""


@pytest.mark.docker
def test_jupyter_execute_trains_a_model_in_the_torch_image(
    docker_client, torch_cpu_image, jupyter_setup
):
    setup = jupyter_setup(docker_images={unique_name("clients-train"): torch_cpu_image})
    name, env_id = setup.kernel_of_kind("docker")
    notebook = write_notebook(setup.root / "train.ipynb", new_code_cell(TRAIN))
    executed = setup.root / "train-executed.ipynb"

    setup.run(
        "jupyter",
        "execute",
        f"--kernel_name={name}",
        "--startup_timeout=300",
        "--timeout=300",
        f"--output={executed.stem}",
        str(notebook),
    )

    text = stream_text(executed)
    first = float(re.search(r"first loss ([0-9.]+)", text).group(1))
    final = float(re.search(r"final loss ([0-9.]+)", text).group(1))
    assert final < 1e-3 < first, text
    weight, bias = map(float, re.search(r"weight ([-0-9.]+) bias ([-0-9.]+)", text).groups())
    assert abs(weight - 3) < 0.05 and abs(bias - 0.5) < 0.05, text
    assert f"torch 2.13.0+cpu env {env_id}" in text
    assert containers_of(docker_client, env_id) == []


@pytest.mark.docker
def test_a_failing_notebook_leaves_no_container(docker_client, python_kernel_image, jupyter_setup):
    setup = jupyter_setup(docker_images={unique_name("clients-broken"): python_kernel_image})
    name, env_id = setup.kernel_of_kind("docker")
    notebook = write_notebook(
        setup.root / "broken.ipynb",
        new_code_cell("print('before')"),
        new_code_cell("raise RuntimeError('gpuenv-broken-cell')"),
    )

    out = setup.run(
        "jupyter",
        "execute",
        f"--kernel_name={name}",
        "--startup_timeout=300",
        str(notebook),
        ok=False,
    )

    assert "gpuenv-broken-cell" in out
    assert containers_of(docker_client, env_id) == []
