"""Personality: Big Five levels from normal scores with the age and sex trends of the literature (conscientiousness
and agreeableness rise with age, neuroticism falls; women score higher on both agreeableness and neuroticism),
literacy by education (NAAL 2003 levels), and a risk tolerance derived from the traits."""

from __future__ import annotations

from typing import Any

from widget_server.domain.people.stream import Draws
from widget_server.domain.people.tables import Tables

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
LEVELS = ((-1.2816, "low"), (-0.5244, "below_average"), (0.5244, "average"), (1.2816, "above_average"))
RISK = ((-1.0, "very_low"), (-0.35, "low"), (0.35, "moderate"), (1.0, "high"))


def level(z: float, table: tuple[tuple[float, str], ...], top: str) -> str:
    return next((name for edge, name in table if z < edge), top)


def trait_scores(d: Draws, age: int, sex: str, education_index: int) -> dict[str, float]:
    a = (min(age, 70) - 45) / 25  # trends flatten in old age
    female = 1.0 if sex == "female" else 0.0
    shift = {"openness": -0.12 * a + 0.06 * (education_index - 2), "conscientiousness": 0.25 * a,
             "extraversion": -0.1 * a, "agreeableness": 0.2 * a + 0.2 * female,
             "neuroticism": -0.2 * a + 0.25 * female}
    return {trait: d.normal() + shift[trait] for trait in TRAITS}


def psychology(d: Draws, t: Tables, age: int, sex: str, education: str) -> tuple[dict[str, Any], dict[str, float]]:
    scores = trait_scores(d, age, sex, t.raw["education_levels"].index(education))
    out: dict[str, Any] = {"literacy_level": d.pick(t.rows["literacy_by_education"][education])}
    for trait in TRAITS:
        out[f"big_five_{trait}"] = f"{level(scores[trait], LEVELS, 'high')}_{trait}"
    risk = 0.45 * scores["openness"] - 0.4 * scores["neuroticism"] - 0.015 * (age - 45) + 0.7 * d.normal()
    out["risk_tolerance"] = level(risk, RISK, "very_high")
    return out, scores
