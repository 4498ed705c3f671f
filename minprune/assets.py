"""Files that ship inside the package: the MNIST sample, the trained baselines and the example recipes.

They live in `minprune/assets/` and are read through `importlib.resources`, so they are found the same way in a
source checkout, an editable install and an installed wheel (`pip install .`):

    assets/mnist_small.npz       5,000 real MNIST digits (see data/README.md)
    assets/baselines/*.pt        the baselines `pretrained` loads, made by `make baselines` (tools/make_baselines.py)
    assets/recipes/*.toml        example pipeline recipes: `load_recipe("lenet5-capstone")`, `minprune run tiny`

See notebooks/00_welcome.ipynb (data) and notebooks/01_train_baseline.ipynb (baselines).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_dir(*parts: str) -> Path:
    """The folder `minprune/assets/<parts...>` as a file system path (the package is installed unzipped)."""
    return Path(str(resources.files("minprune").joinpath("assets", *parts)))


def baselines_dir() -> Path:
    """Where the shipped baseline files are."""
    return asset_dir("baselines")


def shipped_recipes() -> dict[str, Path]:
    """{name: path} of the example recipes that ship with the kit."""
    return {path.stem: path for path in sorted(asset_dir("recipes").glob("*.toml"))}


def recipe_file(name_or_path) -> Path:
    """A recipe's path: an existing file, or the name of a shipped recipe ('lenet5-capstone', 'tiny', ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise FileNotFoundError(f"no recipe file at {path}, and no shipped recipe of that name "
                            f"(shipped: {', '.join(shipped)})")
