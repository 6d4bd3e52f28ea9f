"""A generated person as a test persona (a simulated visitor) in one call (issue 17): the person of a seed, or a
group's persona, its `system_prompt` written from its attributes, `headers` an Accept-Language from its languages.
The test persona is then an ordinary one (testing/personas.create: the same checks, the same 409 on a name)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from widget_server.backends.storage import Storage
from widget_server.domain import people
from widget_server.domain.people_groups import groups, overrides
from widget_server.domain.people_groups.view import describe
from widget_server.domain.testing import personas as test_personas
from widget_server.text import StorableText

# the generator's language names as BCP 47 tags (the US English of a US resident first)
LANGUAGE_TAGS = {
    "english": "en-US", "spanish": "es", "mandarin": "zh-CN", "cantonese": "zh-HK", "korean": "ko", "japanese": "ja",
    "tagalog": "tl", "vietnamese": "vi", "thai": "th", "khmer": "km", "lao": "lo", "hindi": "hi", "urdu": "ur",
    "bengali": "bn", "nepali": "ne", "tamil": "ta", "persian": "fa", "arabic": "ar", "hebrew": "he", "german": "de",
    "polish": "pl", "ukrainian": "uk", "russian": "ru", "haitian_creole": "ht", "amharic": "am", "bosnian": "bs",
    "burmese": "my", "french": "fr", "italian": "it", "portuguese": "pt", "samoan": "sm", "somali": "so",
    "swahili": "sw", "tongan": "to", "twi": "tw", "yoruba": "yo",
}
WRITING = {"below_basic": "very short messages, simple words, some spelling mistakes",
           "basic": "short, plain sentences and the odd typo",
           "intermediate": "ordinary, clear sentences",
           "proficient": "well-formed, precise sentences"}


class GroupPersonaRef(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True)

    project_id: str = Field(min_length=1, max_length=64)
    group_id: str = Field(min_length=1, max_length=60)
    persona_id: str = Field(min_length=1, max_length=60)


class FromPersonBody(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    seed: str | None = Field(None, min_length=1, max_length=300)
    version: str | None = Field(None, max_length=20)
    group_persona: GroupPersonaRef | None = None
    name: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_source(self) -> FromPersonBody:
        if (self.seed is None) == (self.group_persona is None):
            raise ValueError("give either seed (and optionally version) or group_persona")
        if self.group_persona is not None and self.version is not None:
            raise ValueError("version goes with seed: a group persona has its own")
        return self


def accept_language(languages: list[str]) -> str:
    """Each known language in order, with falling q-values (en-US, then es;q=0.9 ...)."""
    tags = list(dict.fromkeys(LANGUAGE_TAGS[lang] for lang in languages if lang in LANGUAGE_TAGS)) or ["en-US"]
    return ", ".join(tag if i == 0 else f"{tag};q={max(1, 10 - i) / 10:.1f}" for i, tag in enumerate(tags))


def system_prompt(shown: dict[str, Any], person: dict[str, Any]) -> str:
    traits = ", ".join(shown["personality_traits"])
    languages = [lang.replace("_", " ").capitalize() for lang in shown["languages"]]
    style = WRITING.get(person["psychology"]["literacy_level"], "ordinary, clear sentences")
    first = shown["full_name"].split()[0]  # the overridden name's, when there is one
    job = shown["occupation"]
    return (f"You are {shown['full_name']}, {shown['age']}, {'an' if job[0].lower() in 'aeiou' else 'a'} {job} from "
            f"{shown['location']}. "
            f"You write to a shop's support chat as a customer, never as an assistant, and stay in character. "
            f"Your personality: {traits}. You care about {', '.join(shown['motivations'])}; your price "
            f"sensitivity is {shown['price_sensitivity']}, you trust brands like "
            f"{', '.join(shown['trusted_brands'])} and distrust {', '.join(shown['distrusted_brands'])}. "
            f"Online: {shown['digital_behavior']}. How you write: {style}, in "
            f"{' or '.join(languages)}, as {first} would type on their phone or laptop.")


def description(shown: dict[str, Any]) -> str:
    return (f"{shown['full_name']}, {shown['age']}, {shown['occupation']} in {shown['location']} "
            f"({', '.join(shown['personality_traits'][:3])})")


async def _source(storage: Storage, tenant_id: str, spec: FromPersonBody) -> tuple[str, str, dict[str, Any]]:
    """Seed, version and overrides: a group persona's own, or a bare seed's (no overrides)."""
    if spec.group_persona is not None:
        ref = spec.group_persona
        row = await groups.member_of(storage, tenant_id, ref.project_id, ref.group_id, ref.persona_id)
        return row["seed"], row["version"], row["overrides"]
    assert spec.seed is not None  # the validator's rule
    return spec.seed, people.version(spec.version).name, {}


async def create(storage: Storage, tenant_id: str, body: Any) -> dict[str, Any]:
    """The test persona, made as POST /v1/test-personas makes one (409 when the name is taken)."""
    spec: FromPersonBody = groups.validate(FromPersonBody, body)
    seed, version, changed = await _source(storage, tenant_id, spec)
    shown, person = overrides.apply(describe(seed, version), changed), people.generate(seed, version)
    doc = {"name": spec.name or shown["full_name"], "description": description(shown),
           "system_prompt": system_prompt(shown, person), "headers": {"Accept-Language": accept_language(
               shown["languages"])},
           "goal": "Get help from the shop's support chat with a question or a problem of your own", "max_turns": 10}
    return await test_personas.create(storage, tenant_id, doc)
