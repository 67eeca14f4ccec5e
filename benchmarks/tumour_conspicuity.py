"""Is the tumour there to see? The phantom generator's tumour-pancreas contrast and size against published series.

For ``--n`` phantoms of generator seed ``--seed`` (the default training data's seed), each tumour (a connected
component of label 2 at the phantom's own resolution) is measured as the evaluation measures lesions
(``pipeline.evaluation.lesions``): volume in ml and contrast = mean HU of the gland (label 1) within 5 mm minus the
tumour's mean HU. Both tumour-contrast distributions of the generator are measured on the same anatomy: ``v1``
(before 2026-12-07) and ``published`` (the default since). Published portal-venous figures for pancreatic
adenocarcinoma (the sources are in ``pipeline/data/phantom/sampling.py``) stand beside them.

    python -m benchmarks run tumour_conspicuity --n 40
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import quoted_argv, write_json
from pipeline.data.phantom import case_seed, generate_case
from pipeline.evaluation.lesions import MERGE_MM, components, lesion_contrast

PUBLISHED = {
    "Lu 1996 (Radiology 199:697), 27 tumours, portal-venous": "contrast 39 +/- 16 HU",
    "PubMed 17961951, 57 carcinomas, portal-venous": "49 hypo-attenuating 40.5 +/- 23.0 HU; 8 (14 %) "
                                                     "iso-attenuating 7.1 +/- 4.7 HU, 12.4 +/- 4.8 mm across "
                                                     "(hypo 30.3 +/- 9.0 mm)",
    "Prokesch 2002 (Radiology 224:764), 53 tumours, portal-venous": "6 (11 %) iso-attenuating, 4.15 +/- 8.5 HU",
}


def measure(n: int, seed: int, version: str) -> list[dict]:
    """One row per tumour (lesion components as the evaluation forms them) of the first ``n`` phantoms."""
    rows = []
    for i in range(n):
        case = generate_case(case_seed(seed, i), 1.0, version)
        if not case.has_tumour:
            continue
        truth, k = components(case.label == 2, case.spacing, MERGE_MM)
        gland = case.label == 1
        for j in range(1, k + 1):
            mask = truth == j
            volume = float(mask.sum() * np.prod(case.spacing) / 1000.0)
            rows.append({"case": i, "volume_ml": round(volume, 3),
                         "diameter_mm": round(float((6 * volume * 1000 / np.pi) ** (1 / 3)), 1),
                         "contrast_hu": round(lesion_contrast(case.hu.astype(np.float32), mask, gland, case.spacing),
                                              1)})
    return rows


def stats(rows: list[dict]) -> dict[str, float]:
    c = np.array([r["contrast_hu"] for r in rows], float)
    c = c[np.isfinite(c)]
    v = np.array([r["volume_ml"] for r in rows], float)
    return {"tumours": len(rows), "contrast_mean_hu": round(float(c.mean()), 1), "contrast_sd_hu": round(float(c.std()), 1),
            "contrast_median_hu": round(float(np.median(c)), 1),
            "share_below_10_hu": round(float((c < 10).mean()), 3), "share_at_least_20_hu": round(float((c >= 20).mean()), 3),
            "volume_median_ml": round(float(np.median(v)), 2), "volume_min_ml": round(float(v.min()), 2),
            "volume_max_ml": round(float(v.max()), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="phantoms per distribution (about 60 %% have a tumour)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    figures: dict[str, object] = {}
    tables: dict[str, dict[str, list]] = {}
    lines = ["# Tumour conspicuity of the CT phantoms against published portal-venous series", ""]
    for version in ("v1", "published"):
        rows = measure(args.n, args.seed, version)
        s = stats(rows)
        figures.update({f"{version}_{k}": v for k, v in s.items()})
        tables[f"tumours_{version}"] = {k: [r[k] for r in rows] for k in ("case", "volume_ml", "diameter_mm",
                                                                         "contrast_hu")}
        lines.append(f"- {version}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    lines += ["", "Published (portal-venous phase, tumour-pancreas contrast):"]
    lines += [f"- {k}: {v}" for k, v in PUBLISHED.items()]
    figures["published"] = "; ".join(f"{k}: {v}" for k, v in PUBLISHED.items())
    print("\n".join(lines))
    write_json("tumour_conspicuity", figures, lines=lines, by_precision=False, tables=tables, command=quoted_argv(),
               title="Tumour conspicuity of the CT phantoms (v1 and published) against published series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
