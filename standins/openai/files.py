"""The Files API: multipart uploads (`POST /v1/files` with `purpose` and an optional `expires_after`),
retrieve, content and delete, with OpenAI's errors for a missing field, a file too large and an
unknown id. Uploaded files are what `container.file_ids` and `input_file` parts may name."""

from __future__ import annotations

import secrets
import time
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from aiohttp import web

from .records import StoredFile
from .state import OpenAIState
from .wire import BadRequest, Call, json_response

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MIN_EXPIRY_S = 3600
MAX_EXPIRY_S = 2_592_000


def new_file_id() -> str:
    """`file-` and 22 letters and digits, as OpenAI's file ids look."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789"
    return "file-" + "".join(secrets.choice(alphabet) for _ in range(22))


def parse_form(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body as (fields, files by field name: (filename, bytes))."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("The request must be multipart/form-data with a 'file' part.", param="file")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts() if isinstance(message, Message) and message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, files


class FilesApi(OpenAIState):
    """/v1/files and /v1/files/{id}[/content]."""

    def _stored_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise BadRequest(f"No such File object: {file_id}", param="id", status=404)
        return stored

    async def _create_file(self, call: Call) -> web.StreamResponse:
        raw = await call.request.read()
        fields, files = parse_form(call.request.headers.get("Content-Type", ""), raw)
        purpose = fields.get("purpose")
        if not purpose:
            raise BadRequest(
                "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
            )
        if purpose not in PURPOSES:
            raise BadRequest(
                f"Invalid value for 'purpose': '{purpose}'. Supported values are: "
                + ", ".join(f"'{p}'" for p in sorted(PURPOSES))
                + ".",
                param="purpose",
                code="invalid_value",
            )
        if "file" not in files:
            raise BadRequest(
                "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        filename, data = files["file"]
        if len(data) > self.max_file_bytes:
            raise BadRequest(
                f"File is too large ({len(data)} bytes): the maximum size of a file is"
                f" {self.max_file_bytes} bytes.",
                param="file",
                code="file_too_large",
            )
        now = int(time.time())
        expires_at: int | None = None
        if "expires_after[anchor]" in fields or "expires_after[seconds]" in fields:
            seconds = fields.get("expires_after[seconds]", "")
            if fields.get("expires_after[anchor]") != "created_at" or not seconds.isdigit():
                raise BadRequest(
                    "Invalid 'expires_after': expected an anchor of 'created_at' and seconds.",
                    param="expires_after",
                    code="invalid_value",
                )
            if not MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S:
                raise BadRequest(
                    f"Invalid 'expires_after.seconds': must be between {MIN_EXPIRY_S} and {MAX_EXPIRY_S}.",
                    param="expires_after.seconds",
                    code="invalid_value",
                )
            expires_at = now + int(seconds)
        stored = StoredFile(
            id=new_file_id(),
            filename=filename,
            purpose=purpose,
            data=data,
            created_at=now,
            expires_at=expires_at,
        )
        self.files[stored.id] = stored
        return json_response(stored.as_json())

    async def _get_file(self, call: Call) -> web.StreamResponse:
        return json_response(self._stored_file(call.params["fid"]).as_json())

    async def _get_file_content(self, call: Call) -> web.StreamResponse:
        stored = self._stored_file(call.params["fid"])
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _delete_file(self, call: Call) -> web.StreamResponse:
        stored = self._stored_file(call.params["fid"])
        del self.files[stored.id]
        return json_response({"id": stored.id, "object": "file", "deleted": True})
