"""Checked data lists: the cases of one split of a data set folder, as MONAI's datasets take them.

Paths follow ``monai.data.load_decathlon_datalist`` semantics, training/validation splits follow nnU-Net (sorted
case ids, seeded k-fold). Listing and path checks are in ``pipeline.data.listing``, header-level file checks in
``pipeline.data.case_files``, the splits in ``pipeline.data.splits``. Every problem is a one-line
``PipelineError`` naming the file or case.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.data.listing import SPLITS, dataset_entries
from pipeline.data.splits import split_cases
from pipeline.errors import PipelineError

__all__ = ["load_datalist"]


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `python -m pipeline check-data` lists all)"
        raise PipelineError(problems[0] + (more if len(problems) > 1 else ""))


def load_datalist(
    dataset_dir: str | Path,
    split: str = "training",
    *,
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
    check: bool = True,
    require_labels: bool = False,
) -> list[dict]:
    """Cases of one split as dicts {"image", "label" (absent for unlabelled test cases), "case"}, absolute paths.

    Uses dataset.json (its "validation" list if present, else a split of "training", see split_cases;
    "test" entries may be strings, labels found in labelsTs/ are attached) or plain image/label folders.
    ``check`` runs the header-level checks on every returned case; ``require_labels`` (for evaluation)
    refuses a case without a label. Sorted by case id.
    """
    if split not in SPLITS:
        raise PipelineError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    listing = dataset_entries(dataset_dir)
    groups, meta, source = listing.splits, listing.meta, listing.source
    if split == "test":
        entries = groups["test"]
        if entries is None:
            what = "no 'test' list" if meta is not None and "training" in meta else "no imagesTs/ folder"
            raise PipelineError(f"{source}: {what}")
    elif groups["validation"] is not None:
        if num_folds > 1:
            raise PipelineError(
                f"{source}: has an explicit 'validation' list, so num_folds={num_folds} cannot apply; use num_folds=0"
            )
        entries = groups[split]
    else:
        by_case = {e.case: e for e in groups["training"] or []}
        chosen = split_cases(
            [e.as_dict() for e in by_case.values()],
            split,
            val_fraction=val_fraction,
            num_folds=num_folds,
            fold=fold,
            seed=seed,
        )
        entries = [by_case[c["case"]] for c in chosen]
    entries = sorted(entries or [], key=lambda e: e.case)
    if require_labels:
        unlabelled = [e for e in entries if e.label is None]
        if unlabelled:
            e = unlabelled[0]
            more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
            raise PipelineError(
                f"{e.describe()}: {split} case has no label{more}; "
                "evaluation needs labels (labelsTs/ with the same file names)"
            )
    if check:
        _raise_problems([p for e in entries if (p := e.check()) is not None])
    return [e.as_dict() for e in entries]
