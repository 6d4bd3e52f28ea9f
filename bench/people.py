"""The persona generator (issue 17): speed, the rules over many seeds, and fidelity to the tables.

    .venv/bin/python -m bench.people [--seeds 100000] [--version 2026.2]

- speed: personas/s on one core, and as a ratio to `json.dumps` of a fixed persona-sized dict measured in the same
  run (the ratio is what to compare between machines);
- rules: every rule of `domain/people/rules.py` over `--seeds` seeds (expected: 0 violations);
- fidelity: the total variation distance (TV, 0 = identical, 1 = disjoint) of each marginal from its table (or
  from the mixture its conditional tables make), then joint checks: a figure next to the table's or the source's.
  First names are held against the SSA counts (names_ssa.json) for every version: TV from the SSA's shares of the
  decade's births (names past the table's cover count as missing), and the top 20's share, drawn and SSA's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from statistics import mean
from typing import Any

from widget_server.domain.people import CURRENT, generate, version
from widget_server.domain.people.identity import band_of
from widget_server.domain.people.rules import violations
from widget_server.domain.people.stream import Draws
from widget_server.domain.people.tables import tables

Persona = dict[str, Any]


def rate(fn: Callable[[int], Any], seconds: float = 2.0) -> float:
    """Calls per second of this process's CPU time: "on one core" even when other work shares the machine."""
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        fn(count)
        count += 1
    return count / (time.process_time() - start)


def tv(observed: Iterable[str], expected: dict[str, float]) -> float:
    counts = Counter(observed)
    n = sum(counts.values())
    keys = set(counts) | set(expected)
    return 0.5 * sum(abs(counts[k] / n - expected.get(k, 0.0)) for k in keys)


