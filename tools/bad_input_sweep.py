"""Every bad input of tests/bad_inputs.py, once: which ones the kit refuses clearly, and which it does not.

    .venv/bin/python tools/bad_input_sweep.py            # all cases, on the CPU
    .venv/bin/python tools/bad_input_sweep.py prune fit  # only these entries

Each (entry, argument, bad value) and (entry, model variant) case is classified as clear (the kit raised a
ValueError/TypeError/FileNotFoundError/RuntimeError itself and the model is as it was), raw (the error came
from inside torch or Python, or has another type), silent (no error), mutated (an error, but the model changed),
supported (a model variant the function takes worked and kept its dtype and flags) or refused (such a variant
raised). Prints the counts per class and every case that is not clear or supported, grouped by library file,
and writes bench/results/bad_inputs.json and bench/results/bad_inputs.md (counts and cases; no timings, no
paths). Also lists the clear refusals whose message does not name the argument (a hint, not a class).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MINPRUNE_DEVICE", "cpu")  # as in the tests: the same results on every machine

import bad_inputs  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLASSES = ("clear", "supported", "raw", "silent", "mutated", "refused")


def sweep(entries: list[str] | None = None) -> list[bad_inputs.Outcome]:
    """Run every case (of `entries`, default all) once; torch's own tracebacks printed on stderr are swallowed."""
    cases = [c for c in bad_inputs.all_cases() if not entries or c.entry in entries]
    outcomes = []
    for i, case in enumerate(cases, 1):
        with contextlib.redirect_stderr(io.StringIO()):
            outcomes.append(bad_inputs.run_case(case))
        if i % 100 == 0:
            print(f"  {i}/{len(cases)} cases", file=sys.stderr)
    return outcomes


NAMED_OTHERWISE = ("expects input of shape", "unknown parameter name")  # the model's shape check, the bad names


def names_argument(outcome: bad_inputs.Outcome) -> bool:
    """Whether a clear refusal's message mentions the argument it is about (model variants, the model's own
    input-shape check and unknown-name messages, which quote the bad value, count as naming it)."""
    arg, message = outcome.case.arg, outcome.message.lower()
    return arg == "model" or arg.lower() in message or any(m in message for m in NAMED_OTHERWISE)


def by_file(outcomes) -> dict[str, list]:
    groups = defaultdict(list)
    for o in outcomes:
        groups[o.file].append(o)
    return dict(sorted(groups.items()))


def counts_table(outcomes) -> list[str]:
    counts = Counter(o.klass for o in outcomes)
    lines = ["| class | cases |", "|---|---:|"]
    lines += [f"| {k} | {counts.get(k, 0)} |" for k in CLASSES]
    lines.append(f"| total | {len(outcomes)} |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(outcomes, unnamed) -> str:
    bad = [o for o in outcomes if not o.ok]
    lines = ["# Bad-input sweep", "",
             "`python tools/bad_input_sweep.py`: every (function, argument, certainly invalid value) and (function,",
             "model variant) case of tests/bad_inputs.py, called once on tiny models. clear: the kit refused it",
             "itself and the model is unchanged; raw: the error came from inside torch or Python; silent: no error;",
             "mutated: an error, but the model changed; supported: a model variant the function takes worked;",
             "refused: such a variant raised.", "",
             f"{len(bad_inputs.ENTRIES)} functions, {len(outcomes)} cases.", "", *counts_table(outcomes), ""]
    lines += ["## Cases that are not clear", ""]
    if not bad:
        lines += ["None.", ""]
    for file, group in by_file(bad).items():
        lines += [f"### {file}", "", "| function | argument | value | class | error | message / detail |",
                  "|---|---|---|---|---|---|"]
        for o in group:
            text = "; ".join(t for t in (o.message, o.detail) if t)
            lines.append(f"| {o.case.entry} | {o.case.arg} | {_cell(o.case.value)} | {o.klass} | {o.error} | "
                         f"{_cell(text[:240])} |")
        lines.append("")
    lines += ["## Clear refusals whose message does not name the argument", ""]
    lines += [f"- {o.case}: {_cell(o.message[:160])}" for o in unnamed] or ["None."]
    return "\n".join(lines) + "\n"


def print_report(outcomes, unnamed) -> None:
    counts = Counter(o.klass for o in outcomes)
    print(f"{len(bad_inputs.ENTRIES)} functions, {len(outcomes)} cases")
    for k in CLASSES:
        print(f"  {k:10s} {counts.get(k, 0):5d}")
    for file, group in by_file([o for o in outcomes if not o.ok]).items():
        print(f"\n{file}")
        for o in group:
            print(f"  {o.klass:8s} {o.case}: {o.error} {o.message[:110]}")
            if o.detail:
                print(f"           {o.detail[:160]}")
    print(f"\n{len(unnamed)} clear refusals do not name their argument:")
    for o in unnamed:
        print(f"  {o.case}: {o.message[:110]}")


def main(argv: list[str]) -> int:
    outcomes = sweep(argv or None)
    unnamed = [o for o in outcomes if o.klass == "clear" and not names_argument(o)]
    print_report(outcomes, unnamed)
    if not argv:  # the result files describe the whole table only
        RESULTS.mkdir(parents=True, exist_ok=True)
        data = {"functions": len(bad_inputs.ENTRIES), "cases": len(outcomes),
                "counts": {k: sum(o.klass == k for o in outcomes) for k in CLASSES},
                "not_clear": [o.as_dict() for o in outcomes if not o.ok],
                "unnamed_argument": [str(o.case) for o in unnamed]}
        (RESULTS / "bad_inputs.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        (RESULTS / "bad_inputs.md").write_text(markdown(outcomes, unnamed), encoding="utf-8")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}/bad_inputs.json and bad_inputs.md")
    for folder in bad_inputs._TMP:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
