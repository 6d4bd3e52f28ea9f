"""How the person lives: relationships, marriage history and children consistent with age (ACS marital status by
age, fertility by age), the household they make, faith, politics, habits, media and the like. Weights of the
habits are rounded figures of CDC, Pew and Gallup surveys (data/SOURCES.md)."""

from __future__ import annotations

from typing import Any

from widget_server.domain.people.identity import band_of
from widget_server.domain.people.stream import Choice, Draws
from widget_server.domain.people.tables import Tables

EVER_MARRIED = {"married", "separated", "divorced", "widowed"}
PARTNERED = {"married", "cohabiting"}
C = Choice.of
DIET = C({"omnivore": 70, "flexitarian": 12, "vegetarian": 5, "vegan": 2, "pescatarian": 3, "low_carb": 8})
ALCOHOL = C({"none": 33, "occasional": 35, "moderate": 26, "heavy": 6})
MUSIC = {True: C({"pop": 25, "hip_hop": 25, "rock": 10, "country": 10, "electronic": 10, "latin": 8, "r_and_b": 7,
                  "indie": 5}),
         False: C({"rock": 25, "country": 20, "classic_rock": 15, "pop": 10, "jazz": 8, "r_and_b": 8,
                   "classical": 7, "gospel": 7})}
MEDIA = C({"streaming_tv": 35, "social_video": 20, "news": 15, "podcasts": 12, "books": 10, "video_games": 8})
PETS = C({"none": 38, "dog": 30, "cat": 17, "dog_and_cat": 10, "other_pet": 5})
SHOPPING = {True: C({"online_first": 55, "mixed": 35, "in_store": 10}),
            False: C({"online_first": 20, "mixed": 45, "in_store": 35})}
VEHICLES = {(rural, rich): C({"sedan": 35, "suv": 30, "pickup_truck": 30 if rural else 8, "hatchback": 8,
                              "electric_vehicle": 10 if rich else 3, "minivan": 5})
            for rural in (True, False) for rich in (True, False)}
TRAVEL = C({"rarely": 30, "yearly": 45, "few_times_a_year": 20, "frequent": 5})
POLITICS = C({"very_liberal": 9, "liberal": 18, "moderate": 36, "conservative": 25, "very_conservative": 12})
HOBBIES = ("reading", "hiking", "cooking", "gardening", "gaming", "photography", "running", "yoga", "fishing",
           "painting", "music", "travel", "woodworking", "knitting", "cycling", "board_games", "volunteering",
           "fitness", "birdwatching", "camping", "writing", "dancing", "film", "sports_watching", "baking")
OPEN_HOBBIES = {"painting", "photography", "writing", "travel", "music", "dancing", "film", "yoga"}
SOCIAL_HOBBIES = {"board_games", "volunteering", "dancing", "sports_watching", "travel", "cooking"}


def relationships(d: Draws, t: Tables, age: int) -> dict[str, Any]:
    status = d.pick(t.rows["relationship_by_age"][band_of(age, t.raw["relationship_by_age"])])
    if status in EVER_MARRIED:
        history = "married_twice_or_more" if age >= 30 and d.chance(min(0.3, (age - 25) / 100)) else "married_once"
    else:
        history = "married_once" if age >= 28 and d.chance(0.12) else "never_married"  # divorced, now repartnered
    children = int(d.pick(t.rows["children_by_age"][band_of(age, t.raw["children_by_age"])]))
    children = min(children, max_children(age))
    at_home = children if age < 52 else 0  # children of the over-50s have mostly left home
    if status in PARTNERED:
        living = "with_partner_and_children" if at_home else "with_partner"
    elif at_home:
        living = "single_parent"
    else:
        living = ("with_parents" if age < 27 and d.chance(0.45) else "with_roommates" if age < 35 and d.chance(0.3)
                  else "alone")
    size = 1 + (status in PARTNERED) + at_home + (2 if living == "with_parents" else 1 if living == "with_roommates"
                                                  else 0)
    return {"relationship_status": status, "marriage_history": history, "children": children,
            "living_situation": living, "household_size": size}


def max_children(age: int) -> int:
    """At most one child a year from 17 (the rules hold the generator to this)."""
    return max(0, min(5, age - 17))


