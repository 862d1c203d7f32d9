"""--from-history: conda-meta/history parsed like conda's History.get_requested_specs_map."""

from __future__ import annotations

import pytest

from jupyter_gpuenv.environments.conda_history import (
    match_spec_str,
    requested_specs,
    spec_name,
    user_requests,
)

# str(MatchSpec(spec)) as conda writes it (conda/models/match_spec.py __str__).
MATCH_SPECS = [
    ("python=3.11", "python=3.11"),
    ("python=3.11.*", "python=3.11"),
    ("python 3.11*", "python=3.11"),
    ("numpy==1.26.4", "numpy==1.26.4"),
    ("numpy 1.26.4", "numpy==1.26.4"),
    ("numpy=1.26.4=py311h64a7726_0", "numpy==1.26.4=py311h64a7726_0"),
    ("numpy 1.26.4 py311h64a7726_0", "numpy==1.26.4=py311h64a7726_0"),
    ("numpy>=1.20", "numpy[version='>=1.20']"),
    ("numpy >=1.20,<2", "numpy[version='>=1.20,<2']"),
    ("numpy[version='>=1.20']", "numpy[version='>=1.20']"),
    ("numpy!=1.8", "numpy!=1.8"),
    ("pytorch::pytorch", "pytorch::pytorch"),
    ("pytorch::pytorch=2.9.0", "pytorch::pytorch=2.9.0"),
    ("conda-forge/linux-64::numpy", "conda-forge/linux-64::numpy"),
    ("numpy *", "numpy"),
    ("numpy", "numpy"),
]


@pytest.mark.parametrize(("spec", "expected"), MATCH_SPECS)
def test_match_spec_strings(spec: str, expected: str) -> None:
    assert match_spec_str(spec) == expected


@pytest.mark.parametrize(
    ("spec", "name"),
    [("numpy>=1", "numpy"), ("conda-forge::py-opencv=4", "py-opencv"), ("a[build=x]", "a")],
)
def test_spec_names(spec: str, name: str) -> None:
    assert spec_name(spec) == name


HISTORY = """\
==> 2026-01-01 10:00:00 <==
# cmd: /opt/conda/bin/conda create -n vision python=3.11 numpy
# conda version: 24.11.3
+conda-forge/linux-64::python-3.11.7-hab00c5b_0_cpython
+conda-forge/linux-64::numpy-1.26.4-py311h64a7726_0
# update specs: ['python=3.11', 'numpy']
==> 2026-01-02 10:00:00 <==
# cmd: /opt/conda/bin/conda install -c pytorch pytorch=2.9 scipy
# conda version: 24.11.3
+pytorch/linux-64::pytorch-2.9.0-py3.11_cuda12.1_cudnn9.1.0_0
# update specs: ['pytorch::pytorch=2.9', 'scipy']
==> 2026-01-03 10:00:00 <==
# cmd: /opt/conda/bin/conda remove scipy
# conda version: 24.11.3
# remove specs: ['scipy']
==> 2026-01-04 10:00:00 <==
# conda version: 24.11.3
# update specs: ['ignored-without-cmd']
==> 2026-01-05 10:00:00 <==
# cmd: conda install numpy>=1.26
# install specs: numpy >=1.26,<2.0,tqdm
==> 2026-01-06 10:00:00 <==
# cmd: conda update python
# neutered specs: ['python=3.11']
"""


def test_requested_specs_follow_conda_order_and_removals() -> None:
    installed = ["python", "numpy", "pytorch", "tqdm", "ignored-without-cmd"]
    # numpy keeps its first position when updated; scipy is removed; the block without
    # a "# cmd:" line does not count; old "install specs" use conda < 4.5 syntax.
    assert requested_specs(HISTORY, installed) == [
        "python=3.11",
        "numpy[version='>=1.26,<2.0']",
        "pytorch::pytorch=2.9",
        "tqdm",
    ]


def test_requested_specs_leave_out_packages_no_longer_installed() -> None:
    assert requested_specs(HISTORY, ["python"]) == ["python=3.11"]


def test_user_requests_need_a_cmd_line() -> None:
    requests = user_requests(HISTORY)
    assert len(requests) == 5
    assert requests[2] == {"remove_specs": ["scipy"]}


def test_no_history_means_no_specs() -> None:
    assert requested_specs(None, ["python"]) == []
    assert requested_specs("", ["python"]) == []
