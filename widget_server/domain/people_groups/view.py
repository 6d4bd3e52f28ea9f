"""A generated person as the persona-groups contract shows it, computed from `generate(seed, version)` every time.

Nothing here is stored: the traits, brands, behaviour and motivations are read off the person's attributes by
fixed rules (the brand names are a small committed table of generic names), and the few choices that are not
(the city, the job title, which brand of a category) come from a hash of the seed, so they never change.
"""

from __future__ import annotations

import hashlib
from typing import Any

from widget_server.domain import people
from widget_server.domain.people_groups.places import STATES

INCOME_LEVEL = {"no_income": "Low", "under_25k": "Low", "25k_to_50k": "Low", "50k_to_75k": "Middle",
                "75k_to_100k": "Middle", "100k_to_150k": "Middle", "150k_to_250k": "High", "over_250k": "High"}
JOBS = {
    "technology_computing": ("software developer", "IT support specialist", "data analyst"),
    "healthcare": ("nurse", "medical assistant", "pharmacist"), "education": ("teacher", "teaching assistant",
                                                                              "school counselor"),
    "business_finance": ("accountant", "financial analyst", "project manager"),
    "sales_retail": ("retail associate", "sales representative", "store manager"),
    "food_service_hospitality": ("line cook", "server", "hotel receptionist"),
    "construction_trades": ("electrician", "carpenter", "plumber"),
    "manufacturing_production": ("machine operator", "assembler", "quality inspector"),
    "transportation_logistics": ("truck driver", "warehouse associate", "delivery driver"),
    "arts_media_entertainment": ("graphic designer", "photographer", "writer"),
    "legal": ("lawyer", "paralegal", "legal secretary"), "science_research": ("lab technician", "research scientist",
                                                                               "environmental scientist"),
    "government_public_service": ("civil servant", "police officer", "social worker"),
    "agriculture": ("farmer", "farmworker", "agricultural technician"),
    "personal_care_service": ("hairdresser", "home care aide", "fitness trainer"),
    "office_administrative": ("office clerk", "administrative assistant", "receptionist"),
    "military": ("soldier", "military officer", "naval technician"),
}
NOT_WORKING = {"student": "student", "retired": "retiree", "unemployed": "job seeker", "homemaker": "homemaker",
               "unable_to_work": "person unable to work"}
# trait: (high descriptor, low descriptor); a Big Five level away from average gives one
TRAITS = {"openness": ("curious", "practical"), "conscientiousness": ("organized", "spontaneous"),
          "extraversion": ("outgoing", "reserved"), "agreeableness": ("warm", "blunt"),
          "neuroticism": ("anxious", "calm")}
STEADY = ("even-keeled", "sociable enough", "fair-minded")  # fills up to three when most traits are average
STRENGTH = {"low": 2, "below_average": 1, "average": 0, "above_average": 1, "high": 2}
# category: brand names by the kind of shopper they suit (generic, invented names)
BRANDS = {
    "groceries": {"budget": "ValuMart", "premium": "Harvest & Co.", "local": "Corner Market"},
    "clothing": {"budget": "ThriftLine", "premium": "Atelier North", "local": "Main Street Outfitters"},
    "electronics": {"budget": "BasicTech", "premium": "Lumen Devices", "local": "Fix-It Electronics"},
    "coffee": {"budget": "Daily Drip", "premium": "Roastery Nine", "local": "Neighborhood Beans"},
    "banking": {"budget": "FreeCheck Bank", "premium": "Sterling Private", "local": "Community Credit Union"},
}


