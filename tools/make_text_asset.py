"""Write minprune/assets/pydoc_topics.txt.xz, the text of notebooks/12_transformers.ipynb, from pydoc_data.

    python tools/make_text_asset.py           # write the file (refuses on any Python but 3.11.7)
    python tools/make_text_asset.py --check   # compare the shipped file with this Python's pydoc_data text

The shipped file was made on Python 3.11.7; pydoc_data differs between versions, so another Python makes another
text (with another SHA-256, which minprune.text.read_pydoc_text would refuse).
"""

from __future__ import annotations

import argparse
import sys

from minprune.text import TEXT_PYTHON, TEXT_SHA256, pydoc_text, read_pydoc_text, text_file, write_text_asset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text, here = pydoc_text(), ".".join(map(str, sys.version_info[:3]))
    if args.check:
        same = read_pydoc_text() == text
        print(f"{text_file()} {'equals' if same else 'differs from'} the pydoc_data text of Python {here}")
        return 0 if same else 1
    if sys.version_info[:3] != TEXT_PYTHON:
        print(f"refusing: this is Python {here}; the shipped text comes from Python "
              f"{'.'.join(map(str, TEXT_PYTHON))}", file=sys.stderr)
        return 1
    digest = write_text_asset(text, text_file())
    print(f"wrote {text_file()} ({text_file().stat().st_size:,} bytes, {len(text):,} characters), sha256 {digest}")
    if digest != TEXT_SHA256:
        print(f"the text changed: set TEXT_SHA256 in minprune/text.py to {digest}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
