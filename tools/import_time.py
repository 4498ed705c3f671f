"""How long `import minprune` takes against `import torch`: medians of 5 fresh interpreters each.

    python tools/import_time.py        # prints the medians and the differences (target: at most 0.5 s more)

`import minprune` alone loads nothing (PEP 562), so the fair comparison is also timed: the kit's core loop
(`mp.load`, `mp.build`, `mp.fit`, `mp.prune`, `mp.magnitude_scores`, `mp.evaluate` resolved) against `import torch`.
"""

import statistics
import subprocess
import sys
import time


def median_seconds(statement: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    torch_s, minprune_s = median_seconds("import torch"), median_seconds("import minprune")
    core_s = median_seconds("import minprune as mp; mp.load, mp.build, mp.fit, mp.prune, mp.magnitude_scores, "
                            "mp.evaluate")
    print(f"import torch {torch_s:.2f} s, import minprune {minprune_s:.2f} s: {minprune_s - torch_s:+.2f} s")
    print(f"import minprune + the core loop's functions {core_s:.2f} s: {core_s - torch_s:+.2f} s over torch")
