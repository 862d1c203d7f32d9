"""Errors that carry the HTTP status and a message a person understands."""

from __future__ import annotations


class GpuEnvError(Exception):
    """Base error; ``status`` is the HTTP status the REST API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GpuEnvError):
    status = 400


class EnvironmentNotFound(GpuEnvError):
    status = 404


class DockerUnavailable(GpuEnvError):
    status = 503


class KernelStartError(GpuEnvError):
    """A kernel could not start; the message says why (daemon, image, ipykernel, GPU)."""

    status = 500


class PolicyViolation(GpuEnvError):
    status = 403
