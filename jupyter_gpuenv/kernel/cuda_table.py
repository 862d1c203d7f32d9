"""NVIDIA's published CUDA compatibility data, kept as data so it can be checked and updated.

Sources (Linux x86_64 columns):

* CUDA Toolkit release notes, "Table 3 CUDA Toolkit and Corresponding Driver Versions"
  and "Table 2 CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
  Compatibility" with its footnote on 450.80.02:
  https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html
* CUDA Compatibility guide, "Minor Version Compatibility" and its limits:
  https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html
  https://docs.nvidia.com/deploy/cuda-compatibility/index.html
* Binary (cubin) and PTX compatibility of compute capabilities:
  https://docs.nvidia.com/cuda/blackwell-compatibility-guide/index.html
  https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#compute-capabilities

What the data means:

* ``TOOLKIT_DRIVER_MINIMUM``: every row of Table 3 (GA and Updates). A build reports only
  its ``major.minor`` (``torch.version.cuda == "12.1"``), so the check uses the lowest
  driver any release (RC aside) of that minor needs: its GA row.
* ``MINOR_VERSION_COMPATIBILITY_FLOOR``: from CUDA 11 on, a build of any minor of a major
  family runs on a driver of the same family at or above this floor, "with limited
  feature-set". The limits the guide names: PTX JIT needs the full driver (PTX produced
  by a newer toolkit than the driver cannot be JIT-compiled, it fails with
  ``cudaErrorUnsupportedPtxVersion``), and APIs introduced after the driver's CUDA
  version are unavailable. Table 2 now prints the floors rounded (">= 525", ">= 450",
  ">= 580"); the exact Linux figures are the CUDA 12.0 GA minimum 525.60.13 and, per the
  table's footnote, the Tesla Recommended Driver 450.80.02 for 11.x.
* ``FIRST_TOOLKIT_FOR_ARCH``: the first CUDA release whose compiler targets a compute
  capability; used only to phrase fixes ("a build for sm_100 needs CUDA >= 12.8").

The driver's own CUDA version ("CUDA driver version", what ``nvidia-smi`` prints and
``nvmlSystemGetCudaDriverVersion`` returns as e.g. 12020) comes from NVML on a real host;
for a hypothetical host given only a driver version it is the newest minor whose minimum
driver is met (see ``checks.cuda_version_for_driver``).
"""

from __future__ import annotations

