"""Who the person is: gender and sex, age and birthday, ethnicity, where they live and were born, languages,
family background, education, occupation, employment and income (drawn in that dependency order)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from widget_server.domain.people.stream import Draws, exp
from widget_server.domain.people.tables import Tables

SEX_OF_GENDER = {"male": "male", "female": "female", "transgender_male": "female", "transgender_female": "male"}
NAME_SEX = {"male": "male", "female": "female", "transgender_male": "male", "transgender_female": "female"}
HERITAGE = {"mexico": "spanish", "el_salvador": "spanish", "cuba": "spanish", "dominican_republic": "spanish",
            "guatemala": "spanish", "colombia": "spanish", "honduras": "spanish", "venezuela": "spanish",
            "peru": "spanish", "ecuador": "spanish", "puerto_rico": "spanish", "haiti": "haitian_creole",
            "china": "mandarin", "taiwan": "mandarin", "hong_kong": "cantonese", "south_korea": "korean",
            "japan": "japanese", "philippines": "tagalog", "vietnam": "vietnamese", "thailand": "thai",
            "cambodia": "khmer", "laos": "lao", "india": "hindi", "pakistan": "urdu", "bangladesh": "bengali",
            "nepal": "nepali", "sri_lanka": "tamil", "iran": "persian", "egypt": "arabic", "iraq": "arabic",
            "lebanon": "arabic", "syria": "arabic", "morocco": "arabic", "jordan": "arabic", "yemen": "arabic",
            "israel": "hebrew", "germany": "german", "poland": "polish", "ukraine": "ukrainian", "russia": "russian",
            "italy": "italian", "nigeria": "yoruba", "ethiopia": "amharic", "somalia": "somali", "kenya": "swahili",
            "senegal": "french", "cameroon": "french", "congo": "french", "brazil": "portuguese", "samoa": "samoan",
            "tonga": "tongan", "myanmar": "burmese", "bosnia_and_herzegovina": "bosnian", "ghana": "twi"}
AGE_FACTOR = ((24, 0.62), (34, 0.88), (54, 1.08), (200, 1.0))
NO_EARNINGS = {"unemployed", "student", "homemaker", "unable_to_work"}


def band_of(age: int, bands: dict[str, Any]) -> str:
    for band in bands:
        if band.startswith("_"):
            continue
        low, high = band.split("-")
        if int(low) <= age <= int(high):
            return band
    raise ValueError(f"no band for age {age}")


def person(d: Draws, t: Tables, ref: date) -> dict[str, Any]:
    gender = d.pick(t.choices["gender"])
    sex = SEX_OF_GENDER.get(gender) or ("female" if d.chance(0.5) else "male")
    low, high = d.pick(t.choices["age_band"]).split("-")
    age = int(low) + d.below(int(high) - int(low) + 1)
    birthday = _birthday(d, ref, age)
    ethnicity = d.pick(t.choices["ethnicity"])
    location = d.pick(t.state_by_hispanic[ethnicity == "hispanic_latino"])
    urban = t.states[location][1]
    context = _context(d, urban)
    country, status = _origin(d, t, ethnicity)
    return {"gender": gender, "sex": sex, "age": age, "birthday": birthday, "ethnicity": ethnicity,
            "location": location, "geographic_context": context, "country_of_birth": country,
            "immigration_status": status, "languages": _languages(d, t, ethnicity, country, status, location)}


def _birthday(d: Draws, ref: date, age: int) -> date:
    """A day on which someone turning `age` at their last birthday before `ref` was born (after Feb 29: no leap
    birthdays, so that every birthday comes every year)."""
    latest = date(ref.year - age, ref.month, ref.day)  # born this day: turned `age` today
    day = latest - timedelta(days=d.below(365))
    return day if (day.month, day.day) != (2, 29) else day - timedelta(days=1)


def _context(d: Draws, urban: float) -> str:
    u = d.unit()
    if u < urban:
        return "metropolitan_urban" if u < urban * 0.45 else "suburban"
    return "small_town" if u < urban + (1 - urban) * 0.55 else "rural"


def _origin(d: Draws, t: Tables, ethnicity: str) -> tuple[str, str]:
    if d.chance(t.raw["foreign_born_share"][ethnicity]):
        return d.pick(t.rows["birth_countries"][ethnicity]), d.pick(t.choices["foreign_status"])
    second = d.chance(t.raw["second_generation_share"][ethnicity])
    return "united_states", "us_born_second_generation" if second else "us_born_third_generation_plus"


def _languages(d: Draws, t: Tables, ethnicity: str, country: str, status: str, location: str) -> list[str]:
    heritage = HERITAGE.get(country) if country != "united_states" else None
    if heritage is None and ethnicity == "hispanic_latino":
        heritage = "spanish"
    keep = {"us_born_third_generation_plus": 0.4, "us_born_second_generation": 0.75}.get(status, 0.95)
    langs = [] if status in ("permanent_resident", "temporary_visa", "other_status") and d.chance(0.12) else ["english"]
    if heritage and d.chance(keep):
        langs.append(heritage)
    if "spanish" not in langs and d.chance(0.09 if t.states[location][2] > 0.25 else 0.03):
        langs.append("spanish")  # learnt: more often where Spanish is spoken around you
    return langs or [heritage or "english"]


def background(d: Draws, t: Tables, age: int, sex: str) -> dict[str, Any]:
    parents = d.pick(t.choices["parents_education"])
    group = _group(t, parents)
    ses = d.pick(t.rows["childhood_ses_by_parents"][group])
    education = _education_for_age(t, d.pick(t.rows["education_by_parents"][group]), age)
    occupation = d.pick(t.rows["occupation_by_education"][education])
    employment = d.pick(t.rows["employment_by_age"][band_of(age, t.raw["employment_by_age"])])
    return {"parents_education": parents, "childhood_ses": ses, "education": education,
            "occupational_background": occupation, "employment_status": employment,
            "income": _income(d, t, education, employment, age, sex)}


def _group(t: Tables, level: str) -> str:
    index = t.raw["education_levels"].index(level)
    return "low" if index <= 1 else "mid" if index <= 3 else "high"


def _education_for_age(t: Tables, drawn: str, age: int) -> str:
    """The level drawn, or the highest one a person of this age can have finished (no doctorate at 19)."""
    levels: list[str] = t.raw["education_levels"]
    minimum = t.raw["education_min_age"]
    index = levels.index(drawn)
    while index > 0 and minimum[levels[index]] > age:
        index -= 1
    return levels[index]


def _income(d: Draws, t: Tables, education: str, employment: str, age: int, sex: str) -> str:
    z = d.normal()
    if employment in NO_EARNINGS:
        return "no_income" if z < 0.2 else "under_25k"
    earnings = float(t.raw["median_annual_earnings_by_education"][education])
    earnings *= next(f for limit, f in AGE_FACTOR if age <= limit) * (0.83 if sex == "female" else 1.0)
    spread = 0.8 if employment == "self_employed" else 0.5
    earnings *= exp(spread * z) * {"employed_part_time": 0.42, "retired": 0.55}.get(employment, 1.0)
    bracket = "under_25k"
    for name, floor in t.raw["income_brackets"][1:]:
        if earnings >= floor:
            bracket = name
    return bracket
