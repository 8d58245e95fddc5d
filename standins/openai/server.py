"""``FakeOpenAI``: the endpoints put together behind one aiohttp app, with authentication, routing,
injected failures, request recording and the helpers tests wait with."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from aiohttp import web

from .chat import ChatApi
from .conversations import ConversationsApi
from .embeddings import EmbeddingsApi
from .files import FilesApi
from .media import MediaApi
from .moderation import ModerationApi
from .records import RecordedRequest
from .responses import ResponsesApi
from .script import Drop, HttpError
from .state import DEFAULT_MODELS
from .tokens import Json
from .vector_stores import VectorStoresApi
from .wire import BadRequest, Call, error_response, fail, json_response

if TYPE_CHECKING:
    import openai

Handler: TypeAlias = Callable[[Call], Awaitable[web.StreamResponse]]


class FakeOpenAI(
    ConversationsApi,
    ResponsesApi,
    ChatApi,
    MediaApi,
    FilesApi,
    VectorStoresApi,
    EmbeddingsApi,
    ModerationApi,
):
    """The stand-in OpenAI server. Use as `async with FakeOpenAI() as fake:`; see ``standins.openai``."""

    def __init__(self, *, models: tuple[str, ...] = DEFAULT_MODELS) -> None:
        super().__init__(models=models)
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/conversations", self._create_conversation),
            ("GET", "/v1/conversations/{cid}", self._get_conversation),
            ("POST", "/v1/conversations/{cid}", self._update_conversation),
            ("DELETE", "/v1/conversations/{cid}", self._delete_conversation),
            ("GET", "/v1/conversations/{cid}/items", self._list_items),
            ("POST", "/v1/conversations/{cid}/items", self._create_items),
            ("GET", "/v1/conversations/{cid}/items/{iid}", self._get_item),
            ("DELETE", "/v1/conversations/{cid}/items/{iid}", self._delete_item),
            ("POST", "/v1/responses", self._create_response),
            ("GET", "/v1/responses/{rid}", self._get_response),
            ("DELETE", "/v1/responses/{rid}", self._delete_response),
            ("POST", "/v1/responses/{rid}/cancel", self._cancel_response),
            ("POST", "/v1/chat/completions", self._chat_completion),
            ("POST", "/v1/images/generations", self._generate_images),
            ("POST", "/v1/embeddings", self._create_embeddings),
            ("POST", "/v1/moderations", self._create_moderation),
            ("GET", "/v1/models", self._list_models),
            ("GET", "/v1/models/{mid}", self._get_model),
            ("POST", "/v1/files", self._create_file),
            ("GET", "/v1/files/{fid}", self._get_file),
            ("GET", "/v1/files/{fid}/content", self._get_file_content),
            ("DELETE", "/v1/files/{fid}", self._delete_file),
            ("POST", "/v1/vector_stores", self._create_vector_store),
            ("GET", "/v1/vector_stores/{vsid}", self._get_vector_store),
            ("DELETE", "/v1/vector_stores/{vsid}", self._delete_vector_store),
            ("GET", "/v1/vector_stores/{vsid}/files", self._list_vector_store_files),
            ("POST", "/v1/vector_stores/{vsid}/files", self._create_vector_store_file),
            ("GET", "/v1/vector_stores/{vsid}/files/{fid}", self._get_vector_store_file),
            ("DELETE", "/v1/vector_stores/{vsid}/files/{fid}", self._delete_vector_store_file),
            ("POST", "/v1/vector_stores/{vsid}/search", self._search_vector_store),
            ("GET", "/v1/containers/{cid}/files", self._list_container_files),
            ("GET", "/v1/containers/{cid}/files/{fid}", self._get_container_file),
            ("GET", "/v1/containers/{cid}/files/{fid}/content", self._get_container_file_content),
        ]
        self._routes = [(method, path_pattern(path), handler) for method, path, handler in routes]

    # ---------------------------------------------------------------- lifecycle and test helpers

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port (prefer `async with FakeOpenAI()`)."""
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_response_prepare.append(self._add_common_headers)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening; in-flight handlers are cancelled after a short grace period."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        await self.close()
        if exc_type is None and self.server_errors:
            raise AssertionError(
                f"the fake OpenAI server crashed: {self.server_errors[0]!r}"
            ) from self.server_errors[0]

    def client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """A real SDK client pointed at this server (api_key "test"); use it as `async with`."""
        import openai

        kwargs.setdefault("api_key", "test")
        kwargs.setdefault("timeout", 30.0)
        return openai.AsyncOpenAI(base_url=self.base_url, **kwargs)

    def fail_next(self, path_prefix: str, step: HttpError | Drop, *, times: int = 1) -> None:
        """Make the next `times` requests under `path_prefix` (any route, e.g. "/v1/conversations") fail."""
        self._interrupts.extend((path_prefix, step) for _ in range(times))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path starts with `path_prefix` (e.g. "/v1/responses")."""
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `predicate()` holds; re-checked whenever a request arrives or finishes."""
        assert self._changed is not None, "start the server first"
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(
                f"condition not met within {timeout}s; {len(self.requests)} requests recorded: "
                + ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-10:])
            ) from None

    async def wait_for_requests(
        self,
        path_prefix: str,
        count: int = 1,
        *,
        method: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Wait until at least `count` requests under `path_prefix` have arrived; return them all."""
        await self.wait_for(lambda: len(self.requests_to(path_prefix, method)) >= count, timeout)
        return self.requests_to(path_prefix, method)

    async def wait_for_answers(
        self,
        path_prefix: str,
        count: int = 1,
        *,
        method: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Like wait_for_requests, but for requests whose answer has been fully sent."""
        await self.wait_for(
            lambda: sum(r.status is not None for r in self.requests_to(path_prefix, method)) >= count, timeout
        )
        return [r for r in self.requests_to(path_prefix, method) if r.status is not None]

    # ---------------------------------------------------------------- dispatch

    async def _add_common_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", f"req_{secrets.token_hex(16)}")
        response.headers.setdefault("openai-version", "2020-10-01")
        response.headers.setdefault("openai-processing-ms", "1")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        bad_json = False
        if raw and "json" in request.headers.get("Content-Type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            json=body,
            headers={key.lower(): value for key, value in request.headers.items()},
            time=time.monotonic(),
        )
        self.requests.append(record)
        self.inflight_requests += 1
        self.max_inflight_requests = max(self.max_inflight_requests, self.inflight_requests)
        await self._notify()
        response: web.StreamResponse | None = None
        try:
            response = await self._route(request, body, bad_json)
            return response
        except BadRequest as error:
            response = error_response(error.status, error.message, param=error.param, code=error.code)
            return response
        except Exception as error:  # a bug in the fake or a test's responder: fail loudly, never retried
            self.server_errors.append(error)
            response = error_response(
                500,
                f"fake OpenAI server error: {error!r}",
                headers={"x-should-retry": "false"},
                type="server_error",
            )
            return response
        finally:
            self.inflight_requests -= 1
            transport = request.transport
            aborted = transport is None or transport.is_closing()
            record.status = None if response is None or aborted else response.status
            record.finished_at = time.monotonic()
            await self._notify()

    async def _route(self, request: web.Request, body: Any, bad_json: bool) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = auth[len("Bearer ") :].strip()
        if key in self.invalid_api_keys:
            return error_response(
                401,
                f"Incorrect API key provided: {key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        if bad_json:
            return error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            )
        handler: Handler | None = None
        params: dict[str, str] = {}
        for method, pattern, candidate in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                handler, params = candidate, match.groupdict()
                break
        if handler is None:
            return error_response(404, f"Invalid URL ({request.method} {request.path})")
        for index, (prefix, step) in enumerate(self._interrupts):
            if request.path.startswith(prefix):
                del self._interrupts[index]
                return await fail(request, step)
        if body is not None and not isinstance(body, dict):
            return error_response(400, "The request body must be a JSON object.")
        return await handler(Call(request=request, body=body or {}, params=params))

    # ---------------------------------------------------------------- models

    def _model_json(self, model: str) -> Json:
        owner = "openai" if not model.startswith("text-embedding") else "openai-internal"
        entry: Json = {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": owner}
        window = self.context_windows.get(model)
        if self.chat_dialect == "vllm" and window is not None:
            entry["max_model_len"] = window  # vLLM says its window in its model list
        return entry

    async def _list_models(self, call: Call) -> web.StreamResponse:
        return json_response({"object": "list", "data": [self._model_json(m) for m in self.models]})

    async def _get_model(self, call: Call) -> web.StreamResponse:
        model = call.params["mid"]
        if model not in self.models:
            raise BadRequest(
                f"The model '{model}' does not exist", param="model", code="model_not_found", status=404
            )
        return json_response(self._model_json(model))


def path_pattern(template: str) -> re.Pattern[str]:
    """`/v1/responses/{rid}` as a pattern matching one path segment per `{name}`, captured as `name`."""
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))