def mixture(weights: dict[str, float], rows: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, w in weights.items():
        for value, p in rows[key].items():
            out[value] += w * p
    return dict(out)


def marginals(people: list[Persona]) -> list[tuple[str, float]]:
    t = tables()
    p = {name: c.probabilities() for name, c in t.choices.items()}
    demo = [x["demographics"] for x in people]
    pop = {s: v[0] for s, v in t.states.items()}
    total = sum(pop.values())
    groups = {"low": 0.0, "mid": 0.0, "high": 0.0}
    levels = t.raw["education_levels"]
    for level, w in p["parents_education"].items():
        i = levels.index(level)
        groups["low" if i <= 1 else "mid" if i <= 3 else "high"] += w
    edu_rows = {g: c.probabilities() for g, c in t.rows["education_by_parents"].items()}
    out = [("gender", tv((d["gender"] for d in demo), p["gender"])),
           ("age band", tv((band_of(d["age"], t.raw["age_band"]) for d in demo), p["age_band"])),
           ("ethnicity", tv((d["ethnicity"] for d in demo), p["ethnicity"])),
           ("state (Census population)", tv((d["location"] for d in demo), {s: v / total for s, v in pop.items()})),
           ("parents' education", tv((d["parents_education"] for d in demo), p["parents_education"])),
           ("education, 30+ (mixture by parents)", tv((d["education"] for d in demo if d["age"] >= 30),
                                                       mixture(groups, edu_rows))),
           ("face shape", tv((x["physical"]["face_shape"] for x in people), p["face_shape"])),
           ("religion (overrides: Hindu, Black Protestant)", tv((x["lifestyle"]["religion"] for x in people),
                                                               p["religion"]))]
    band = t.raw["employment_by_age"]
    for key in [k for k in band if not k.startswith("_")]:
        rows = t.rows["employment_by_age"][key].probabilities()
        out.append((f"employment, ages {key}", tv((d["employment_status"] for d in demo
                                                   if band_of(d["age"], band) == key), rows)))
    nominal = {"low": 0.1, "below_average": 0.2, "average": 0.4, "above_average": 0.2, "high": 0.1}
    for trait in ("openness", "extraversion"):
        out.append((f"big five {trait} levels (age trends shift it)", tv(
            (x["psychology"][f"big_five_{trait}"].rsplit("_", 1)[0] for x in people), nominal)))
    return out


def first_names(people: list[Persona]) -> list[tuple[str, float, float, str]]:
    """Per sex and decade of birth, people whose name comes from the decade's table (not Hispanic): TV from the
    SSA's shares of births (the names past the table's cover are never drawn: their share counts as distance), the
    TV of as many draws from the SSA table itself (the floor that sampling alone gives), and the share of the SSA's
    top 20 names, drawn against the SSA's."""
    ssa, out = tables().ssa, []
    for (sex, decade), choice in sorted(ssa.first.items()):
        births = ssa.births[(sex, decade)]
        true = {name: p * choice.total / births for name, p in choice.probabilities().items()}
        drawn = [x["name"]["first_name"] for x in people if x["demographics"]["gender"] == sex
                 and x["demographics"]["ethnicity"] != "hispanic_latino"
                 and str(x["demographics"]["birth_year"] // 10 * 10) == decade]
        uncovered = 0.5 * (1 - sum(true.values()))
        d = Draws("bench", f"{sex}-{decade}")
        floor = tv([d.pick(choice) for _ in drawn], true) + uncovered
        top = frozenset(sorted(true, key=lambda n: -true[n])[:20])
        got = sum(n in top for n in drawn) / max(1, len(drawn))
        out.append((f"{sex} {decade}s (n={len(drawn)})", tv(drawn, true) + uncovered, floor,
                    f"{got:.1%} vs SSA {sum(true[n] for n in top):.1%}"))
    return out


def share(items: list[Any], test: Callable[[Any], bool]) -> float:
    return sum(map(test, items)) / max(1, len(items))


def joints(people: list[Persona]) -> list[tuple[str, str, str]]:
    t = tables()
    d = [(x["demographics"], x) for x in people]
    rich = ("75k_to_100k", "100k_to_150k", "150k_to_250k", "over_250k")
    full = [(a, x) for a, x in d if a["employment_status"] == "employed_full_time"]
    out = []
    for edu in ("high_school_diploma", "bachelor_degree", "doctorate"):
        s = share([a for a, _ in full if a["education"] == edu], lambda a: a["income"] in rich)
        median = t.raw["median_annual_earnings_by_education"][edu]
        out.append((f"income 75k+ among full-time, {edu}", f"{s:.1%}", f"BLS median ${median:,}"))
    for sex, want in (("male", "175.4"), ("female", "161.7")):
        h = [x["physical"]["height"]["cm"] for a, x in d if a["gender"] == sex and a["age"] < 50]
        out.append((f"mean height, {sex} under 50 (cm)", f"{mean(h):.1f}", f"NCHS {want}"))
    out.append(("BMI 30+ (obesity), all adults", f"{share(people, lambda x: x['physical']['weight']['bmi'] >= 30):.1%}",
                "NHANES 2017-18: 41.9%"))
    midlife = mean(x["physical"]["weight"]["bmi"] for a, x in d if 40 <= a["age"] < 60)
    out.append(("BMI mean, ages 40-59", f"{midlife:.1f}", "NHANES: about 30"))
    for decade, name in (("1950", "Mary"), ("1980", "Jessica"), ("2000", "Emily")):
        born = [x for a, x in d if a["gender"] == "female" and a["ethnicity"] != "hispanic_latino"
                and str(a["birth_year"] // 10 * 10) == decade]
        ssa = t.ssa.first[("female", decade)]
        expected = ssa.probabilities()[name] * ssa.total / t.ssa.births[("female", decade)]
        named = sum(x["name"]["first_name"] == name for x in born) / max(1, len(born))
        out.append((f"{name} among women born in the {decade}s", f"{named:.1%}", f"SSA {expected:.1%}"))
    married = [x for a, x in d if 35 <= a["age"] <= 44]
    wed = share(married, lambda x: x["lifestyle"]["relationship_status"] == "married")
    out.append(("married, ages 35-44", f"{wed:.1%}", f"ACS ~59% (n={len(married)})"))
    out.append(("children, mean at 45+", f"{mean(x['lifestyle']['children'] for a, x in d if a['age'] >= 45):.2f}",
                "CPS ~2.0"))
    retired = share([a for a, _ in d if a["age"] >= 67], lambda a: a["employment_status"] == "retired")
    out.append(("retired, 67+", f"{retired:.1%}", "table 76%"))
    hisp = [a for a, _ in d if a["ethnicity"] == "hispanic_latino"]
    out.append(("speak Spanish, Hispanic", f"{share(hisp, lambda a: 'spanish' in a['languages']):.1%}", "ACS ~70%"))
    out.append(("foreign-born, Hispanic", f"{share(hisp, lambda a: a['country_of_birth'] != 'united_states'):.1%}",
                "table 32%"))
    ca = [a for a, _ in d if a["location"] == "california"]
    out.append(("Hispanic, living in California", f"{share(ca, lambda a: a['ethnicity'] == 'hispanic_latino'):.1%}",
                "Census 39%"))
    for lo, hi in ((25, 34), (55, 64)):
        group = [x for a, x in d if lo <= a["age"] <= hi]
        high = share(group, lambda x: x["psychology"]["big_five_conscientiousness"].startswith(("above", "high")))
        out.append((f"conscientiousness above average, {lo}-{hi}", f"{high:.1%}", "rises with age"))
    grey = share([x for a, x in d if a["age"] >= 65], lambda x: x["physical"]["hair_color"] in ("gray", "white"))
    out.append(("grey or white hair, 65+", f"{grey:.1%}", "most"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--version", default=CURRENT, help="the generator version to measure")
    args = parser.parse_args()
    which = version(args.version).name
    print(f"generator version {which}")
    sample = generate("bench", which)
    base = rate(lambda i: json.dumps(sample))
    speed = rate(lambda i: generate(f"speed-{i}", which))
    print(f"speed: {speed:,.0f} personas per CPU second; json.dumps of one persona: {base:,.0f}/s; "
          f"ratio {speed / base:.3f} (target: >= 1,000 personas/s)")
    ref = version(which).reference_date
    start, broken, people = time.perf_counter(), Counter[str](), []
    for i in range(args.seeds):
        persona = generate(f"fidelity-{i}", which)
        broken.update(violations(persona, ref))
        people.append(persona)
    print(f"rules: {args.seeds:,} seeds in {time.perf_counter() - start:.0f}s, violations: {sum(broken.values())}"
          + "".join(f"\n  {name}: {n}" for name, n in broken.most_common()))
    print("\nmarginal | TV from its table")
    for name, distance in marginals(people):
        print(f"{name} | {distance:.4f}")
    print("\nfirst names, not Hispanic: sex, decade of birth | TV from the SSA's shares | sampling floor | "
          "top 20's share, drawn vs SSA")
    for label, distance, floor, top in first_names(people):
        print(f"{label} | {distance:.4f} | {floor:.4f} | {top}")
    print("\njoint check | generated | table or source")
    for row in joints(people):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
