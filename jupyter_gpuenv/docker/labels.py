"""Docker labels that mark kernel containers, and the opt-in image label.

Labels make Docker itself the record of which container runs which kernel: GPU
attribution, orphan cleanup and admins (``docker ps --filter label=...``) read them.
"""

from __future__ import annotations

PREFIX = "org.jupyter.gpuenv"

KERNEL_ID = f"{PREFIX}.kernel_id"
ENVIRONMENT_ID = f"{PREFIX}.environment_id"
SERVER_ID = f"{PREFIX}.server_id"
SERVER_PID = f"{PREFIX}.server_pid"
SERVER_HOST = f"{PREFIX}.server_host"
# Start time of SERVER_PID (clock ticks since boot, /proc/<pid>/stat field 22): a reused
# PID with another start time is not the same server.
SERVER_STARTED = f"{PREFIX}.server_started"
USER = f"{PREFIX}.user"
# JSON {target: "device:inode"}: the folders checked as the kernel's user at creation,
# compared with what Docker mounted before the kernel is handed out.
CHECKED_MOUNTS = f"{PREFIX}.checked_mounts"
ROLE = f"{PREFIX}.role"  # "kernel" | "probe" | "export" | "kernel-layer"

# Local images carrying IMAGE_ENABLE=true are listed as environments.
IMAGE_ENABLE = f"{PREFIX}.enable"
IMAGE_DISPLAY_NAME = f"{PREFIX}.display_name"
IMAGE_CONDA_ENV = f"{PREFIX}.conda_env"
# Kernel-layer images derived from a user's image record the base image id.
LAYER_BASE_ID = f"{PREFIX}.layer_base_id"
