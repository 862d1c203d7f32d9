"""The broker's REST API: thin handlers over KernelBroker, each for the Hub's caller only.

Every answer is JSON, errors included (``{"message": ...}``); identity comes from the
caller's token through the Hub (hub.py), never from the request's body or headers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tornado import web

from ..docker import labels
from ..errors import GpuEnvError
from ..gpu.sampler import GpuSampler, encode
from ..gpu.view import GpuView
from .hub import Caller, Forbidden, HubIdentity, Unauthenticated
from .kernel_record import signal_name
from .kernels import KernelBroker
from .rules import HubUser

MAX_BODY = 64 * 1024


@web.stream_request_body
class BrokerHandler(web.RequestHandler):
    """JSON in, JSON out; the caller is known before any method runs.

    Bodies are read as they arrive, after the caller is known and never beyond MAX_BODY:
    a stranger cannot make the broker hold large bodies while their token is checked.
    """

    caller: Caller
    _received: bytearray

    @property
    def broker(self) -> KernelBroker:
        return self.settings["broker"]

    @property
    def identity(self) -> HubIdentity:
        return self.settings["identity"]

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated API: no cookies, so no cross-site forms to defend against."""

    async def prepare(self) -> None:
        self._received = bytearray()
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            raise web.HTTPError(413, f"The request body is larger than {MAX_BODY} bytes.")
        self.request.connection.set_max_body_size(MAX_BODY)  # type: ignore[union-attr]
        try:
            self.caller = await self.identity.caller(self.request.headers.get("Authorization"))
        except Unauthenticated as err:
            raise web.HTTPError(401, str(err)) from err
        except Forbidden as err:
            raise web.HTTPError(403, str(err)) from err
        except web.HTTPError as err:  # HubAuth: the Hub did not answer
            raise web.HTTPError(
                503, f"The Hub cannot check the token now: {err.log_message or err.reason}"
            ) from err

    def hub_user(self) -> HubUser:
        try:
            return self.broker.user(self.caller.name, list(self.caller.groups))
        except GpuEnvError as err:
            raise web.HTTPError(err.status, err.message) from err

    def data_received(self, chunk: bytes) -> None:
        if len(self._received) + len(chunk) > MAX_BODY:
            raise web.HTTPError(413, f"The request body is larger than {MAX_BODY} bytes.")
        self._received += chunk

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(bytes(self._received) or b"{}")
        except ValueError as err:
            raise web.HTTPError(400, f"The request body is not JSON: {err}") from err
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The request body must be a JSON object.")
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            err = exc_info[1]
            if isinstance(err, web.HTTPError) and err.log_message:
                message = err.log_message % err.args if err.args else err.log_message
            elif isinstance(err, GpuEnvError):
                message = err.message
            elif status_code >= 500:
                message = f"The broker failed: {type(err).__name__}: {err}"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GpuEnvError) and not isinstance(e, web.HTTPError):
            if e.status >= 500:
                self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class WhoAmIHandler(BrokerHandler):
    async def get(self) -> None:
        user = self.hub_user()
        self.reply(
            {
                "name": user.name,
                "groups": list(user.groups),
                "uid": user.uid,
                "gid": user.gid,
                "policy": self.broker.rules_of(user).to_json(),
            }
        )


class EnvironmentsHandler(BrokerHandler):
    async def get(self) -> None:
        user = self.hub_user()
        self.reply({"environments": self.broker.environments(user)})


class KernelsHandler(BrokerHandler):
    async def get(self) -> None:
        kernels = self.broker.kernels_of(self.caller.name)
        self.reply({"kernels": [k.to_json(await self.broker.state(k)) for k in kernels]})

    async def post(self) -> None:
        user = self.hub_user()
        body = self.body()
        if await self.identity.server_running(user.name, recent=True) is False:
            raise web.HTTPError(
                409, f"{user.name} has no running server: kernels are started by one's server."
            )
        self.reply(await self.broker.start(user, body), status=201)


class KernelHandler(BrokerHandler):
    async def get(self, kernel_id: str) -> None:
        kernel = self.broker.of(self.caller.name, kernel_id)
        self.reply(kernel.to_json(await self.broker.state(kernel)))

    async def delete(self, kernel_id: str) -> None:
        await self.broker.stop(self.broker.of(self.caller.name, kernel_id))
        self.set_status(204)
        self.finish()


class SignalHandler(BrokerHandler):
    async def post(self, kernel_id: str) -> None:
        kernel = self.broker.of(self.caller.name, kernel_id)
        await self.broker.signal(kernel, signal_name(self.body().get("signal", "SIGINT")))
        self.reply({"kernel_id": kernel.kernel_id, "signalled": True})


class LogsHandler(BrokerHandler):
    async def get(self, kernel_id: str) -> None:
        kernel = self.broker.of(self.caller.name, kernel_id)
        self.reply({"kernel_id": kernel.kernel_id, "logs": await self.broker.logs(kernel)})


class GpusHandler(BrokerHandler):
    """The host's GPUs with the caller's kernel processes; others' only counted."""

    async def get(self) -> None:
        sampler: GpuSampler = self.settings["sampler"]
        sample = await sampler.current()
        snapshot = copy.deepcopy(sample.snapshot)
        container_labels = getattr(sampler.attributor, "container_labels", None)
        own = {k.container_id for k in self.broker.kernels_of(self.caller.name)}
        for process in snapshot.processes():
            found: dict[str, str] | None = None
            if process.container_id and container_labels is not None:
                found = container_labels(process.container_id)
            process.own = bool(
                found
                and found.get(labels.USER) == self.caller.name
                and any(_same_container(process.container_id, c) for c in own)
            )
        view = GpuView(show_all=False).apply(snapshot)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(encode(view).body)


def _same_container(seen: str | None, known: str) -> bool:
    return bool(seen) and (known.startswith(seen or "") or (seen or "").startswith(known))


class NotFoundHandler(BrokerHandler):
    async def prepare(self) -> None:
        raise web.HTTPError(404, f"No broker API at {self.request.path}.")


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    base = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    kernel = r"api/kernels/([^/]+)"
    return [
        (base + "api/whoami", WhoAmIHandler),
        (base + "api/environments", EnvironmentsHandler),
        (base + "api/kernels", KernelsHandler),
        (base + kernel, KernelHandler),
        (base + kernel + "/signal", SignalHandler),
        (base + kernel + "/logs", LogsHandler),
        (base + "api/gpus", GpusHandler),
        (r".*", NotFoundHandler),
    ]
