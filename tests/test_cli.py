"""The `widget-server` command as a user runs it: a real subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from tests.support.servers import free_port
from widget_server.app import create_app
from widget_server.settings import Settings


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")}
        self.env = {**env, "WIDGET_DATA_DIR": str(data_dir)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # cwd is the data dir, so that no stray .env of the checkout leaks in
        return subprocess.run([sys.executable, "-m", "widget_server", *args], env=self.env, cwd=self.data_dir,
                              capture_output=True, text=True, timeout=120)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def fails(self, *args: str) -> str:
        """The one-line error of a failed command."""
        done = self.run(*args)
        assert done.returncode != 0, done.stdout
        assert "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("widget-server: error: "), done.stderr
        return lines[0]

    def tenant(self) -> tuple[str, str]:
        made = json.loads(self.ok("tenant", "create", "Acme", "--json"))
        return made["tenant_id"], made["secret_key"]

    def app(self) -> TestClient:
        return TestClient(create_app(Settings(data_dir=self.data_dir, database_url=None, secret_key="x")),
                          base_url="http://localhost")


def test_tenant_create_prints_one_json_object_with_a_secret_key(cli: Cli) -> None:
    out = cli.ok("tenant", "create", "Acme Inc", "--json")
    assert len(out.strip().splitlines()) == 1
    made = json.loads(out)
    assert set(made) == {"tenant_id", "secret_key"}
    assert made["tenant_id"].startswith("ten_") and made["secret_key"].startswith("sk_")
    assert made["tenant_id"] != json.loads(cli.ok("tenant", "create", "Acme Inc", "--json"))["tenant_id"]


def test_the_secret_key_of_tenant_create_works_on_the_rest_api(cli: Cli) -> None:
    _, sk = cli.tenant()
    with cli.app() as client:
        r = client.get("/v1/personas", headers={"Authorization": f"Bearer {sk}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"data": [], "next_cursor": None}
        assert client.get("/v1/personas", headers={"Authorization": f"Bearer {sk}x"}).status_code == 401


def test_the_secret_key_is_not_stored_in_clear(cli: Cli) -> None:
    _, sk = cli.tenant()
    for path in cli.data_dir.rglob("*"):
        if path.is_file():
            assert sk.encode() not in path.read_bytes(), path


def test_key_create_prints_the_key_and_normalized_origins(cli: Cli) -> None:
    tenant_id, _ = cli.tenant()
    out = cli.ok("key", "create", "--tenant", tenant_id, "--origin", "https://a.example",
                 "--origin", "https://*.b.example", "--origin", "HTTPS://C.example:443/", "--json")
    made = json.loads(out)
    assert set(made) == {"key", "id", "kind", "origins"} and made["kind"] == "publishable"
    assert made["key"].startswith("pk_")
    assert made["origins"] == ["https://a.example", "https://*.b.example", "https://c.example"]


@pytest.mark.parametrize("origin", ["notaurl", "ftp://x.example", "https://*.example", "https://a.example/path"])
def test_a_bad_origin_is_a_one_line_error(cli: Cli, origin: str) -> None:
    tenant_id, _ = cli.tenant()
    line = cli.fails("key", "create", "--tenant", tenant_id, "--origin", "https://ok.example", "--origin", origin)
    assert origin in line


def test_an_unknown_tenant_is_a_one_line_error(cli: Cli) -> None:
    line = cli.fails("key", "create", "--tenant", "ten_nope", "--origin", "https://a.example")
    assert "ten_nope" in line


def test_demo_is_idempotent_and_prints_what_to_use(cli: Cli) -> None:
    first, second = cli.ok("demo", "--no-serve"), cli.ok("demo", "--no-serve")

    def field(out: str, name: str) -> str:
        return next(line.split(":", 1)[1].split()[0] for line in out.splitlines() if line.strip().startswith(name))

    for name in ("tenant_id", "secret key", "publishable key", "persona"):
        assert field(first, name) == field(second, name), name
    assert field(first, "tenant_id").startswith("ten_") and field(first, "secret key").startswith("sk_")
    assert field(first, "publishable key").startswith("pk_") and field(first, "persona") == "ada"
    assert "http://127.0.0.1:8000/" in first
    console = next(line for line in first.splitlines() if line.strip().startswith("console:"))
    assert console == next(line for line in second.splitlines() if line.strip().startswith("console:"))
    email, password = console.split("sign in as ")[1].split(" / ")
    assert email == "owner@demo.example" and len(password) >= 20
    with cli.app() as client:
        r = client.get("/v1/personas", headers={"Authorization": f"Bearer {field(second, 'secret key')}"})
        assert r.status_code == 200, r.text
        assert [p["slug"] for p in r.json()["data"]] == ["ada"]
        form = client.get("/console/login")
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        r = client.post("/console/login", data={"email": email, "password": password, "csrf": token},
                        follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/", r.text


PERSONA = {
    "name": "Bea", "slug": "bea", "description": "Books", "system_prompt": "You are Bea.\nYou sell books.",
    "greeting": "Hi, I'm Bea", "starters": ["Best sellers?", "Opening hours?"], "avatar_url": "https://x.example/b.png",
    "language": "de", "provider": {"kind": "openai", "model": "gpt-x", "base_url": None, "temperature": 0.3,
                                   "max_tokens": 128, "api_key": None, "api_key_set": False},
    "topics": {"allowed": [{"id": "books", "description": "books", "examples": ["a novel?"], "refusal": None}],
               "denied": [], "off_topic": "escalate"},
}


def test_persona_import_then_export_round_trips(cli: Cli, tmp_path: Path) -> None:
    tenant_id, sk = cli.tenant()
    file = tmp_path / "bea.yaml"
    file.write_text(yaml.safe_dump(PERSONA))
    assert "created" in cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    exported = yaml.safe_load(cli.ok("persona", "export", "bea", "--tenant", tenant_id))
    assert exported == PERSONA
    with cli.app() as client:
        got = client.get("/v1/personas/bea", headers={"Authorization": f"Bearer {sk}"}).json()
        assert got["system_prompt"] == PERSONA["system_prompt"] and got["topics"]["off_topic"] == "escalate"


def test_importing_again_updates_the_persona(cli: Cli, tmp_path: Path) -> None:
    tenant_id, _ = cli.tenant()
    file = tmp_path / "bea.yaml"
    file.write_text(yaml.safe_dump(PERSONA))
    cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    file.write_text(yaml.safe_dump({"name": "Bea", "slug": "bea", "greeting": "Servus"}))
    assert "updated" in cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    exported = yaml.safe_load(cli.ok("persona", "export", "bea", "--tenant", tenant_id))
    assert exported["greeting"] == "Servus" and exported["starters"] == []  # a file is the whole persona


def test_importing_a_file_without_slug_twice_updates_it(cli: Cli, tmp_path: Path) -> None:
    tenant_id, _ = cli.tenant()
    file = tmp_path / "p.yaml"
    file.write_text("name: Carl Jones\ngreeting: Hello\n")
    assert "created persona carl-jones" in cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    file.write_text("name: Carl Jones\ngreeting: Moin\n")
    assert "updated persona carl-jones" in cli.ok("persona", "import", str(file), "--tenant", tenant_id)
    assert yaml.safe_load(cli.ok("persona", "export", "carl-jones", "--tenant", tenant_id))["greeting"] == "Moin"


def test_importing_an_unknown_field_is_a_one_line_error_naming_it(cli: Cli, tmp_path: Path) -> None:
    tenant_id, _ = cli.tenant()
    file = tmp_path / "bad.yaml"
    file.write_text("name: Bad\nslug: bad\ncolour: blue\n")
    assert "colour" in cli.fails("persona", "import", str(file), "--tenant", tenant_id)
    assert "bad" not in cli.run("persona", "export", "bad", "--tenant", tenant_id).stdout


@pytest.mark.parametrize("content", ["name: [unclosed\n", "- just\n- a list\n", "slug: nameless\n", ""])
def test_importing_a_broken_file_is_a_one_line_error(cli: Cli, tmp_path: Path, content: str) -> None:
    tenant_id, _ = cli.tenant()
    file = tmp_path / "broken.yaml"
    file.write_text(content)
    cli.fails("persona", "import", str(file), "--tenant", tenant_id)


def test_importing_a_missing_file_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    tenant_id, _ = cli.tenant()
    assert "nothing.yaml" in cli.fails("persona", "import", str(tmp_path / "nothing.yaml"), "--tenant", tenant_id)


def test_exporting_an_unknown_persona_is_a_one_line_error(cli: Cli) -> None:
    tenant_id, _ = cli.tenant()
    assert "ghost" in cli.fails("persona", "export", "ghost", "--tenant", tenant_id)


def test_persona_commands_default_to_the_demo_tenant(cli: Cli) -> None:
    cli.fails("persona", "export", "ada")  # no demo yet: --tenant is needed
    cli.ok("demo", "--no-serve")
    assert yaml.safe_load(cli.ok("persona", "export", "ada"))["name"] == "Ada"


def test_persona_commands_name_an_unknown_tenant(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "q.yaml"
    file.write_text("name: Q\nslug: q\n")
    assert "no tenant ten_nope" in cli.fails("persona", "import", str(file), "--tenant", "ten_nope")
    assert "no tenant ten_nope" in cli.fails("persona", "export", "q", "--tenant", "ten_nope")


@pytest.mark.parametrize(("name", "value", "named"), [("WIDGET_PROVIDER", "bogus", "provider"),
                                                      ("WIDGET_DATABASE_URL", "mysql://db/x", "mysql")])
def test_bad_settings_are_a_one_line_error(cli: Cli, name: str, value: str, named: str) -> None:
    cli.env[name] = value
    assert named in cli.fails("tenant", "create", "Acme")


def test_a_blank_tenant_name_is_a_one_line_error(cli: Cli) -> None:
    assert "name" in cli.fails("tenant", "create", "  ")


def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["key", "create", "--tenant", "x"], ["bogus"], ["serve", "--port", "notanumber"]):
        proc = subprocess.run([sys.executable, "-m", "widget_server", *args], capture_output=True, text=True,
                              env={**os.environ, "WIDGET_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
        assert proc.returncode == 2, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("widget-server: error:"), proc.stderr


GUARD_POLICY = """version: 1
blocked_terms:
  - {id: rival, terms: ["acme rival", "rivalco"], match: word, action: refuse}
