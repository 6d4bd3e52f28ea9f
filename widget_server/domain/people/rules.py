"""The declared rules every persona satisfies: each a name and a predicate over (`data`, the version's reference
date). The tests run them over 20,000 seeds and bench/people.py over 100,000, expecting no violation at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from widget_server.domain.people import body
from widget_server.domain.people.lifestyle import EVER_MARRIED, max_children
from widget_server.domain.people.tables import tables

Data = dict[str, Any]
NO_EARNINGS = {"unemployed", "student", "homemaker", "unable_to_work"}
WORKING = {"employed_full_time", "employed_part_time", "self_employed", "student"}
SECTIONS = {"name": 2, "demographics": 16, "psychology": 7, "lifestyle": 25, "physical": 12}  # 62 with the name


@dataclass(frozen=True)
class Rule:
    name: str
    holds: Callable[[Data, date], bool]


def _age_on(birthday: str, ref: date) -> int:
    born = date.fromisoformat(birthday)
    return ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))


def _sex(data: Data) -> str | None:
    return {"male": "male", "female": "female", "transgender_male": "female",
            "transgender_female": "male"}.get(data["demographics"]["gender"])


def _sizes_match(data: Data) -> bool:
    p = data["physical"]
    sex = _sex(data)
    options = [sex] if sex else ["male", "female"]  # the sex at birth of a non-binary person is not shown
    return any(body.sizes(s, p["height"]["cm"], p["weight"]["bmi"]) == p["clothing_sizes"] for s in options)


def _household(data: Data) -> bool:
    life = data["lifestyle"]
    partner = life["relationship_status"] in ("married", "cohabiting")
    expected = {"alone": 1, "with_partner": 2, "with_roommates": 2, "with_parents": 3}.get(life["living_situation"])
    if expected is not None:
        return bool(life["household_size"] == expected) and partner == (life["living_situation"] == "with_partner")
    if life["living_situation"] == "single_parent":
        return not partner and 2 <= life["household_size"] <= 1 + life["children"]
    return bool(partner and 3 <= life["household_size"] <= 2 + life["children"])  # with_partner_and_children


def _education_age(data: Data, _: date) -> bool:
    demo = data["demographics"]
    return bool(tables().raw["education_min_age"][demo["education"]] <= demo["age"])


RULES: tuple[Rule, ...] = (
    Rule("62 dimensions, PersonaGen's sections",
         lambda d, _: {k: len(v) for k, v in d.items()} == SECTIONS),
    Rule("age is 18 to 85", lambda d, _: 18 <= d["demographics"]["age"] <= 85),
    Rule("age agrees with the birthday and the reference date",
         lambda d, ref: _age_on(d["demographics"]["birthday"], ref) == d["demographics"]["age"]),
    Rule("birth_year is the birthday's year",
         lambda d, _: int(d["demographics"]["birthday"][:4]) == d["demographics"]["birth_year"]),
    Rule("no degree before the age it takes (no doctorate under 26, no master's under 23)", _education_age),
    Rule("BMI is kg/m² to 0.1",
         lambda d, _: d["physical"]["weight"]["bmi"] == body.bmi_of(d["physical"]["weight"]["kg"],
                                                                    d["physical"]["height"]["cm"])),
    Rule("BMI is plausible (15 to 65)", lambda d, _: 15 <= d["physical"]["weight"]["bmi"] <= 65),
    Rule("feet and inches are the centimetres",
         lambda d, _: d["physical"]["height"]["feet_and_inches"] == body.feet_and_inches(
             d["physical"]["height"]["cm"])),
    Rule("pounds are the kilograms", lambda d, _: d["physical"]["weight"]["lbs"] == round(
        d["physical"]["weight"]["kg"] * 2.20462)),
    Rule("clothing sizes follow from height and BMI", lambda d, _: _sizes_match(d)),
    Rule("slim is BMI under 22 and heavyset is 30 or more", lambda d, _: (
        d["physical"]["body_type"] != "slim" or d["physical"]["weight"]["bmi"] < 22) and (
        d["physical"]["body_type"] != "heavyset" or d["physical"]["weight"]["bmi"] >= 30)),
    Rule("married, separated, divorced or widowed: married at least once", lambda d, _: (
        d["lifestyle"]["relationship_status"] not in EVER_MARRIED
        or d["lifestyle"]["marriage_history"] != "never_married")),
    Rule("married twice or more: 30 or older", lambda d, _: (
        d["lifestyle"]["marriage_history"] != "married_twice_or_more" or d["demographics"]["age"] >= 30)),
    Rule("at most one child a year from 17", lambda d, _: (
        0 <= d["lifestyle"]["children"] <= max_children(d["demographics"]["age"]))),
    Rule("the household fits the living situation, partner and children", lambda d, _: _household(d)),
    Rule("retired: 50 or older", lambda d, _: (
        d["demographics"]["employment_status"] != "retired" or d["demographics"]["age"] >= 50)),
    Rule("not earning: no income or under 25k", lambda d, _: (
        d["demographics"]["employment_status"] not in NO_EARNINGS
        or d["demographics"]["income"] in ("no_income", "under_25k"))),
    Rule("employed: some income", lambda d, _: (
        d["demographics"]["employment_status"] in NO_EARNINGS or d["demographics"]["income"] != "no_income")),
    Rule("a commute only for those who work or study", lambda d, _: (
        (d["lifestyle"]["commute_mode"] == "none") == (d["demographics"]["employment_status"] not in WORKING))),
    Rule("US-born exactly when the immigration status says so", lambda d, _: (
        (d["demographics"]["country_of_birth"] == "united_states")
        == d["demographics"]["immigration_status"].startswith("us_born"))),
    Rule("one language at least, none twice", lambda d, _: (
        len(d["demographics"]["languages"]) >= 1
        and len(set(d["demographics"]["languages"])) == len(d["demographics"]["languages"]))),
    Rule("no grey or white hair under 33", lambda d, _: (
        d["physical"]["hair_color"] not in ("gray", "white") or d["demographics"]["age"] >= 33)),
    Rule("three different hobbies", lambda d, _: len(set(d["lifestyle"]["hobbies"])) == 3),
    Rule("living with family only for those living with their parents", lambda d, _: (
        (d["lifestyle"]["housing_tenure"] == "live_with_family")
        == (d["lifestyle"]["living_situation"] == "with_parents"))),
    Rule("the description states the height, weight and eye colour", lambda d, _: all(
        s in d["physical"]["physical_description"] for s in (
            d["physical"]["height"]["feet_and_inches"], f"{d['physical']['weight']['kg']} kg",
            d["physical"]["eye_color"].replace("_", " "))) and f"about {d['demographics']['age']}." in d[
        "physical"]["physical_description"]),
)


def violations(data: Data, ref: date) -> list[str]:
    """The names of the rules this persona breaks (none, for any persona the generator makes)."""
    out = []
    for rule in RULES:
        try:
            ok = rule.holds(data, ref)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            out.append(rule.name)
    return out