# (release as printed in Table 3, CUDA major.minor, minimum Linux x86_64 driver)
TOOLKIT_DRIVER_MINIMUM = (
    ("CUDA 13.2 Update 1", "13.2", "595.58.03"),
    ("CUDA 13.2 GA", "13.2", "595.45.04"),
    ("CUDA 13.1 Update 1", "13.1", "590.48.01"),
    ("CUDA 13.1 GA", "13.1", "590.44.01"),
    ("CUDA 13.0 Update 2", "13.0", "580.95.05"),
    ("CUDA 13.0 Update 1", "13.0", "580.82.07"),
    ("CUDA 13.0 GA", "13.0", "580.65.06"),
    ("CUDA 12.9 Update 1", "12.9", "575.57.08"),
    ("CUDA 12.9 GA", "12.9", "575.51.03"),
    ("CUDA 12.8 Update 1", "12.8", "570.124.06"),
    ("CUDA 12.8 GA", "12.8", "570.26"),
    ("CUDA 12.6 Update 3", "12.6", "560.35.05"),
    ("CUDA 12.6 Update 2", "12.6", "560.35.03"),
    ("CUDA 12.6 Update 1", "12.6", "560.35.03"),
    ("CUDA 12.6 GA", "12.6", "560.28.03"),
    ("CUDA 12.5 Update 1", "12.5", "555.42.06"),
    ("CUDA 12.5 GA", "12.5", "555.42.02"),
    ("CUDA 12.4 Update 1", "12.4", "550.54.15"),
    ("CUDA 12.4 GA", "12.4", "550.54.14"),
    ("CUDA 12.3 Update 1", "12.3", "545.23.08"),
    ("CUDA 12.3 GA", "12.3", "545.23.06"),
    ("CUDA 12.2 Update 2", "12.2", "535.104.05"),
    ("CUDA 12.2 Update 1", "12.2", "535.86.09"),
    ("CUDA 12.2 GA", "12.2", "535.54.03"),
    ("CUDA 12.1 Update 1", "12.1", "530.30.02"),
    ("CUDA 12.1 GA", "12.1", "530.30.02"),
    ("CUDA 12.0 Update 1", "12.0", "525.85.12"),
    ("CUDA 12.0 GA", "12.0", "525.60.13"),
    ("CUDA 11.8 GA", "11.8", "520.61.05"),
    ("CUDA 11.7 Update 1", "11.7", "515.48.07"),
    ("CUDA 11.7 GA", "11.7", "515.43.04"),
    ("CUDA 11.6 Update 2", "11.6", "510.47.03"),
    ("CUDA 11.6 Update 1", "11.6", "510.47.03"),
    ("CUDA 11.6 GA", "11.6", "510.39.01"),
    ("CUDA 11.5 Update 2", "11.5", "495.29.05"),
    ("CUDA 11.5 Update 1", "11.5", "495.29.05"),
    ("CUDA 11.5 GA", "11.5", "495.29.05"),
    ("CUDA 11.4 Update 4", "11.4", "470.82.01"),
    ("CUDA 11.4 Update 3", "11.4", "470.82.01"),
    ("CUDA 11.4 Update 2", "11.4", "470.57.02"),
    ("CUDA 11.4 Update 1", "11.4", "470.57.02"),
    ("CUDA 11.4.0 GA", "11.4", "470.42.01"),
    ("CUDA 11.3.1 Update 1", "11.3", "465.19.01"),
    ("CUDA 11.3.0 GA", "11.3", "465.19.01"),
    ("CUDA 11.2.2 Update 2", "11.2", "460.32.03"),
    ("CUDA 11.2.1 Update 1", "11.2", "460.32.03"),
    ("CUDA 11.2.0 GA", "11.2", "460.27.03"),
    ("CUDA 11.1.1 Update 1", "11.1", "455.32"),
    ("CUDA 11.1 GA", "11.1", "455.23"),
    ("CUDA 11.0.3 Update 1", "11.0", "450.51.06"),
    ("CUDA 11.0.2 GA", "11.0", "450.51.05"),
    ("CUDA 11.0.1 RC", "11.0", "450.36.06"),
    ("CUDA 10.2.89", "10.2", "440.33"),
    ("CUDA 10.1 (10.1.105 general release, and updates)", "10.1", "418.39"),
    ("CUDA 10.0.130", "10.0", "410.48"),
    ("CUDA 9.2 (9.2.148 Update 1)", "9.2", "396.37"),
    ("CUDA 9.2 (9.2.88)", "9.2", "396.26"),
    ("CUDA 9.1 (9.1.85)", "9.1", "390.46"),
    ("CUDA 9.0 (9.0.76)", "9.0", "384.81"),
    ("CUDA 8.0 (8.0.61 GA2)", "8.0", "375.26"),
    ("CUDA 8.0 (8.0.44)", "8.0", "367.48"),
    ("CUDA 7.5 (7.5.16)", "7.5", "352.31"),
    ("CUDA 7.0 (7.0.28)", "7.0", "346.46"),
)

# CUDA major -> lowest driver that runs every minor of it through minor-version
# compatibility (Table 2; CUDA 10 and older have no minor-version compatibility).
MINOR_VERSION_COMPATIBILITY_FLOOR = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580",
}

# Compute capability -> first CUDA release that can compile for it.
FIRST_TOOLKIT_FOR_ARCH = {
    "7.0": "9.0",
    "7.2": "10.0",
    "7.5": "10.0",
    "8.0": "11.0",
    "8.6": "11.1",
    "8.7": "11.4",
    "8.9": "11.8",
    "9.0": "11.8",
    "10.0": "12.8",
    "10.3": "12.9",
    "11.0": "13.0",
    "12.0": "12.8",
    "12.1": "12.9",
}
