"""What the context-vs-precision study trains: models, data variants, ablations, seeds and the equal budget.

Every run is a bundle recipe as a user runs it (``bundles/<name>/train.json`` plus fragments, then the bundle's
``inference.json`` on the test split), with the same study-wide overrides for every model of a comparison: the
number of epochs, the validation interval, the batch size, the learning rate and the base width (16 channels,
``STUDY_WIDTH``, which the CT recipe's CPU default of 8 would otherwise change for the 3D and attention models).
The budget is equal in epochs (the same number of gradient steps on the same images), not in wall-clock time: the
CPU is shared and its speed varies, so equal seconds would not be reproducible, and the time each model took is
reported beside its scores.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[3]
UNET_2D, ATTN_2D = "bundles/unet/train.json", "bundles/attn_unet/train.json"
SHAPES_FRAGMENT, CT_FRAGMENT = "configs/data/shapes2d.json", "configs/data/pancreas_ct.json"
BOUNDARY_LOSS = "configs/loss/boundary_weighted.json"
STUDY_WIDTH = 16  # every network of the study, as in docs/study_results (the report's widths start at 16 too)
START, END = "STUDY start ", "STUDY end "  # the child's lines that tell the parent a run started, ended
SPAWNED_AT = "PIPELINE_STUDY_SPAWNED_AT"  # environment: when the parent started the child (time.time())


@dataclass(frozen=True)
class Model:
    """A network as a recipe: label, depth (poolings), training config files, its own overrides."""

    label: str
    depth: int
    train_files: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)


MODELS_2D: dict[str, Model] = {
    "fcn": Model("FCN", 3, (UNET_2D, "configs/net/fcn.json"), {"preset": "standard"}),
    "unet_precision": Model("U-Net precision", 2, (UNET_2D,), {"preset": "precision"}),
    "unet_standard": Model("U-Net standard", 3, (UNET_2D,), {"preset": "standard"}),
    "unet_context": Model("U-Net context", 4, (UNET_2D,), {"preset": "context"}),
    "attention_unet": Model("Attention U-Net", 3, (ATTN_2D, SHAPES_FRAGMENT), {"preset": "standard"}),
}
# 3D: the Attention U-Net bundle and the plain U-Net bundle on the same CT fragment; both base width 16, preset
# standard, deep supervision with 2 side outputs: the networks differ only by the attention gates
MODELS_3D: dict[str, Model] = {
    "unet": Model("U-Net", 3, (UNET_2D, CT_FRAGMENT)),
    "attention_unet": Model("Attention U-Net", 3, (ATTN_2D,)),
}
# Inference: the inference.json of the bundle whose default data these are. It rebuilds whatever network the
# checkpoint's model_config.json names, so every model of a comparison is predicted by the same recipe.
INFER_2D, INFER_3D = ("bundles/unet/inference.json",), ("bundles/attn_unet/inference.json",)


@dataclass(frozen=True)
class Ablation:
    """One ablation arm: on which variant and model, and what changes against the recipe run of the same seed."""

    variant: str
    model: str
    why: str
    extra_files: tuple[str, ...] = ()
    disable_augmentation: str | None = None  # a transform of the shapes fragment's augmentation list, made prob 0


ABLATIONS: dict[str, Ablation] = {
    "boundary_loss": Ablation(
        "precision", "unet_standard",
        "Ronneberger's weighted loss (w0 = 10, sigma = 5 px, class-balancing w_c) up-weights the 1-2 px gaps "
        "between touching objects: the precision data are the ones with such gaps, and the U-Net standard is the "
        "recipe users run (the unet bundle's default)",
        extra_files=(BOUNDARY_LOSS,)),
    "no_elastic": Ablation(
        "context", "unet_context",
        "elastic deformation bends the outlines that alone tell the class in the context data, and the context "
        "U-Net, the largest network, is the one that can overfit the few training images without it",
        disable_augmentation="Rand2DElasticd"),
}


@dataclass(frozen=True)
class Budget:
    """The size of a study: data, seeds, epochs (equal for every model of a comparison), what runs."""

    name: str
    seeds: tuple[int, ...]
    variants: dict[str, int]  # data variant -> image side in pixels
    n_images: int  # per variant: 10 % validation, 20 % test, the rest training
    epochs_2d: int
    val_interval_2d: int
    batch_size_2d: int
    models_2d: tuple[str, ...]
    ablations: tuple[str, ...]
    ct_cases: int  # training + validation phantoms (the seed draws a 20 % validation split)
    ct_test_cases: int
    ct_scale: float  # voxel spacing multiplier of the phantoms (1 = the bundle's default data)
    epochs_3d: int
    val_interval_3d: int
    ct_overrides: dict[str, Any] = field(default_factory=dict)
    ablation_seeds: tuple[int, ...] | None = None  # default: ``seeds``

    def fingerprint(self) -> dict[str, Any]:
        """What a results folder was made with (a rerun into the same folder must match it)."""
        return asdict(self)


FULL = Budget(
    name="full", seeds=(0, 1, 2), variants={"shapes": 64, "context": 96, "precision": 64}, n_images=500,
    epochs_2d=15, val_interval_2d=5, batch_size_2d=16,
    models_2d=tuple(MODELS_2D), ablations=tuple(ABLATIONS),
    ct_cases=24, ct_test_cases=8, ct_scale=1.0, epochs_3d=16, val_interval_3d=8,
)
QUICK = Budget(
    name="quick", seeds=(0,), variants={"shapes": 64, "context": 64, "precision": 64}, n_images=30,
    epochs_2d=1, val_interval_2d=1, batch_size_2d=8,
    models_2d=("fcn", "unet_precision", "attention_unet"), ablations=tuple(ABLATIONS),
    ct_cases=3, ct_test_cases=1, ct_scale=4.0, epochs_3d=1, val_interval_3d=1,
    ct_overrides={"patch_size": [32, 32, 16], "target_spacing": [4.0, 4.0, 6.0]},
)
PARTS = ("2d", "ablation", "3d")


@dataclass(frozen=True)
class RunSpec:
    """One training run and how to score it."""

    part: str  # 2d, ablation or 3d
    variant: str  # a shapes variant, or "pancreas"
    model: str
    arm: str  # "recipe" or the ablation's name
    seed: int
    train_files: tuple[str, ...]
    infer_files: tuple[str, ...]
    overrides: dict[str, Any]

    @property
    def run_id(self) -> str:
        """``part/variant/model[+arm]/seed<n>``: unique in a study, used as the folder name under ``runs/``."""
        arm = "" if self.arm == "recipe" else f"+{self.arm}"
        return f"{self.part}/{self.variant}/{self.model}{arm}/seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON (for the child process)."""
        return {**asdict(self), "run_id": self.run_id}