def habits(d: Draws, t: Tables, age: int, bmi: float, employment: str) -> dict[str, Any]:
    young = age < 40
    exercise_z = d.normal() - 0.08 * (bmi - 27) - 0.01 * (age - 45)
    exercise = next((n for e, n in ((-1.0, "never"), (-0.3, "rarely"), (0.4, "1_2_times_week"),
                                    (1.1, "3_4_times_week")) if exercise_z < e), "daily")
    smoke_u = d.unit()
    current = 0.08 if age < 25 else 0.13 if age < 65 else 0.08
    former = min(0.45, 0.05 + 0.006 * (age - 18))
    smoking = "current" if smoke_u < current else "former" if smoke_u < current + former else "never"
    chronotype = "morning" if d.chance(0.2 + 0.006 * (age - 18)) else ("evening" if d.chance(0.45 if young else 0.2)
                                                                       else "intermediate")
    return {"diet": d.pick(DIET), "exercise_frequency": exercise, "smoking": smoking, "alcohol_use": d.pick(ALCOHOL),
            "sleep_chronotype": chronotype, "music_genre": d.pick(MUSIC[young]), "media_consumption": d.pick(MEDIA),
            "social_media_use": _social(d, age), "pet_ownership": d.pick(PETS),
            "shopping_preference": d.pick(SHOPPING[young]), "commute_mode": "none" if employment in (
                "unemployed", "retired", "homemaker", "unable_to_work") else "pending"}


def _social(d: Draws, age: int) -> str:
    u = d.unit() + (age - 45) / 60
    return "heavy" if u < 0.25 else "moderate" if u < 0.6 else "light" if u < 0.95 else "none"


def beliefs(d: Draws, t: Tables, age: int, ethnicity: str) -> dict[str, Any]:
    religion = d.pick(t.choices["religion"])
    if religion == "historically_black_protestant" and not ethnicity.startswith("black"):
        religion = "evangelical_protestant"
    if religion == "hindu" and ethnicity != "south_asian" and d.chance(0.8):
        religion = "nothing_in_particular"
    unaffiliated = religion in ("atheist", "agnostic", "nothing_in_particular")
    devout = 0.0 if unaffiliated else 0.25 + 0.006 * (age - 18)
    u = d.unit()
    religiosity = ("secular" if religion in ("atheist", "agnostic") else "very_religious" if u < devout * 0.6
                   else "moderately_religious" if u < devout + 0.25 else "slightly_religious" if u < 0.85
                   else "not_religious")
    return {"religion": religion, "religiosity": religiosity, "political_orientation": d.pick(POLITICS)}


def hobbies(d: Draws, scores: dict[str, float]) -> list[str]:
    """Three different hobbies; the open lean to the arts and travel, the extraverted to the sociable ones."""
    weights = [1.0 + 0.6 * max(0.0, scores["openness"]) * (h in OPEN_HOBBIES)
               + 0.6 * max(0.0, scores["extraversion"]) * (h in SOCIAL_HOBBIES) for h in HOBBIES]
    chosen: list[str] = []
    while len(chosen) < 3:
        pick = d.pick_weighted(HOBBIES, [0.0 if h in chosen else w for h, w in zip(HOBBIES, weights, strict=True)])
        chosen.append(pick)
    return chosen


def means(d: Draws, age: int, context: str, employment: str, occupation: str, income: str,  # noqa: PLR0913
          openness: float, living: str) -> dict[str, Any]:
    rich = income in ("100k_to_150k", "150k_to_250k", "over_250k")
    poor = income in ("no_income", "under_25k")
    own = 0.15 if age < 25 else min(0.8, 0.35 + 0.01 * (age - 25)) + (0.1 if rich else -0.15 if poor else 0.0)
    tenure = "own" if d.chance(own) else "rent"
    tenure = "live_with_family" if living == "with_parents" else tenure
    city = context == "metropolitan_urban"
    vehicle = "none" if d.chance(0.3 if city else 0.06) else d.pick(
        VEHICLES[(context in ("rural", "small_town"), rich)])
    tech_z = openness - 0.03 * (age - 40) + (0.8 if occupation == "technology_computing" else 0.0) + 0.7 * d.normal()
    tech = next((n for e, n in ((-1.3, "laggard"), (-0.4, "late_majority"), (0.5, "early_majority"),
                                (1.3, "early_adopter")) if tech_z < e), "innovator")
    working = employment in ("employed_full_time", "employed_part_time", "self_employed", "student")
    remote = occupation in ("technology_computing", "business_finance", "office_administrative")
    commute = "none" if not working else "remote" if remote and d.chance(0.35) else (
        "public_transit" if city and d.chance(0.3) else "walk_or_bike" if d.chance(0.05)
        else "none" if vehicle == "none" else "car")
    if working and commute == "none":
        commute = "public_transit" if city else "carpool"
    travel = "frequent" if rich and d.chance(0.5) else "rarely" if poor and d.chance(0.6) else d.pick(TRAVEL)
    return {"housing_tenure": tenure, "vehicle": vehicle, "tech_adoption": tech, "commute_mode": commute,
            "travel_frequency": travel}


def health(d: Draws, age: int, bmi: float, smoking: str, exercise: str) -> str:
    z = d.normal() - 0.025 * (age - 45) - 0.05 * max(0.0, bmi - 27) - (0.5 if smoking == "current" else 0.0)
    z += 0.3 if exercise in ("3_4_times_week", "daily") else 0.0
    return next((n for e, n in ((-1.6, "poor"), (-0.8, "fair"), (0.1, "good"), (0.9, "very_good")) if z < e),
                "excellent")
