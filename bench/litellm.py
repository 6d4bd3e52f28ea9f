"""Side by side with the LiteLLM proxy: the same loopback upstream through each, figures as ratios of one run.

    .venv/bin/python -m bench.litellm [--rounds 30] [--concurrency 1,10,50,100] [--venv DIR]

LiteLLM (`litellm[proxy]==1.108.7`) is never a dependency of this project: the bench makes a throwaway virtualenv
for it (`~/.cache/widget_server/bench-litellm` unless `--venv` says otherwise, reused when present) with the
interpreter running the bench. When it cannot be installed or started, the bench says so and prints our side only.

The fake upstream (`tests/support/upstream.py`, `pace-20-30`: 30 words, one every 20 ms) runs under uvicorn in a
process of its own (`bench/serve.py`). Our server is a real `widget-server serve` process on SQLite (as
`bench.nodes` starts one, every rate limit at 1,000,000), called on `POST /v1/openai/chat/completions` with
`stream: true` and a persona whose provider is the upstream; LiteLLM is `litellm --config` with that model routed to
the same upstream (`openai/pace-20-30`) and a master key, called on its own `/v1/chat/completions`. Both get a
bearer key, the same body, and the same client (httpx, one connection per stream).

At each concurrency N, a round sends N streams at once straight to the upstream, then N through our server, then N
through LiteLLM (never two at once: they share two cores). Added time to first token = a side's p50 (p95) minus the
direct p50 (p95) at the same N. CPU per request: the CPU time of every process of the server's session (its workers
included), from `/proc`, over its streams of the run, divided by their number. Every reply is checked word for word.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.nodes import Cpu, memory_setup, node_env
from bench.serve import AppSpec, Served
from bench.stream import PACED, PACED_TEXT, Stack, create_tenant, ms, pct
from tests.support.servers import free_port

VERSION = "1.108.7"
DEFAULT_VENV = Path.home() / ".cache" / "widget_server" / "bench-litellm"
MASTER_KEY = "sk-bench-litellm"
START_TIMEOUT_S = 180.0


def ensure_litellm(venv: Path) -> tuple[Path | None, str]:
    """The `litellm` command of the throwaway venv (made when missing), or None and why not."""
    exe = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if exe.exists() and _installed_version(python) == VERSION:
        return exe, f"litellm {VERSION} from {venv}"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={VERSION}"], check=True,
                       capture_output=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        said = getattr(exc, "stderr", b"") or b""
        return None, f"LiteLLM {VERSION} could not be installed in {venv}: {exc} {said.decode(errors='replace')[-400:]}"
    return (exe, f"litellm {VERSION} installed in {venv}") if exe.exists() else (None, f"no {exe} after install")


def _installed_version(python: Path) -> str | None:
    try:
        out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def litellm_proxy(exe: Path, upstream: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """The proxy on a free port, one worker, `PACED` routed to the upstream; yields its URL and session leader."""
    config = workdir / "litellm.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": PACED, "litellm_params": {
            "model": f"openai/{PACED}", "api_base": upstream + "/v1", "api_key": "not-needed"}}],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }))
    port, log_path = free_port(), workdir / "litellm.log"
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
    with log_path.open("ab") as out:
        proc = subprocess.Popen([str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                                 "--num_workers", "1"], env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(url + "/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LiteLLM did not start: {log_path.read_text(errors='replace')[-800:]}")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this bench started for the proxy
            proc.wait()


async def stream_ttft(http: httpx.AsyncClient, url: str, key: str, model: str, text: str) -> float:
    """Seconds to the first content chunk of a streamed chat completion; the reply checked word for word."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    sent, first, got = time.monotonic(), None, ""
    async with http.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code} {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                if content := (choice.get("delta") or {}).get("content"):
                    first = first or time.monotonic()
                    got += content
    if first is None or got.strip() != PACED_TEXT.strip():
        raise RuntimeError(f"{url}: incomplete reply {got!r}")
    return first - sent


class Side:
    def __init__(self, name: str, url: str, key: str, model: str, cpu: Cpu | None) -> None:
        self.name, self.url, self.key, self.model, self.cpu = name, url, key, model, cpu
        self.ttft: dict[int, list[float]] = {}
        self.cpu_per_request: dict[int, float] = {}

    async def burst(self, http: httpx.AsyncClient, n: int, r: int) -> None:
        start = self.cpu.cpu_seconds() if self.cpu else 0.0
        got = await asyncio.gather(*(stream_ttft(http, self.url, self.key, self.model, f"hello {r} {i}")
                                     for i in range(n)))
        self.ttft.setdefault(n, []).extend(got)
        if self.cpu:
            self.cpu_per_request[n] = self.cpu_per_request.get(n, 0.0) + (self.cpu.cpu_seconds() - start)


async def measure(sides: list[Side], levels: list[int], rounds: int) -> None:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        for side in sides:  # warm-up: imports, pools, the first persona read
            await side.burst(http, 2, -1)
            side.ttft.clear()
            side.cpu_per_request.clear()
        for n in levels:
            reps = rounds if n == 1 else max(2, rounds // max(1, n // 5))
            for r in range(reps):
                for side in sides:
                    await side.burst(http, n, r)
            for side in sides:
                if n in side.cpu_per_request:
                    side.cpu_per_request[n] /= reps * n
            print(f"[{time.strftime('%H:%M:%S')}] {n} concurrent: {reps} rounds", flush=True)


def report(sides: list[Side], levels: list[int]) -> None:
    direct, ours, rest = sides[0], sides[1], sides[2:]
    head = f"{'N':>4} {'side':<16} {'added TTFT p50':>15} {'p95':>9} {'CPU/request':>12}"
    if rest:
        head += f" {'p50 vs LiteLLM':>15} {'CPU vs LiteLLM':>15}"
    print(head)
    for n in levels:
        base50, base95 = pct(direct.ttft[n], 50), pct(direct.ttft[n], 95)
        for side in sides[1:]:
            a50, a95 = pct(side.ttft[n], 50) - base50, pct(side.ttft[n], 95) - base95
            line = (f"{n:>4} {side.name:<16} {ms(a50):>15} {ms(a95):>9} "
                    f"{side.cpu_per_request[n] * 1000:>9.1f} ms")
            if rest and side is ours:
                lite = rest[0]
                l50 = pct(lite.ttft[n], 50) - base50
                line += f" {_ratio(a50, l50):>15} {_ratio(side.cpu_per_request[n], lite.cpu_per_request[n]):>15}"
            print(line)
    print("ratios: ours / LiteLLM's in the same run (below 1: we add less). Direct TTFT p50 by N: "
          + ", ".join(f"{n}: {ms(pct(direct.ttft[n], 50))}" for n in levels))


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--concurrency", default="1,10,50,100")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    exe, said = ensure_litellm(args.venv)
    print(said if exe else f"NOT MEASURED: {said}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-litellm-"))
    try:
        with Served(AppSpec("upstream")) as upstream, contextlib.ExitStack() as stack:
            db = f"sqlite:///{work / 'widget.db'}"
            keys = asyncio.run(create_tenant(db))
            ours = stack.enter_context(memory_setup(work / "ours", node_env(db, upstream.url)))
            persona = Stack(ours.url, keys["sk"], keys["pk"]).persona({"kind": "openai", "model": PACED})
            sides = [Side("direct", upstream.url + "/v1/chat/completions", "x", PACED, None),
                     Side("widget_server", ours.url + "/v1/openai/chat/completions", keys["sk"], persona,
                          Cpu(ours.pids[0]))]
            if exe is not None:
                try:
                    url, pid = stack.enter_context(litellm_proxy(exe, upstream.url, work))
                    sides.append(Side("LiteLLM", url + "/v1/chat/completions", MASTER_KEY, PACED, Cpu(pid)))
                except RuntimeError as exc:
                    print(f"NOT MEASURED: LiteLLM could not be started: {exc}", flush=True)
            asyncio.run(measure(sides, levels, args.rounds))
            report(sides, levels)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
