"""The mock's Files API, the half of the Batch API that holds the JSONL files (backstage: a learner
need not read this; ``batches.py`` runs the batches).

Served: ``POST /v1/files`` (multipart: ``file`` and ``purpose``), ``GET /v1/files``, ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content`` and ``DELETE /v1/files/{id}``, with the fields of the openai SDK's
``FileObject``. Like OpenAI, an upload larger than the batch limit (``batch_max_bytes``, 200 MB by
default) is refused with a 400 "File is too large."; so is one that would take the mock's store of
files past ``MAX_STORED_BYTES``, so that uploads cannot exhaust its memory. Files live until they
are deleted or the mock exits (a reset does not delete them, as a reset of usage would not at OpenAI).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from helpers.mock.replies import stable_hash
from helpers.mock.wire import error_response

if TYPE_CHECKING:
    from helpers.mock.server import MockServer

__all__ = ["FileStore", "StoredFile"]

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")  # what an upload may say
MAX_STORED_BYTES = 1 << 30  # all files together, outputs included
READ_CHUNK = 1 << 16


@dataclass
class StoredFile:
    """One file: its bytes and what ``GET /v1/files/{id}`` says about it."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def as_object(self) -> dict:
        """The openai SDK's ``FileObject`` fields."""
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


class _Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


class FileStore:
    """The files, by id, and the handlers of /v1/files."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.files: dict[str, StoredFile] = {}
        self._numbers = itertools.count(1)

    def stored_bytes(self) -> int:
        return sum(len(f.data) for f in self.files.values())

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        """Store a file (an upload, or a batch's output) and return it."""
        file_id = f"file-{stable_hash('file', next(self._numbers)):016x}"
        stored = StoredFile(file_id, filename, purpose, data, int(time.time()))
        self.files[file_id] = stored
        return stored

    def find(self, request: web.Request) -> StoredFile:
        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            raise _Refused(404, f"No such File object: {file_id}", "id")
        return self.files[file_id]

    async def upload(self, request: web.Request) -> web.Response:
        """POST /v1/files: store the uploaded file; 400 naming what is wrong with the upload."""
        try:
            filename, purpose, data = await self._read_upload(request)
        except _Refused as refused:
            return error_response(refused.status, str(refused), "invalid_request_error", param=refused.param)
        return web.json_response(self.add(filename, purpose, data).as_object())

    async def _read_upload(self, request: web.Request) -> tuple[str, str, bytes]:
        if not request.content_type.startswith("multipart/"):
            raise _Refused(400, "Uploads must be multipart/form-data with a 'file' and a 'purpose'.", "file")
        limit = self.server.settings.batch_max_bytes
        fields: dict[str, str] = {}
        filename, data = None, None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            name = getattr(part, "name", None)  # a nested multipart has none: skipped
            if name == "file":
                filename, data = part.filename or "upload.jsonl", await _read_limited(part, limit)
            elif name == "purpose":
                fields[name] = (await part.read(decode=True)).decode("utf-8", "replace")
        if data is None:
            raise _Refused(400, "Missing required parameter: 'file'.", "file")
        purpose = fields.get("purpose")
        if purpose not in PURPOSES:
            raise _Refused(400, f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
                           + ", ".join(f"'{p}'" for p in PURPOSES) + ".", "purpose")
        if self.stored_bytes() + len(data) > MAX_STORED_BYTES:
            raise _Refused(400, f"The mock stores at most {MAX_STORED_BYTES} bytes of files: delete some first.",
                           "file")
        return filename, purpose, data

    async def list(self, request: web.Request) -> web.Response:
        """GET /v1/files?purpose=: every file, newest first (the mock does not page files)."""
        self.server.batches.advance()
        purpose = request.query.get("purpose")
        data = [f.as_object() for f in reversed(self.files.values()) if purpose in (None, f.purpose)]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def retrieve(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}: the FileObject."""
        try:
            return web.json_response(self.find(request).as_object())
        except _Refused as refused:
            return error_response(refused.status, str(refused), "invalid_request_error", param=refused.param)

    async def content(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}/content: the file's bytes."""
        try:
            self.server.batches.advance()
            return web.Response(body=self.find(request).data, content_type="application/octet-stream")
        except _Refused as refused:
            return error_response(refused.status, str(refused), "invalid_request_error", param=refused.param)

    async def delete(self, request: web.Request) -> web.Response:
        """DELETE /v1/files/{id}: forget the file."""
        try:
            stored = self.find(request)
        except _Refused as refused:
            return error_response(refused.status, str(refused), "invalid_request_error", param=refused.param)
        del self.files[stored.id]
        return web.json_response({"id": stored.id, "object": "file", "deleted": True})


async def _read_limited(part: object, limit: int) -> bytes:
    """The part's bytes, or a 400 "File is too large." as soon as they pass `limit`."""
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK):  # type: ignore[attr-defined]
        data += chunk
        if len(data) > limit:
            raise _Refused(400, f"File is too large. The limit for a batch file is {limit} bytes "
                           "(the mock's batch_max_bytes; OpenAI's is 200 MB).", "file")
    return bytes(data)
