"""The README's demo pictures: run ``avseg demo`` and copy its strip and timeline into ``docs/``.

    python tools/demo_images.py [--out avseg-demo] [--docs docs]

Runs the demo exactly as ``make demo`` does (into ``--out``), then copies
``OUT/demo/strip.png`` to ``DOCS/demo-strip.png`` and ``OUT/demo/timeline.png`` to
``DOCS/demo-timeline.png``: the pictures in the README are the demo's own output,
not drawn by hand.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from avseg.engine.demo import run_demo

PICTURES = {"strip.png": "demo-strip.png", "timeline.png": "demo-timeline.png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("avseg-demo"), help="the demo's output folder (as avseg demo --out)")
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    pictures = run_demo(args.out)["pictures"]
    for name, docs_name in PICTURES.items():
        shutil.copyfile(pictures / name, args.docs / docs_name)
        print(f"{args.docs / docs_name}: from {pictures / name}")


if __name__ == "__main__":
    main()
