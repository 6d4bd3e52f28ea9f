"""A group persona's overrides (issue 17): what a support team changes of a generated person, stored beside its
seed and version and laid over the generated fields on every read, so the person is never stored as a copy.

Which fields: those a scenario sets ("a nurse in Austin, TX who trusts Harvest & Co.") and that nothing else of
the person is computed from: the name, occupation, location, personality descriptors, brand affinities and
aversions, digital behaviour, price sensitivity, motivations and languages. Age and gender are not: the avatar
(face age, grey hair) and the generator's coherence rules (education by age, height by sex) read them, and an
override would contradict what they drew. The income level is not either: it is the generator's income bracket,
which the brands and the price sensitivity were derived from; override those instead.

PATCH is a JSON merge patch of the overrides: a field given sets it, `null` removes it (the generated value shows
again), a field left out stays as it was; an unknown field is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from widget_server.domain.people.identity import HERITAGE
from widget_server.domain.people_groups.places import STATES
from widget_server.text import StorableText

STATE_CODES = frozenset(code for code, _ in STATES.values())
LANGUAGES = tuple(sorted({"english", "spanish", *HERITAGE.values()}))  # every language the generator gives
Text = Annotated[str, Field(min_length=1, max_length=100)]
Word = Annotated[str, Field(min_length=1, max_length=40)]
Brand = Annotated[str, Field(min_length=1, max_length=60)]


class Overrides(StorableText):
    """The fields of a group persona that may be overridden; each may be null (remove the override)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    full_name: Text | None = None
    occupation: Text | None = None
    location: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    personality_traits: list[Word] | None = Field(None, min_length=3, max_length=5)
    trusted_brands: list[Brand] | None = Field(None, max_length=5)
    distrusted_brands: list[Brand] | None = Field(None, max_length=5)
    digital_behavior: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    price_sensitivity: Literal["low", "medium", "high"] | None = None
    motivations: list[Text] | None = Field(None, min_length=1, max_length=6)
    languages: list[Literal[LANGUAGES]] | None = Field(None, min_length=1, max_length=5)  # type: ignore[valid-type]

    @field_validator("location")
    @classmethod
    def _city_and_state(cls, value: str | None) -> str | None:
        if value is None:
            return None
        city, sep, code = value.rpartition(", ")
        if not sep or not city or "," in city or code not in STATE_CODES:
            raise ValueError('a location is "City, ST": a city (no comma), then a US postal code like TX')
        return value

    @field_validator("languages")
    @classmethod
    def _once_each(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))


FIELDS = tuple(Overrides.model_fields)


def merged(current: dict[str, Any], patch: Overrides) -> dict[str, Any]:
    """The overrides after this patch: the fields it names set, or removed where it says null."""
    out = {k: v for k, v in current.items() if k in FIELDS}
    for field in patch.model_fields_set:
        value = getattr(patch, field)
        if value is None:
            out.pop(field, None)
        else:
            out[field] = value
    return out


def apply(shown: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The generated fields with the overrides laid over them (a stored key that is no longer a field is left out)."""
    return {**shown, **{k: v for k, v in overrides.items() if k in FIELDS and k in shown}}
