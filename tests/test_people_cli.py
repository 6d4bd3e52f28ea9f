"""`widget-server persona generate` (a subprocess, as a user runs it): the same people as the generator, seeds
printed so a drawn person can be made again, and `key create --persona-quota`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import Cli
from widget_server.domain.people import generate


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_a_seed_prints_the_generators_persona(cli: Cli) -> None:
    out = json.loads(cli.ok("persona", "generate", "--seed", "test-123", "--json"))
    assert out == {"seed": "test-123", "generator_version": "2026.2", "data": generate("test-123")}
    old = json.loads(cli.ok("persona", "generate", "--seed", "test-123", "--json", "--version", "2025.1"))
    assert old["data"] == generate("test-123", "2025.1") != out["data"]


def test_a_population_from_one_seed_and_drawn_seeds_that_regenerate(cli: Cli) -> None:
    lines = cli.ok("persona", "generate", "--seed", "team", "--count", "3", "--json").splitlines()
    assert [json.loads(line)["seed"] for line in lines] == ["team:0", "team:1", "team:2"]
    assert cli.ok("persona", "generate", "--seed", "team", "--count", "3", "--json").splitlines() == lines
    drawn = json.loads(cli.ok("persona", "generate", "--json"))
    assert drawn["data"] == generate(drawn["seed"])
    text = cli.ok("persona", "generate", "--seed", "test-123")
    name = generate("test-123")["name"]
    assert text.startswith(f"test-123  {name['first_name']} {name['last_name']}, ")


def test_bad_arguments_are_one_line_errors(cli: Cli) -> None:
    assert "--count" in cli.fails("persona", "generate", "--count", "0")
    assert "--version" in cli.fails("persona", "generate", "--version", "0.1")


def test_key_create_sets_a_persona_quota(cli: Cli) -> None:
    tenant_id, _ = cli.tenant()
    made = json.loads(cli.ok("key", "create", "--tenant", tenant_id, "--kind", "secret", "--persona-quota", "5",
                             "--json"))
    listed = json.loads(cli.ok("key", "list", "--tenant", tenant_id, "--json"))
    assert {k["id"]: k["persona_quota"] for k in listed}[made["id"]] == 5
    assert "persona_quota" in cli.fails("key", "create", "--tenant", tenant_id, "--kind", "secret",
                                        "--persona-quota", "-1")
