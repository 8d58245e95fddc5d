"""Embeddings: the fake's deterministic vectors (hashed words and bigrams), so tests can compute the
similarities they expect, served as floats or base64 like the API."""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import struct
from typing import Any

from aiohttp import web

from .script import Drop, HttpError
from .state import OpenAIState
from .tokens import count_tokens
from .wire import BadRequest, Call, fail, json_response

_WORD_RE = re.compile(r"[a-z0-9]+")

_EMBEDDING_DEFAULT_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def fake_embedding(text: str | list[int], dims: int = 1536) -> list[float]:
    """The fake's embedding: hashed bag of lowercased words (+ half-weight bigrams), L2-normalised.

    Values are float32-rounded, exactly what the SDK decodes from the base64 answer, so tests can
    compute expectations with it. Texts that share words have a higher cosine similarity.
    """
    words = [str(token) for token in text] if isinstance(text, list) else _WORD_RE.findall(text.lower())
    features = [(word, 1.0) for word in words] + [(f"{a} {b}", 0.5) for a, b in itertools.pairwise(words)]
    if not features:
        features = [("\x00empty", 1.0)]
    vector = [0.0] * dims
    for feature, weight in features:
        bucket = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little") % dims
        vector[bucket] += weight
    norm = math.sqrt(sum(value * value for value in vector))
    packed = struct.pack(f"<{dims}f", *(value / norm for value in vector))
    return list(struct.unpack(f"<{dims}f", packed))


def cosine_similarity(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors, for embedding assertions."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _embedding_inputs(raw: Any) -> list[str | list[int]]:
    invalid = BadRequest(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        param="input",
    )
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        raw = [raw]  # one input
    if not isinstance(raw, list) or not raw or len(raw) > 2048:
        raise invalid
    for entry in raw:
        if isinstance(entry, str):
            if not entry:
                raise invalid
        elif not (isinstance(entry, list) and entry and all(isinstance(x, int) for x in entry)):
            raise invalid
    return raw


class EmbeddingsApi(OpenAIState):
    """/v1/embeddings."""

    async def _create_embeddings(self, call: Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body)
        inputs = _embedding_inputs(body.get("input"))
        default_dims = _EMBEDDING_DEFAULT_DIMS.get(model, 1536)
        dims = body.get("dimensions", default_dims)
        if "dimensions" in body and model == "text-embedding-ada-002":
            raise BadRequest("This model does not support specifying dimensions.", param="dimensions")
        if not isinstance(dims, int) or not 1 <= dims <= default_dims:
            raise BadRequest(
                f"Invalid 'dimensions': expected 1..{default_dims}, got {dims}.", param="dimensions"
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest(
                "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format"
            )
        step = await self.embeddings.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await fail(call.request, step)
        if step is not None:
            raise TypeError(f"an embeddings step must be HttpError, Drop or None, not {step!r}")
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dims)
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t) if isinstance(t, list) else max(1, count_tokens(t)) for t in inputs)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
