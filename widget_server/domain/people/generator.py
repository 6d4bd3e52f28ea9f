"""`generate(seed, version)`: one persona, PersonaGen's `data`, drawn in dependency order from one seeded stream.

Order (each line may read what the lines above drew): gender and sex; age, then birthday and birth year against
the version's reference date; ethnicity, then location (Census state shares), birthplace and immigration, then
languages; parents' education, childhood SES, education (capped by age), occupation, employment (by age), income
(by education, employment, age and sex); the name (SSA names of the birth decade and sex, from the version's
table; surnames by ethnicity); personality with age trends; the body (height by sex and age, BMI, weight, sizes);
the household; habits.
"""

from __future__ import annotations

from typing import Any

from widget_server.domain.people import body, identity, lifestyle, psyche
from widget_server.domain.people.describe import physical_description
from widget_server.domain.people.stream import Draws
from widget_server.domain.people.tables import Tables, tables
from widget_server.domain.people.versions import CURRENT, Version, version

DEMOGRAPHICS = ("gender", "ethnicity", "country_of_birth", "immigration_status", "location", "geographic_context",
                "parents_education", "childhood_ses", "education", "occupational_background", "employment_status",
                "income", "languages", "age", "birth_year", "birthday")


def name(d: Draws, t: Tables, who: dict[str, Any], v: Version) -> dict[str, str]:
    sex = identity.NAME_SEX.get(who["gender"]) or ("female" if d.chance(0.5) else "male")
    hispanic = who["ethnicity"] == "hispanic_latino" and d.chance(
        0.7 if who["country_of_birth"] != "united_states" else 0.35)
    decade = str(min(2000, max(1940, who["birthday"].year // 10 * 10)))
    if v.first_names == "ssa":  # the SSA counts of the birth decade (a Spanish name: among the Spanish ones)
        pool = (t.ssa.hispanic if hispanic else t.ssa.first)[(sex, decade)]
    else:
        pool = t.hispanic_first[sex] if hispanic else t.first_names[(sex, decade)]
    first = d.pick(pool)
    eth = who["ethnicity"]
    return {"first_name": first, "last_name": d.pick(t.last_names[eth])}


def generate(seed: str, version_name: str = CURRENT) -> dict[str, Any]:
    """PersonaGen's `data` for this seed: the same seed and version give the same persona, byte for byte."""
    v, t = version(version_name), tables()
    d = Draws(v.name, seed)
    who = identity.person(d, t, v.reference_date)
    who.update(identity.background(d, t, who["age"], who["sex"]))
    who["birth_year"] = who["birthday"].year
    full_name = name(d, t, who, v)
    mind, scores = psyche.psychology(d, t, who["age"], who["sex"], who["education"])
    shape = body.measurements(d, t, who["sex"], who["age"])
    looks = body.colouring(d, t, who["ethnicity"], who["sex"], who["age"])
    life = lifestyle.relationships(d, t, who["age"])
    life.update(lifestyle.beliefs(d, t, who["age"], who["ethnicity"]))
    life.update(lifestyle.habits(d, t, who["age"], shape["weight"]["bmi"], who["employment_status"]))
    life["hobbies"] = lifestyle.hobbies(d, scores)
    life.update(lifestyle.means(d, who["age"], who["geographic_context"], who["employment_status"],
                                who["occupational_background"], who["income"], scores["openness"],
                                life["living_situation"]))
    life["health_status"] = lifestyle.health(d, who["age"], shape["weight"]["bmi"], life["smoking"],
                                             life["exercise_frequency"])
    physical: dict[str, Any] = {**shape, "body_type": body.body_type(who["sex"], shape["weight"]["bmi"],
                                                                      life["exercise_frequency"]),
                                "clothing_sizes": body.sizes(who["sex"], shape["height"]["cm"],
                                                             shape["weight"]["bmi"]), **looks}
    physical["physical_description"] = physical_description(who["age"], who["gender"], physical)
    demographics = {k: who[k] for k in DEMOGRAPHICS}
    demographics["birthday"] = who["birthday"].isoformat()
    return {"name": full_name, "demographics": demographics, "psychology": mind,
            "lifestyle": dict(sorted(life.items())), "physical": physical}