def _pick(seed: str, what: str, options: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"{seed}\x00{what}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _level(value: str, trait: str) -> str:
    return value.removesuffix(f"_{trait}")


def traits(psychology: dict[str, str]) -> list[str]:
    """3-5 descriptors: the traits furthest from average first, then steady ones up to three."""
    found = []
    for trait, (high, low) in TRAITS.items():
        level = _level(psychology[f"big_five_{trait}"], trait)
        if STRENGTH[level]:
            found.append((-STRENGTH[level], high if "above" in level or level == "high" else low))
    out = [name for _, name in sorted(found, key=lambda f: f[0])][:5]
    return out + list(STEADY[: max(0, 3 - len(out))])


def price_sensitivity(income: str, shopping: str) -> str:
    level = INCOME_LEVEL[income]
    if level == "Low" or (level == "Middle" and shopping == "online_first"):
        return "high"
    return "low" if level == "High" and shopping != "online_first" else "medium"


def categories(demo: dict[str, Any], life: dict[str, Any]) -> list[str]:
    """The shopping categories that matter most to this person, most first (from their attributes)."""
    score = {"groceries": life["household_size"] + 2 * life["children"],
             "electronics": {"innovator": 5, "early_adopter": 4}.get(life["tech_adoption"], 1),
             "clothing": 4 if demo["age"] < 35 else 2, "coffee": 3 if demo["employment_status"] in (
                 "employed_full_time", "student") else 1, "banking": 3 if demo["age"] >= 50 else 1}
    return sorted(BRANDS, key=lambda c: (-score[c], c))


def brands(sensitivity: str, context: str, order: list[str]) -> tuple[list[str], list[str]]:
    """Trusted: the kind that suits the shopper, in the categories that matter to them; distrusted: its opposite
    (a bargain hunter distrusts premium names)."""
    liked = {"high": "budget", "medium": "local" if context == "rural" else "budget", "low": "premium"}[sensitivity]
    disliked = "budget" if liked == "premium" else "premium"
    return [BRANDS[c][liked] for c in order[:3]], [BRANDS[c][disliked] for c in order[:2]]


def digital_behavior(life: dict[str, Any]) -> str:
    words = {k: str(life[k]).replace("_", " ") for k in ("tech_adoption", "social_media_use", "shopping_preference",
                                                          "media_consumption")}
    return (f"{words['tech_adoption']} of technology, {words['social_media_use']} social media use, shops "
            f"{words['shopping_preference']}, mostly {words['media_consumption']}")


def motivations(person: dict[str, Any], sensitivity: str) -> list[str]:
    demo, life, psyche = person["demographics"], person["lifestyle"], person["psychology"]
    out = ["getting good value for money" if sensitivity == "high" else "quality that lasts"]
    if life["children"]:
        out.append("what is best for the family")
    if "high" in psyche["big_five_openness"] or "above" in psyche["big_five_openness"]:
        out.append("trying new things")
    if demo["employment_status"] in ("employed_full_time", "self_employed"):
        out.append("saving time")
    out.append({"excellent": "staying active", "good": "staying healthy"}.get(life["health_status"], "feeling better"))
    return out[:4]


def occupation(seed: str, demographics: dict[str, Any]) -> str:
    status = demographics["employment_status"]
    return NOT_WORKING.get(status) or _pick(seed, "job", JOBS[demographics["occupational_background"]])


def location(seed: str, state: str) -> str:
    code, cities = STATES[state]
    return f"{_pick(seed, 'city', cities)}, {code}"


def describe(seed: str, version: str) -> dict[str, Any]:
    """The contract's fields of the person `seed` makes (no ids or times: the caller adds those)."""
    person = people.generate(seed, version)
    demo, life = person["demographics"], person["lifestyle"]
    sensitivity = price_sensitivity(demo["income"], life["shopping_preference"])
    trusted, distrusted = brands(sensitivity, demo["geographic_context"], categories(demo, life))
    return {"full_name": f"{person['name']['first_name']} {person['name']['last_name']}", "age": demo["age"],
            "gender": demo["gender"], "occupation": occupation(seed, demo),
            "location": location(seed, demo["location"]),
            "income_level": INCOME_LEVEL[demo["income"]], "personality_traits": traits(person["psychology"]),
            "trusted_brands": trusted, "distrusted_brands": distrusted, "digital_behavior": digital_behavior(life),
            "price_sensitivity": sensitivity, "motivations": motivations(person, sensitivity),
            "languages": demo["languages"]}