def _bundle_value(file: str, key: str) -> Any:
    """A top-level value of a config file of this repository (the recipes' own learning rates)."""
    return _read_json(file)[key]


@lru_cache(maxsize=None)
def _read_json(file: str) -> dict[str, Any]:
    path = REPO / file
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: unreadable config ({type(e).__name__}); the study needs the repository's "
                            "bundles and configs") from None


def augmentation_prob_key(target: str) -> str:
    """The config id of the ``prob`` of the ``target`` transform in the shapes fragment's augmentation list."""
    augmentation = _read_json(SHAPES_FRAGMENT)["augmentation"]
    for i, t in enumerate(augmentation):
        if str(t.get("_target_", "")).split(".")[-1] == target:
            return f"augmentation#{i}#prob"
    raise PipelineError(f"{REPO / SHAPES_FRAGMENT}: no {target} in augmentation (the ablation turns it off)")


def plan_runs(budget: Budget, parts: tuple[str, ...] = PARTS) -> list[RunSpec]:
    """Every run of the study in the order they are trained: 2D comparisons, ablation arms (with the recipe run each
    is compared with, if the 2D part does not train it), then 3D."""
    runs: list[RunSpec] = []
    lr_2d = _bundle_value(UNET_2D, "learning_rate")  # the shapes recipe's, for every 2D network
    lr_3d = _bundle_value(ATTN_2D, "learning_rate")  # the CT recipe's, for both 3D networks
    common_2d = {"epochs": budget.epochs_2d, "val_interval": budget.val_interval_2d,
                 "batch_size": budget.batch_size_2d, "learning_rate": lr_2d, "base_width": STUDY_WIDTH}
    if "2d" in parts:
        for variant in budget.variants:
            for name in budget.models_2d:
                m = MODELS_2D[name]
                for seed in budget.seeds:
                    runs.append(RunSpec("2d", variant, name, "recipe", seed, m.train_files, INFER_2D,
                                        {**common_2d, **m.overrides}))
    if "ablation" in parts:
        for arm in budget.ablations:
            a = ABLATIONS[arm]
            m = MODELS_2D[a.model]
            extra = {augmentation_prob_key(a.disable_augmentation): 0.0} if a.disable_augmentation else {}
            for seed in budget.ablation_seeds or budget.seeds:
                baseline = RunSpec("2d", a.variant, a.model, "recipe", seed, m.train_files, INFER_2D,
                                   {**common_2d, **m.overrides})
                if baseline not in runs:  # the recipe run the arm is compared with, when the 2D part lacks it
                    runs.append(baseline)
                runs.append(RunSpec("ablation", a.variant, a.model, arm, seed, m.train_files + a.extra_files,
                                    INFER_2D, {**common_2d, **m.overrides, **extra}))
    if "3d" in parts:
        # one network per run (no cascade's second stage): the study compares networks at one budget
        common_3d = {"epochs": budget.epochs_3d, "val_interval": budget.val_interval_3d, "learning_rate": lr_3d,
                     "base_width": STUDY_WIDTH, "cascade": False, **budget.ct_overrides}
        for name, m in MODELS_3D.items():
            for seed in budget.seeds:
                runs.append(RunSpec("3d", "pancreas", name, "recipe", seed, m.train_files, INFER_3D,
                                    {**common_3d, **m.overrides}))
    return runs
