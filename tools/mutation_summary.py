"""Survivors of the last ``make mutation`` run, grouped by module and function, as Markdown.

    .venv/bin/python -m tools.mutation_summary [--write]

Reads ``mutmut results --all true`` (the state under ``mutants/``); ``--write`` replaces the table
between the markers in docs/mutation.md. Statuses: killed (a test failed), survived (no test
failed), no tests (no selected test runs the function), timeout, suspicious, skipped.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mutation.md"
BEGIN, END = "<!-- mutation:begin -->", "<!-- mutation:end -->"
LINE = re.compile(r"^\s*(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<func>\w+?)__mutmut_\d+: (?P<status>[\w ]+)$")


def results() -> list[tuple[str, str, str]]:
    mutmut = pathlib.Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            func = f"{m['cls']}.{m['func']}" if m["cls"] else m["func"]
            rows.append((m["module"], func, m["status"].strip()))
    return rows


def table(rows: list[tuple[str, str, str]]) -> str:
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors: dict[tuple[str, str], int] = collections.Counter()
    for module, func, status in rows:
        by_module[module][status] += 1
        if status == "survived":
            survivors[module, func] += 1
    statuses = ["killed", "survived", "no tests", "timeout", "suspicious", "skipped", "not checked"]
    out = ["| module | mutants | " + " | ".join(statuses) + " | killed % |", "|---|---" + "|---" * len(statuses) + "|---|"]
    for module in sorted(by_module):
        c = by_module[module]
        n = sum(c.values())
        out.append(f"| `{module}` | {n} | " + " | ".join(str(c[s]) for s in statuses)
                   + f" | {100 * c['killed'] / max(n, 1):.0f} |")
    out += ["", "Survivors by function (most first):", "", "| function | survived |", "|---|---|"]
    out += [f"| `{m}.{f}` | {k} |" for (m, f), k in survivors.most_common()]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = ap.parse_args()
    text = table(results())
    print(text)
    if args.write:
        doc = DOC.read_text()
        a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:a] + "\n" + text + doc[b:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
