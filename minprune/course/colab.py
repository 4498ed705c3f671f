"""The Google Colab header of every notebook: an "Open in Colab" badge and a setup cell.

`tools/py2nb.py` puts both at the top of each notebook it builds. The setup cell runs before minprune exists on
a Colab machine, so it is plain text here, not a function: on Colab (and only there), and only when minprune is
not installed yet, it installs the kit from its repository without its dependencies, then the dependencies
except torch and torchvision, so that Colab's own CUDA build of torch stays in place. Anywhere else it does
nothing. tests/test_colab.py runs the cell's logic with a pretend Colab and records what it would install.
"""

from __future__ import annotations

REPOSITORY = "github.com/minprune/minprune"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
KEEP = ("torch", "torchvision")  # Colab ships them built for its GPU: never replace them

SETUP_CELL = f'''\
# Setup on Google Colab only (elsewhere this cell does nothing): install minprune, keep Colab's torch.
import importlib.metadata
import importlib.util
import re
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("minprune") is None:
    def pip_install(*args):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)

    pip_install("--no-deps", "minprune @ git+https://{REPOSITORY}@{BRANCH}")
    importlib.invalidate_caches()
    needed = [r for r in importlib.metadata.requires("minprune") or []
              if "extra ==" not in r and re.split(r"[\\s<>=!~;\\[(]", r, maxsplit=1)[0] not in {KEEP!r}]
    pip_install(*needed)'''


def badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of `notebook` (a path such as 'notebooks/00_welcome.ipynb')."""
    owner_repo = REPOSITORY.split("/", 1)[1]
    url = f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/{notebook}"
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})"
