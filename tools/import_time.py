"""How long `import minprune` takes against `import torch`: medians of 5 fresh interpreters each.

    python tools/import_time.py        # prints both medians and the difference (target: at most 0.5 s more)
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
    print(f"import torch {torch_s:.2f} s, import minprune {minprune_s:.2f} s: {minprune_s - torch_s:+.2f} s")
