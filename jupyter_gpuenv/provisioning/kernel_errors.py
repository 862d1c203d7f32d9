"""Start failures and refusals whose message reaches the user through jupyter_server."""

from __future__ import annotations

from tornado.web import HTTPError

from ..errors import DockerUnavailable, GpuEnvError, KernelStartError, PolicyViolation


class KernelStartFailed(KernelStartError, HTTPError):
    """A start failure whose message reaches the user.

    jupyter_server answers any exception that is not a tornado ``HTTPError`` with
    "Unhandled error", hiding the reason; being both keeps our error type and shows the
    message in the REST reply and the Lab dialog.
    """

    def __init__(self, message: str) -> None:
        KernelStartError.__init__(self, message)
        # tornado >= 6.5 makes log_message read-only: it must come through __init__.
        HTTPError.__init__(self, 500, message, reason="Kernel start failed")

    def __str__(self) -> str:
        return self.message


class KernelRefused(PolicyViolation, HTTPError):
    """A policy refusal (403) whose message reaches the user, like KernelStartFailed."""

    def __init__(self, message: str) -> None:
        PolicyViolation.__init__(self, message)
        HTTPError.__init__(self, 403, message, reason="Kernel refused by policy")

    def __str__(self) -> str:
        return self.message


class KernelDisconnected(DockerUnavailable, HTTPError):
    """Docker does not answer, so the kernel's container cannot be reached: a 503."""

    def __init__(self, message: str) -> None:
        DockerUnavailable.__init__(self, message)
        HTTPError.__init__(self, 503, message, reason="Kernel disconnected from Docker")

    def __str__(self) -> str:
        return self.message


class SignalNotDelivered(GpuEnvError, HTTPError):
    """The runtime cannot deliver that signal to the kernel (409): it ended meanwhile, or a
    signal cannot cross to the node it runs on."""

    status = 409

    def __init__(self, message: str) -> None:
        GpuEnvError.__init__(self, message)
        HTTPError.__init__(self, 409, message, reason="Signal not delivered")

    def __str__(self) -> str:
        return self.message
