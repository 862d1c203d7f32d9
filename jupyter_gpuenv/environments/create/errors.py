"""What a create or remove can fail with, each with the HTTP status the REST API answers."""

from __future__ import annotations

from ...errors import GpuEnvError, PolicyViolation


class EnvironmentExists(GpuEnvError):
    """The name or prefix is taken; nothing was touched (409)."""

    status = 409


class NotCancellable(GpuEnvError):
    """The job has ended, or its environment is already made (409)."""

    status = 409


class SolveConflict(GpuEnvError):
    """The engine found no set of packages that satisfies the file; its reason, trimmed (422)."""

    status = 422


class CreateFailed(GpuEnvError):
    """Download, link or pip failed; the half-made prefix was removed (500)."""

    status = 500


class ChannelsUnreachable(CreateFailed):
    """A channel could not be read (network, mirror, malformed repodata): nothing was
    made, and the fault is upstream (502)."""

    status = 502


class CreateRefused(PolicyViolation):
    """Creating or removing there is not allowed by the admin's settings (403)."""