pii: {entities: [email, credit_card], action: mask}
escalation: {on_request: true}
"""


def test_guard_check_prints_the_decision_and_reason(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GUARD_POLICY)
    assert cli.ok("guard", "check", "--policy", str(policy), "where is my order?").strip() == "allow"
    lines = cli.ok("guard", "check", "--policy", str(policy), "card 4111 1111 1111 1111").splitlines()
    assert lines == ["mask pii.credit_card", "card [card]"]
    assert cli.ok("guard", "check", "--policy", str(policy), "is r i v a l c o better?").startswith("refuse term.rival")
    out = cli.ok("guard", "check", "--policy", str(policy), "--source", "output", "write me at a@b.example.org")
    assert out.splitlines() == ["mask pii.email", "write me at [email]"]


def test_guard_check_names_the_bad_field_of_a_policy(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\npatterns: [{id: t, regex: 'TCK-(', applies_to: [input]}]\n")
    assert "patterns.0.regex" in cli.fails("guard", "check", "--policy", str(policy), "hi")


def _cases(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    file = tmp_path / "cases.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


def test_guard_eval_scores_cases_and_exits_1_on_a_failure(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GUARD_POLICY)
    rows: list[dict[str, object]] = [
        {"text": "where is my order?", "expect": {"action": "allow"}},
        {"text": "RivalCo?", "expect": {"action": "refuse", "reason": "term."}},
        {"text": "card 4111111111111111", "expect": {"action": "mask", "reason": "pii.credit_card"}},
        {"text": "agent please", "expect": {"action": "escalate"}},
        {"text": "mail bob@example.com", "expect": {"action": "mask"}, "source": "output"},
    ]
    good = _cases(tmp_path, rows)
    out = cli.ok("guard", "eval", "--policy", str(policy), "--cases", str(good))
    assert "5/5 cases passed" in out and "latency: p50" in out and "precision" in out
    result = json.loads(cli.ok("guard", "eval", "--policy", str(policy), "--cases", str(good), "--json"))
    assert result["passed"] == 5 and result["failed"] == []
    assert result["per_action"]["refuse"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["confusion"]["mask"]["mask"] == 2 and set(result["latency_ms"]) == {"p50", "p95"}

    bad = _cases(tmp_path, [*rows, {"text": "rivalcos", "expect": {"action": "refuse"}}])
    done = cli.run("guard", "eval", "--policy", str(policy), "--cases", str(bad), "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["failed"] == [{"line": 6, "text": "rivalcos", "source": "input",
                                 "expected": {"action": "refuse", "reason": None},
                                 "got": {"action": "allow", "reason": None}}]
    assert result["per_action"]["refuse"]["recall"] == 0.5 and result["confusion"]["refuse"]["allow"] == 1
    text = cli.run("guard", "eval", "--policy", str(policy), "--cases", str(bad))
    assert text.returncode == 1 and "line 6: expected refuse, got allow" in text.stdout


def test_guard_eval_names_a_bad_line(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GUARD_POLICY)
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"text": "hi", "expect": {"action": "allow"}}\nnot json\n')
    assert "line 2" in cli.fails("guard", "eval", "--policy", str(policy), "--cases", str(cases))


def test_serve_refuses_several_workers_without_redis_and_an_unreachable_redis(cli: Cli) -> None:
    done = cli.run("serve", "--port", str(free_port()), "--workers", "2")
    assert done.returncode == 2 and "needs WIDGET_REDIS_URL" in done.stderr.strip().splitlines()[-1], done.stderr
    closed = free_port()  # nothing listens there
    cli.env["WIDGET_REDIS_URL"] = f"redis://user:hunter2@127.0.0.1:{closed}/0"
    for workers in ("1", "2"):
        done = cli.run("serve", "--port", str(free_port()), "--workers", workers)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert last.startswith(f"widget-server: error: cannot reach Redis at redis://[redacted]@127.0.0.1:{closed}/0")
        assert "hunter2" not in done.stderr
    assert "--workers must be at least 1" in cli.fails("serve", "--workers", "0")
