"""Write the generated documents: docs/configuration.md (from configs/ and config.RULES) and
BENCHMARKS.md (from the result files in bench_results/).

    python docs/build.py            # write both
    python docs/build.py --check    # exit 1, naming the file, where a committed one differs
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    from benchmarks.report import benchmarks_markdown
    from config import reference_markdown
    from io_utils import atomic_write, text_writer

    stale = []
    for path, text in ((os.path.join(ROOT, "docs", "configuration.md"), reference_markdown()),
                       (os.path.join(ROOT, "BENCHMARKS.md"), benchmarks_markdown(ROOT))):
        old = None
        if os.path.isfile(path):
            with open(path) as fh:
                old = fh.read()
        if old == text:
            continue
        if args.check:
            stale.append(os.path.relpath(path, ROOT))
            continue
        atomic_write(path, text_writer(text))
        print(f"wrote {os.path.relpath(path, ROOT)}")
    if stale:
        print(f"error: {', '.join(stale)} differ from what python docs/build.py makes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
