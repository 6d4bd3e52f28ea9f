"""The body: sex and age give height (NCHS means), height and a BMI drawn by sex and age give weight, and the
measurements give the clothing sizes; colouring comes from the ethnicity tables, grey hair from age."""

from __future__ import annotations

from typing import Any

from widget_server.domain.people.stream import Choice, Draws
from widget_server.domain.people.tables import Tables

# Chest and waist as fractions of height, rising with BMI (fitted by eye to ANSUR II / NHANES means).
CHEST = {"male": (0.37, 0.0075), "female": (0.36, 0.0078)}
WAIST = {"male": (0.30, 0.0095), "female": (0.28, 0.0095)}
TOPS = ("XS", "S", "M", "L", "XL", "XXL", "3XL")
TOP_CHEST_CM = {"male": (88, 96, 104, 112, 120, 128), "female": (80, 88, 96, 104, 112, 120)}
STYLES = {"male": Choice.of({"short": 45, "buzz_cut": 12, "medium": 20, "long": 6, "slicked_back": 7, "curly_top": 10}),
          "female": Choice.of({"pixie": 8, "bob": 18, "shoulder_length": 32, "long": 30, "updo": 7, "braids": 5})}
COILY_STYLES = Choice.of({"afro": 25, "braids": 25, "locs": 15, "twists": 15, "buzz_cut": 20})
VISION = Choice.of({"none": 55, "glasses": 33, "contacts": 12})


def measurements(d: Draws, t: Tables, sex: str, age: int) -> dict[str, Any]:
    spec = t.raw["body"][sex]
    shrink = 0.1 * max(0, age - 50)  # people lose about a centimetre a decade after 50
    cm = int(round(min(max(spec["height_mean"] - shrink + spec["height_sd"] * d.normal(), 137.0), 210.0)))
    z = d.normal()
    center = spec["bmi_mean"] - 2.4 + 0.1 * min(age - 18, 37) - 0.08 * max(0, age - 70)
    bmi_drawn = min(max(center + spec["bmi_sd"] * (0.85 * z + 0.15 * (z * z - 1.0)), 16.0), 60.0)
    metres = cm / 100
    kg = round(bmi_drawn * metres * metres, 1)
    return {"height": {"cm": cm, "feet_and_inches": feet_and_inches(cm)},
            "weight": {"kg": kg, "lbs": round(kg * 2.20462), "bmi": bmi_of(kg, cm)}}


def bmi_of(kg: float, cm: int) -> float:
    return round(kg / ((cm / 100) * (cm / 100)), 1)


def feet_and_inches(cm: int) -> str:
    inches = round(cm / 2.54)
    return f"{inches // 12}'{inches % 12}\""


def sizes(sex: str, cm: int, bmi: float) -> dict[str, Any]:
    """Clothing sizes from the measurements (the rule checks them the same way)."""
    base, slope = CHEST[sex]
    chest = cm * (base + slope * bmi)
    top = TOPS[sum(chest >= edge for edge in TOP_CHEST_CM[sex])]
    w_base, w_slope = WAIST[sex]
    waist_in = round(cm * (w_base + w_slope * bmi) / 2.54)
    shoe = (cm - 100) / 7.5 if sex == "male" else (cm - 100) / 8.5
    return {"top": top, "waist_inches": waist_in, "shoe_us": round(max(shoe, 4.0) * 2) / 2}


def colouring(d: Draws, t: Tables, ethnicity: str, sex: str, age: int) -> dict[str, Any]:
    skin = d.pick(t.rows["skin_tone"][ethnicity])
    natural = d.pick(t.rows["hair_color"][ethnicity])
    grey = min(0.95, max(0.0, (age - 32) / 40))
    hair = ("white" if age >= 70 and d.chance(0.4) else "gray") if d.chance(grey) else natural
    texture = d.pick(t.rows["hair_texture"][ethnicity])
    bald = sex == "male" and d.chance(min(0.5, max(0.0, (age - 30) / 80)))
    style = "bald" if bald else d.pick(COILY_STYLES if texture == "coily" and d.chance(0.6) else STYLES[sex])
    vision = d.pick(VISION) if age < 45 else ("glasses" if d.chance(0.75) else d.pick(VISION))
    return {"skin_tone": skin, "hair_color": hair, "hair_texture": texture, "hair_style": style,
            "eye_color": d.pick(t.rows["eye_color"][ethnicity]), "face_shape": d.pick(t.choices["face_shape"]),
            "vision_correction": vision}


def body_type(sex: str, bmi: float, exercise: str) -> str:
    active = exercise in ("3_4_times_week", "daily")
    if bmi < 18.5 or (bmi < 22 and not active):
        return "slim"
    if active and bmi < 27:
        return "athletic"
    if bmi < 25:
        return "average"
    if bmi < 30:
        return "curvy" if sex == "female" else "stocky"
    return "heavyset"
