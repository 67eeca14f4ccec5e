"""The named data sets of this project's own measurements, and the one place their generator seeds are written.

- **training** and **validation**: a bundle's default data (``default_data`` of its config); validation picks the
  checkpoint (``model.pt``) and nothing else.
- **development**: where recipes are compared (``python -m benchmarks run recipes``). CT: the 4 test phantoms of the
  default data plus 8 phantoms of generator seed 1000 (the "held-out 12" of earlier results, scored by every recipe
  comparison, hence development data now); shapes: the default data's 100 test images. ``DEVELOPMENT_CT_36`` is
  the CT development set enlarged for tumour work: the same 4 test phantoms and 32 of seed 1000, whose first 8 are
  the 8 above (same files: every case has its own seed); the 12 held 7 tumours, too few to rank recipes on.
- **final test**: generated once from the seeds below, scored only by ``python -m benchmarks run final_test``, once
  per bundle version, never while choosing anything. CT: 30 phantoms (about 40 % without a tumour, as the generator
  draws them, for the case-level AUROC), once with the published tumour-contrast distribution and once, same anatomy,
  with the generator's earlier one (``v1``); shapes: 200 images.

A new final test set needs a new seed here and a line in ``docs/decisions.md``: a set that was scored is never
changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.data.prepare import ensure_dataset

__all__ = ["DEVELOPMENT", "DEVELOPMENT_CT_36", "FINAL_TEST", "GeneratedSet", "ensure_generated"]


@dataclass(frozen=True)
class GeneratedSet:
    """A data set the project generates: folder name, generator, arguments; ``split`` is the split that is scored."""

    name: str
    generator: str  # pancreas_phantom or shapes2d
    kwargs: dict[str, Any] = field(default_factory=dict)
    split: str = "test"


DEVELOPMENT: dict[str, tuple[GeneratedSet, ...]] = {
    "ct": (GeneratedSet("pancreas_phantom", "pancreas_phantom", {"n": 24, "seed": 0}),
           GeneratedSet("unseen_phantoms", "pancreas_phantom", {"n": 1, "n_test": 8, "seed": 1000})),
    "shapes": (GeneratedSet("shapes2d", "shapes2d", {"n": 1000, "seed": 0}),),
}

DEVELOPMENT_CT_36: tuple[GeneratedSet, ...] = (
    DEVELOPMENT["ct"][0],
    GeneratedSet("unseen_phantoms_32", "pancreas_phantom",
                 {"n": 1, "n_test": 32, "seed": 1000, "tumour_contrast": "published"}),
)

FINAL_TEST_SEED_CT = 20261207
FINAL_TEST_SEED_SHAPES = 20261208
FINAL_TEST: dict[str, tuple[GeneratedSet, ...]] = {
    "ct": (GeneratedSet("final_test_ct", "pancreas_phantom",
                        {"n": 1, "n_test": 30, "seed": FINAL_TEST_SEED_CT, "tumour_contrast": "published"}),
           GeneratedSet("final_test_ct_v1", "pancreas_phantom",
                        {"n": 1, "n_test": 30, "seed": FINAL_TEST_SEED_CT, "tumour_contrast": "v1"})),
    # 250 images split 25 / 25 / 200: the generator needs training and validation lists; only the 200 are scored
    "shapes": (GeneratedSet("final_test_shapes", "shapes2d",
                            {"n": 250, "seed": FINAL_TEST_SEED_SHAPES, "val_fraction": 0.1, "test_fraction": 0.8}),),
}


def ensure_generated(data_set: GeneratedSet, root: str | Path) -> Path:
    """``root/<name>``, generated first (``pipeline.data.prepare``'s generators) if it holds no data set; an existing
    one is used as it is."""
    out = Path(root) / data_set.name
    return Path(ensure_dataset(out, out, data_set.generator, **data_set.kwargs))
