"""Who is calling, as the Hub says: the caller's token checked by the Hub, groups and
server state read with the broker's own token. Nothing of a request body or header
other than the token decides identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jupyterhub.services.auth import HubAuth
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

DEFAULT_SERVICE_NAME = "gpuenv-broker"


class Unauthenticated(Exception):
    """401: no token, or one the Hub does not know."""


class Forbidden(Exception):
    """403: a known user whose token lacks the broker's access scope."""


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...]


class HubIdentity:
    """Checks tokens with the Hub; reads users' groups and servers from it."""

    def __init__(self, cache_seconds: float = 30.0, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger(__name__)
        # HubAuth's own cache is not used: it keeps whole seconds only, and 0 (what an
        # admin writes for "ask every time") is forever there.
        self.auth = HubAuth()
        self.service_name = os.environ.get("JUPYTERHUB_SERVICE_NAME", DEFAULT_SERVICE_NAME)
        self.scope = f"access:services!service={self.service_name}"
        self.http = AsyncHTTPClient()
        self.cache_seconds = cache_seconds
        self._tokens: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._models: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def caller(self, authorization: str | None) -> Caller:
        """The Hub user behind ``Authorization: token ...``, with their Hub groups."""
        token = _token(authorization)
        if not token:
            raise Unauthenticated(
                "No token: send the single-user server's $JUPYTERHUB_API_TOKEN (or your Hub "
                "API token) as 'Authorization: token ...'."
            )
        model = await self.recent_token_model(token)
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            raise Unauthenticated("The Hub does not know this token (or it belongs to no user).")
        if not self.auth.check_scopes({self.scope}, model):
            raise Forbidden(
                f"Hub user {model['name']!r} may not use the kernel broker: the token lacks the "
                f"scope {self.scope}."
            )
        user = await self.recent_user_model(str(model["name"]))
        groups = user.get("groups") if user else model.get("groups")
        return Caller(str(model["name"]), tuple(str(g) for g in groups or ()))

    async def recent_token_model(self, token: str) -> dict[str, Any] | None:
        """The Hub's answer for ``token``, asked at most once per ``cache_seconds``: a
        token revoked (or a user removed) in the Hub works that much longer."""
        key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        model = await self.auth.user_for_token(token, use_cache=False, sync=False)
        self._tokens = self._recent(self._tokens, now)
        self._tokens[key] = (now, model)
        return model

    async def recent_user_model(self, name: str) -> dict[str, Any] | None:
        """``user_model``, asked of the Hub at most once per ``cache_seconds`` (a group
        change reaches the broker that much later), as the token itself is."""
        now = time.monotonic()
        cached = self._models.get(name)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        model = await self.user_model(name)
        self._models = self._recent(self._models, now)
        self._models[name] = (now, model)
        return model

    def _recent(
        self, cache: dict[str, tuple[float, dict[str, Any] | None]], now: float
    ) -> dict[str, tuple[float, dict[str, Any] | None]]:
        """The entries still inside the window (the rest would only take memory)."""
        return {k: v for k, v in cache.items() if now - v[0] < self.cache_seconds}

    async def user_model(self, name: str) -> dict[str, Any] | None:
        """The Hub's model of ``name`` as the broker's own token may read it."""
        request = HTTPRequest(
            f"{self.auth.api_url.rstrip('/')}/users/{quote(name, safe='')}",
            headers={"Authorization": f"token {self.auth.api_token}"},
            request_timeout=20,
        )
        try:
            response = await self.http.fetch(request)
        except HTTPClientError as err:
            if err.code == 404:
                return None
            raise
        data = json.loads(response.body)
        return data if isinstance(data, dict) else None

    async def server_running(self, name: str, recent: bool = False) -> bool | None:
        """Whether ``name`` has a server running or starting (None: cannot tell).

        ``recent``: a running server as the Hub said within ``cache_seconds`` will do
        (a request's check: one Hub lookup per user and window, not one per request);
        "not running" is asked again, so a server just started is never refused. The
        periodic check of kernels' servers asks afresh.
        """
        try:
            if recent and _running(await self.recent_user_model(name)):
                return True
            model = await self.user_model(name)
        except Exception as err:  # the Hub restarting: ask again next time
            self.log.debug("Hub did not answer for %s: %s", name, err)
            return None
        if recent:
            self._models[name] = (time.monotonic(), model)
        return _running(model)


def _running(model: dict[str, Any] | None) -> bool | None:
    """Whether a Hub user model shows a server running or starting (None: cannot tell)."""
    if model is None:
        return False
    servers = model.get("servers")
    if isinstance(servers, dict):
        return bool(servers)
    if "server" in model:
        return bool(model.get("server")) or bool(model.get("pending"))
    return None


def _token(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer"):
        return ""
    return value.strip()
