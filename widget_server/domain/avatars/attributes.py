"""The attributes a portrait is drawn from, in PersonaGen's field names (its `physical` block, with `gender` and
`age` from `demographics`) and snake_case value vocabularies. Every value is an enum member or a bounded integer:
an unknown value is a 400 naming the field, never text that reaches the SVG. A missing attribute is derived from
a seed (the persona's id) through SHA-256, so it is the same on every run, Python version and machine."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from widget_server.domain.avatars.palette import EYES, HAIR, SKIN
from widget_server.domain.guardrails.policy import INTEGRAL
from widget_server.errors import InvalidRequest

SkinTone = Literal["very_fair", "fair", "light", "light_medium", "medium", "olive", "tan", "brown", "dark_brown",
                   "deep"]
HairColor = Literal["black", "dark_brown", "brown", "light_brown", "blonde", "strawberry_blonde", "red", "auburn",
                    "gray", "white"]
HairTexture = Literal["straight", "wavy", "curly", "coily", "bald"]
EyeColor = Literal["brown", "dark_brown", "hazel", "amber", "green", "blue", "gray"]
FaceShape = Literal["oval", "round", "square", "heart", "oblong", "diamond"]
Gender = Literal["male", "female", "non_binary", "transgender_male", "transgender_female", "genderfluid", "agender"]
HairStyle = Literal["short", "buzz_cut", "medium", "long", "slicked_back", "curly_top", "pixie", "bob",
                    "shoulder_length", "updo", "braids", "afro", "locs", "twists", "bald"]
VisionCorrection = Literal["none", "glasses", "contacts"]
Age = Annotated[int, Field(ge=18, le=100), INTEGRAL]

MIN_AGE, MAX_AGE = 18, 100
DERIVED_AGES = (22, 80)  # the span a derived age is drawn from


class AvatarAttributes(BaseModel):
    """One portrait's attributes; all of them given (see `resolve` for a request that names only some)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    gender: Gender
    age: Age
    skin_tone: SkinTone
    hair_color: HairColor
    hair_texture: HairTexture
    eye_color: EyeColor
    face_shape: FaceShape
    vision_correction: VisionCorrection
    hair_style: HairStyle | None = None  # None: the length gender presentation suggests


PHYSICAL = ("skin_tone", "hair_color", "hair_texture", "hair_style", "eye_color", "face_shape", "vision_correction")


VOCABULARIES: dict[str, tuple[str, ...]] = {
    name: get_args(AvatarAttributes.model_fields[name].annotation)
    for name in ("gender", "skin_tone", "hair_color", "hair_texture", "eye_color", "face_shape", "vision_correction")
}
# What a seed draws from: natural hair colours only (grey and white come with age, see svg.shown_hair_color).
DERIVED = {**VOCABULARIES, "hair_color": tuple(c for c in VOCABULARIES["hair_color"] if c not in ("gray", "white"))}
# The palette tables and the vocabularies name the same values (checked at import: a value without a colour
# would be a KeyError at the first request that names it).
assert set(VOCABULARIES["skin_tone"]) == set(SKIN) and set(VOCABULARIES["hair_color"]) == set(HAIR)
assert set(VOCABULARIES["eye_color"]) == set(EYES)


def derived(seed: str) -> dict[str, Any]:
    """Every attribute but `hair_style` drawn from `seed`: byte i of SHA-256("avatar-v1:" + seed) picks the i-th."""
    digest = hashlib.sha256(("avatar-v1:" + seed).encode()).digest()
    out: dict[str, Any] = {name: values[digest[i] % len(values)] for i, (name, values) in
                           enumerate(DERIVED.items())}
    low, high = DERIVED_AGES
    out["age"] = low + int.from_bytes(digest[8:10], "big") % (high - low + 1)
    return out


def _errors(exc: ValidationError) -> dict[str, Any]:
    return {"errors": [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"],
                        "type": e["type"]} for e in exc.errors(include_url=False)]}


def from_person(person: Any) -> dict[str, Any]:
    """The attributes of a generated person (PersonaGen's `data`: `demographics` and `physical`); its other fields
    (height, clothing sizes, the description…) are not drawn and are ignored."""
    if not isinstance(person, dict) or not all(isinstance(person.get(k, {}), dict)
                                               for k in ("demographics", "physical")):
        raise InvalidRequest("person must be PersonaGen's data object", code="avatar.invalid_attribute")
    demographics, physical = person.get("demographics", {}), person.get("physical", {})
    return {**{k: demographics[k] for k in ("gender", "age") if k in demographics},
            **{k: physical[k] for k in PHYSICAL if k in physical}}


def resolve(given: Any, seed: str) -> AvatarAttributes:
    """The attributes a request gave (flat, or a generated person's data under `person`), the missing ones derived
    from `seed`: 400 `avatar.invalid_attribute` for an unknown field or a value outside its vocabulary."""
    if not isinstance(given, dict):
        raise InvalidRequest("attributes must be a JSON object", code="avatar.invalid_attribute")
    if "person" in given:
        given = {**from_person(given["person"]), **{k: v for k, v in given.items() if k != "person"}}
    try:
        return AvatarAttributes.model_validate({**derived(seed), **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "attributes"
        raise InvalidRequest(f"invalid attribute: {where}", code="avatar.invalid_attribute",
                             details=_errors(exc)) from exc
