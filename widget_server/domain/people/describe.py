"""The `physical_description` sentence, written from the attributes themselves (never drawn on its own), so it
cannot contradict them."""

from __future__ import annotations

from typing import Any

PRONOUN = {"male": "He", "female": "She", "transgender_male": "He", "transgender_female": "She"}
BUILD = {"slim": "a slim", "athletic": "an athletic", "average": "an average", "stocky": "a stocky",
         "curvy": "a curvy", "heavyset": "a heavyset"}
HAIR_STYLE = {"bald": "a shaved head", "buzz_cut": "a buzz cut", "slicked_back": "slicked-back",
              "curly_top": "a curly top", "shoulder_length": "shoulder-length", "updo": "an updo of"}


def words(value: str) -> str:
    return value.replace("_", " ")


def _hair(physical: dict[str, Any]) -> str:
    style, colour, texture = physical["hair_style"], words(physical["hair_color"]), physical["hair_texture"]
    if style == "bald":
        return "a shaved head"
    if style in ("afro", "braids", "locs", "twists"):
        return f"{colour} {texture} hair worn in {words(style)}" if style != "afro" else f"a {colour} afro"
    lead = HAIR_STYLE.get(style, words(style))
    joined = f"{lead} {texture} {colour} hair" if lead.endswith(("of", "-length", "back")) or style in (
        "long", "medium", "short") else f"{lead} of {texture} {colour} hair"
    return joined


def physical_description(age: int, gender: str, physical: dict[str, Any]) -> str:
    subject = PRONOUN.get(gender, "They")
    verb = "are" if subject == "They" else "is"
    height, weight = physical["height"], physical["weight"]
    glasses = {"glasses": " and wears glasses", "contacts": " and wears contact lenses"}.get(
        physical["vision_correction"], "")
    looks = "they look" if subject == "They" else "looks"
    article = "an" if physical["face_shape"][0] in "aeiou" else "a"
    return (f"{subject} {verb} {height['feet_and_inches']} ({height['cm']} cm) and {weight['lbs']} lbs "
            f"({weight['kg']} kg) with {BUILD[physical['body_type']]} build, {words(physical['skin_tone'])} skin, "
            f"{_hair(physical)}, {words(physical['eye_color'])} eyes and {article} {physical['face_shape']} "
            f"face{glasses}; {looks} about {age}.")
