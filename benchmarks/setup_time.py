"""The README's set-up on a fresh clone, timed for two commits side by side, with the first imports after it.

For each commit, alternately and ``--repeats`` times: clone the repository at that commit, create an empty virtual
environment, time ``bash scripts/setup.sh`` in it, then time the imports a training run makes (torch, MONAI's
bundle, engine, transform, network and handler packages, ignite, nibabel, scipy.ndimage, matplotlib, TensorBoard's
writer, fire and the pipeline's packages) twice in fresh interpreters: the first import after set-up, which
compiles any module pip did not byte-compile, and a second, warm one. Set-up plus the first import is what a new
user waits before the first training step; the difference between the commits is the measured quantity, so the
two are interleaved on the same machine. pip's download cache is whatever the machine has; a warm-up set-up that is
not timed fills it first, so both commits install from the same cache. With ``PYTHONDONTWRITEBYTECODE`` set (as in
some containers and CI images) Python never caches what it compiles at import; ``--write-bytecode`` removes it from
the children's environment, as on a default Python installation. The result file says which applied.

    python -m benchmarks run setup_time --before HEAD~1 --after HEAD [--repeats 2] [--write-bytecode] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
from pathlib import Path

from benchmarks.common import (fresh_clone, machine_header, quoted_argv, result_path, run_timed, write_json,
                               write_result)

IMPORTS = ("torch, monai, monai.bundle, monai.engines, monai.handlers, monai.transforms, monai.networks.nets, "
           "monai.losses, monai.metrics, monai.inferers, ignite.engine, nibabel, scipy.ndimage, matplotlib.figure, "
           "matplotlib.backends.backend_agg, torch.utils.tensorboard, fire, pipeline.engines, pipeline.handlers, "
           "pipeline.data, pipeline.networks, pipeline.planning, pipeline.transforms, pipeline.losses")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    r = run_timed(cmd, log, env, cwd=cwd, mode="a")
    if r["returncode"]:
        raise SystemExit(f"{shlex.join(cmd)} failed (exit {r['returncode']}); log {log}")
    return r["wall_s"]


def measure(ref: str, work: Path, write_bytecode: bool) -> dict[str, object]:
    clone, venv, env, commit = fresh_clone(ref, work)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = work / "setup.log"
    setup = timed(["bash", "scripts/setup.sh"], clone, env, log)
    py = str(venv / "bin" / "python")
    first = timed([py, "-c", f"import {IMPORTS}"], clone, env, log)
    second = timed([py, "-c", f"import {IMPORTS}"], clone, env, log)
    site = next((venv / "lib").glob("python3*/site-packages"))
    pyc = sum(1 for _ in site.rglob("*.pyc"))
    shutil.rmtree(work, ignore_errors=True)  # a venv with torch is about 1 GB
    return {"commit": commit, "setup": setup, "first": first, "second": second, "pyc": pyc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="commit of the reference set-up")
    ap.add_argument("--after", default="HEAD", help="commit of the set-up under test (default HEAD)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write-bytecode", action="store_true",
                    help="unset PYTHONDONTWRITEBYTECODE for the set-ups and imports (a default Python installation)")
    ap.add_argument("--work", default="/tmp/setup_time")
    ap.add_argument("--out", default=None,
                    help="the report (default benchmarks/results/setup_time[_dontwritebytecode]_cpu.md)")
    args = ap.parse_args()
    # with PYTHONDONTWRITEBYTECODE in effect the result is another one (nothing cached at import): its own file
    variant = None if args.write_bytecode or not os.environ.get("PYTHONDONTWRITEBYTECODE") else "dontwritebytecode"
    out = Path(args.out) if args.out else result_path("setup_time", ".md", variant, by_precision=False)
    work = Path(args.work)
    print("warm-up set-up (fills pip's cache, not timed)", flush=True)
    measure(args.after, work / "warmup", args.write_bytecode)
    rows: list[tuple[str, dict[str, object]]] = []
    for i in range(args.repeats):
        order = (("before", args.before), ("after", args.after))
        for name, ref in order if i % 2 == 0 else order[::-1]:
            r = measure(ref, work / f"{name}{i}", args.write_bytecode)
            print(f"{name} {r}", flush=True)
            rows.append((name, r))

    def med(name: str, key: str) -> float:
        return statistics.median(float(r[key]) for n, r in rows if n == name)

    lines = [
        "# Set-up time on a fresh clone: `bash scripts/setup.sh` in an empty virtual environment, then the first "
        "imports",
        "",
        machine_header(quoted_argv()),
        "- PYTHONDONTWRITEBYTECODE in the set-ups' environment: "
        + ("unset (--write-bytecode)" if args.write_bytecode else os.environ.get("PYTHONDONTWRITEBYTECODE", "unset")),
        "",
        f"Imports timed after set-up, in a fresh interpreter each time: `import {IMPORTS}`.",
        "",
        "| run | commit | set-up (s) | first import (s) | set-up + first import (s) | second import (s) | .pyc files "
        "in site-packages after both |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['commit']} | {r['setup']:.1f} | {r['first']:.1f} | "
                     f"{r['setup'] + r['first']:.1f} | {r['second']:.1f} | {r['pyc']} |")
    for name in ("before", "after"):
        total = med(name, "setup") + med(name, "first")
        lines.append(f"| **{name}, median** | | {med(name, 'setup'):.1f} | {med(name, 'first'):.1f} | "
                     f"{total:.1f} | {med(name, 'second'):.1f} | |")
    write_result(out, lines)
    print(out.read_text())
    figures: dict[str, object] = {}
    for name in ("before", "after"):
        figures.update({f"setup_s_{name}_median": round(med(name, "setup"), 1),
                        f"first_import_s_{name}_median": round(med(name, "first"), 1),
                        f"setup_plus_first_import_s_{name}_median": round(med(name, "setup") + med(name, "first"), 1)})
    write_json("setup_time", figures, lines=lines, variant=variant, by_precision=False, report=out,
               path=out.with_suffix(".json") if args.out else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
