"""``python -m benchmarks list`` (one line per benchmark), ``run NAME [args]`` (one benchmark, its own ``--help``),
``page`` (docs/benchmarks.md from the result files)."""
from __future__ import annotations

import argparse
import sys

from benchmarks import BENCHMARKS, get


def list_lines() -> list[str]:
    """One line per benchmark: name, what it measures, rough cost."""
    width = max(len(n) for n in BENCHMARKS)
    return [f"{b.name:<{width}}  {b.measures} [{b.cost}]" for b in BENCHMARKS.values()]


def run(name: str, args: list[str]) -> int:
    """Run benchmark ``name`` with ``args`` as its command line."""
    bench = get(name)
    sys.argv = [f"benchmarks/{bench.name}.py", *args]
    code = bench.module().main()
    return int(code or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the benchmarks, one line each")
    r = sub.add_parser("run", help="run one benchmark; arguments after NAME go to it", add_help=False)
    r.add_argument("name")
    p = sub.add_parser("page", help="write docs/benchmarks.md from benchmarks/results/*.json")
    p.add_argument("--out", default=None)
    if argv[:1] == ["run"] and len(argv) >= 2:
        return run(argv[1], argv[2:])
    args = ap.parse_args(argv)
    if args.command == "list":
        print("\n".join(list_lines()))
        return 0
    if args.command == "page":
        from benchmarks.page import write_page

        print(f"written {write_page(args.out)}")
        return 0
    ap.error("run needs a benchmark NAME")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
