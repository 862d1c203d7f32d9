"""The REST base through a real Jupyter server: auth on every route, JSON errors, and an
OpenAPI document that stays in step with the handlers the extension registers."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from typing import Any

import pytest
import yaml
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from openapi_spec_validator import validate
from tornado.httpclient import HTTPClientError

import jupyter_gpuenv.server
from jupyter_gpuenv.server.openapi_api import SPEC_PATH
from jupyter_gpuenv.server.status_api import UnknownRouteHandler
from tests.support.server_config import server_config

METHODS = ("get", "post", "put", "patch", "delete")
API = ("gpuenv", "api")


@pytest.fixture
def jp_server_config(tmp_path):
    # No sources at all: the answers do not depend on this machine's environments.
    return server_config(kernelspecs=False)


def extension_routes(serverapp) -> list[tuple[str, type]]:
    """(pattern, handler class) of every route the running extension registered.

    The catch-all JSON 404 of unknown API paths is no route of the API.
    """
    (app,) = serverapp.extension_manager.extension_apps["jupyter_gpuenv"]
    return [
        (pattern, handler)
        for pattern, handler, *_ in app.handlers
        if handler is not UnknownRouteHandler
    ]


def declared_routes() -> list[tuple[str, type]]:
    """The ``handlers`` lists of every module under jupyter_gpuenv.server."""
    routes = []
    for info in pkgutil.iter_modules(jupyter_gpuenv.server.__path__):
        module = importlib.import_module(f"jupyter_gpuenv.server.{info.name}")
        routes += [(pattern, handler) for pattern, handler, *_ in getattr(module, "handlers", [])]
    return routes


def openapi_path(pattern: str) -> str:
    """``/x/(?P<env_id>[a-z]+)/y`` -> ``/x/{env_id}/y`` (named groups may nest parentheses)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("(?P<", i):
            name = pattern[i + 4 : pattern.index(">", i)]
            depth, i = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(pattern[i], 0) if pattern[i - 1] != "\\" else 0
                i += 1
            out.append("{" + name + "}")
        elif pattern[i] == "(":
            raise AssertionError(f"route {pattern!r}: name every group, (?P<name>...)")
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out).rstrip("$").removesuffix("/?")


def implemented_methods(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(APIHandler, m)}


def sample_url(path: str) -> list[str]:
    """URL parts of a concrete request for an OpenAPI path (parameters filled in)."""
    return [re.sub(r"\{\w+\}", "no-such-environment", part) for part in path.split("/") if part]


def test_openapi_path_conversion():
    assert openapi_path(r"/a/(?P<env_id>[A-Za-z0-9._-]+)/export") == "/a/{env_id}/export"
    assert openapi_path(r"/a/(?P<x>(b|c)+)/?$") == "/a/{x}"
    with pytest.raises(AssertionError, match="name every group"):
        openapi_path(r"/a/([0-9]+)")


async def test_list_environments_with_token(jp_fetch):
    response = await jp_fetch(*API, "environments")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {"environments": [], "problems": []}


async def test_every_route_refuses_requests_without_a_valid_token(
    jp_serverapp, http_server_client, jp_base_url
):
    routes = extension_routes(jp_serverapp)
    assert routes
    for pattern, handler in routes:
        for method in implemented_methods(handler):
            url = url_path_join(jp_base_url, *sample_url(openapi_path(pattern)))
            for headers in ({}, {"Authorization": "token not-the-token"}):
                response = await http_server_client.fetch(
                    url,
                    method=method.upper(),
                    headers=headers,
                    body=b"{}" if method in ("post", "put", "patch") else None,
                    raise_error=False,
                )
                assert response.code in (401, 403), (method, url, response.code)
                assert "message" in json.loads(response.body), response.body


async def test_unknown_environment_is_json_404(jp_fetch):
    for parts in (("environments", "no-such-env"), ("environments", "no-such-env", "export")):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*API, *parts)
        response = info.value.response
        assert response.code == 404
        assert response.headers["Content-Type"].startswith("application/json")
        body = json.loads(response.body)
        assert body["status"] == 404 and "no-such-env" in body["message"]


async def test_unknown_api_path_is_json_404(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "no-such-route", "x", method="POST", body="{}")
    response = info.value.response
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert "no-such-route/x" in json.loads(response.body)["message"]


async def test_bad_query_parameter_is_json_400(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, "environments", params={"refresh": "maybe"})
    response = info.value.response
    assert response.code == 400
    body = json.loads(response.body)
    assert body["status"] == 400 and "refresh" in body["message"]


async def test_openapi_document_is_valid_and_served(jp_fetch):
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    validate(document)
    served = json.loads((await jp_fetch(*API, "openapi.json")).body)
    assert served == document
    served_yaml = (await jp_fetch(*API, "openapi.yaml")).body.decode()
    assert yaml.safe_load(served_yaml) == document


def test_openapi_document_matches_the_registered_handlers(jp_serverapp):
    routes = extension_routes(jp_serverapp)
    # A module's handlers that the extension forgot to register would be dead code.
    assert {p for p, _ in declared_routes()} <= {p for p, _ in routes}

    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    paths: dict[str, Any] = document["paths"]
    registered = {openapi_path(pattern): handler for pattern, handler in routes}
    assert set(registered) == set(paths), (
        f"only in handlers: {sorted(set(registered) - set(paths))}; "
        f"only in openapi.yaml: {sorted(set(paths) - set(registered))}"
    )
    components = document.get("components", {}).get("parameters", {})
    for path, handler in registered.items():
        documented = {m for m in paths[path] if m in METHODS}
        assert implemented_methods(handler) == documented, path
        for method in documented:
            parameters = paths[path][method].get("parameters", []) + paths[path].get(
                "parameters", []
            )
            resolved = [
                components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in parameters
            ]
            in_path = {p["name"] for p in resolved if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", path)), (method, path)


class DenyGpuEnv(Authorizer):
    """An admin's authorizer that allows everything except the gpuenv resource."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return resource != "gpuenv"


class TestAuthorizer:
    @pytest.fixture
    def jp_server_config(self):
        return {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_gpuenv": True},
                "authorizer_class": DenyGpuEnv,
            },
            "GpuEnv": {
                "conda_envs_dirs": [],
                "venv_dirs": [],
                "docker_label_discovery": False,
                "docker_discover_pytorch_images": False,
            },
        }

    async def test_routes_ask_jupyter_servers_authorizer(self, jp_fetch, jp_serverapp):
        assert (await jp_fetch("api", "status")).code == 200
        for pattern, handler in extension_routes(jp_serverapp):
            if "get" not in implemented_methods(handler):
                continue
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch(*sample_url(openapi_path(pattern)))
            assert info.value.response.code == 403, pattern
