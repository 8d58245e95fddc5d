"""The Vector Stores API: stores (create, retrieve, delete), their files (attach a Files API file,
retrieve, list, delete) and search, in OpenAI's shapes.

A file attached to a store is `in_progress` and is processed at the first look, as the SDK's
`create_and_poll` sees it: `completed`, or `failed` with `last_error` when a test put its filename in
`unprocessable_files`.
"""

from __future__ import annotations

import time

from aiohttp import web

from .file_search import FakeVectorStore, FakeVectorStoreFile, search
from .state import OpenAIState
from .tokens import Json, new_id
from .wire import BadRequest, Call, json_response

MAX_SEARCH_RESULTS = 50


class VectorStoresApi(OpenAIState):
    """/v1/vector_stores, /v1/vector_stores/{id}, .../files[/{file_id}] and .../search."""

    def _vector_store(self, store_id: str) -> FakeVectorStore:
        store = self.vector_stores.get(store_id)
        if store is None:
            raise BadRequest(f"No vector store found with id '{store_id}'.", status=404)
        return store

    async def _create_vector_store(self, call: Call) -> web.StreamResponse:
        body = call.body
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise BadRequest("Invalid 'metadata': at most 16 string pairs.", param="metadata")
        store = FakeVectorStore(
            id=new_id("vs"),
            name=str(body.get("name") or ""),
            created_at=int(time.time()),
            metadata={str(k): str(v) for k, v in metadata.items()},
        )
        self.vector_stores[store.id] = store
        for file_id in body.get("file_ids") or ():
            self._attach(store, str(file_id), {})
        return json_response(store.as_json())

    async def _get_vector_store(self, call: Call) -> web.StreamResponse:
        return json_response(self._vector_store(call.params["vsid"]).as_json())

    async def _delete_vector_store(self, call: Call) -> web.StreamResponse:
        store = self._vector_store(call.params["vsid"])
        del self.vector_stores[store.id]
        return json_response({"id": store.id, "object": "vector_store.deleted", "deleted": True})

    def _attach(
        self, store: FakeVectorStore, file_id: str, attributes: dict[str, str | float | bool]
    ) -> Json:
        stored = self.files.get(file_id)
        if stored is None:
            raise BadRequest(f"No such File object: {file_id}", param="file_id", status=404)
        attached = FakeVectorStoreFile(
            file_id=file_id,
            vector_store_id=store.id,
            created_at=int(time.time()),
            usage_bytes=len(stored.data),
            attributes=attributes,
        )
        store.files[file_id] = attached
        return attached.as_json()

    async def _create_vector_store_file(self, call: Call) -> web.StreamResponse:
        store = self._vector_store(call.params["vsid"])
        file_id = call.body.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise BadRequest(
                "Missing required parameter: 'file_id'.", param="file_id", code="missing_required_parameter"
            )
        attributes = call.body.get("attributes") or {}
        return json_response(self._attach(store, file_id, attributes))

    def _processed(self, attached: FakeVectorStoreFile) -> FakeVectorStoreFile:
        """Processing ends at the first look: completed, or failed for a file a test marked."""
        if attached.status == "in_progress":
            stored = self.files.get(attached.file_id)
            problem = self.unprocessable_files.get(stored.filename) if stored is not None else None
            if stored is None:
                problem = "The file was deleted before it could be processed."
            if problem is None:
                attached.status = "completed"
            else:
                attached.status = "failed"
                attached.last_error = {"code": "invalid_file", "message": problem}
        return attached

    def _vector_store_file(self, call: Call) -> FakeVectorStoreFile:
        store = self._vector_store(call.params["vsid"])
        attached = store.files.get(call.params["fid"])
        if attached is None:
            raise BadRequest(
                f"No file found with id '{call.params['fid']}' in vector store '{store.id}'.", status=404
            )
        return attached

    async def _get_vector_store_file(self, call: Call) -> web.StreamResponse:
        return json_response(self._processed(self._vector_store_file(call)).as_json())

    async def _list_vector_store_files(self, call: Call) -> web.StreamResponse:
        store = self._vector_store(call.params["vsid"])
        data = [self._processed(attached).as_json() for attached in store.files.values()]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    async def _delete_vector_store_file(self, call: Call) -> web.StreamResponse:
        attached = self._vector_store_file(call)
        del self.vector_stores[attached.vector_store_id].files[attached.file_id]
        return json_response({"id": attached.file_id, "object": "vector_store.file.deleted", "deleted": True})

    async def _search_vector_store(self, call: Call) -> web.StreamResponse:
        store = self._vector_store(call.params["vsid"])
        query = call.body.get("query")
        queries = [query] if isinstance(query, str) else query
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries) or not queries:
            raise BadRequest("Invalid 'query': expected a string or an array of strings.", param="query")
        limit = call.body.get("max_num_results", 10)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_RESULTS:
            raise BadRequest(
                f"Invalid 'max_num_results': must be between 1 and {MAX_SEARCH_RESULTS}.",
                param="max_num_results",
            )
        for attached in store.files.values():
            self._processed(attached)
        hits = search([store], self.files, queries, max_results=limit)
        return json_response(
            {
                "object": "vector_store.search_results.page",
                "search_query": queries,
                "data": [hit.as_search_response() for hit in hits],
                "has_more": False,
                "next_page": None,
            }
        )
