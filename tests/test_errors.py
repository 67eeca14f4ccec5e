"""One-line errors: the hook prints PipelineErrors as ``error: ...``, also from DataLoader workers; importing the
package changes nothing global (the excepthook, matplotlib's backend, MONAI's layer factories)."""
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import monai.networks.layers.factories as monai_factories
import pytest
from monai.networks.layers.factories import LayerFactory
from torch.utils.data import DataLoader, Dataset

import pipeline
from pipeline.errors import PipelineError, _find_pipeline_error

PACKAGE_DIR = Path(pipeline.__file__).resolve().parent


def _all_modules() -> list[str]:
    """Every module under pipeline/, applications included."""
    return ["pipeline"] + sorted(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline."))


def _factories() -> dict[str, LayerFactory]:
    """MONAI's global layer factories (Norm, Act, Conv, Pool, Dropout, Pad, ...)."""
    return {n: f for n, f in vars(monai_factories).items() if isinstance(f, LayerFactory)}


class _BrokenCase(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        raise PipelineError("/data/case_7.nii.gz: image holds 3 NaN and 0 Inf voxels")


@pytest.mark.slow  # DataLoader worker processes
def test_error_from_a_dataloader_worker_comes_back_as_its_one_line():
    with pytest.raises(Exception) as info:
        list(DataLoader(_BrokenCase(), num_workers=1))
    assert str(_find_pipeline_error(info.value)) == "/data/case_7.nii.gz: image holds 3 NaN and 0 Inf voxels"


def test_wrapped_error_is_found_through_the_chain():
    try:
        try:
            raise PipelineError("dataset_dir 'x' does not exist")
        except PipelineError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        assert str(_find_pipeline_error(outer)) == "dataset_dir 'x' does not exist"
    assert _find_pipeline_error(RuntimeError("something else")) is None


def test_no_module_registers_a_layer_in_monai_factories():
    """Whatever was imported before, no layer in MONAI's factories comes from this project's code."""
    for name in _all_modules():
        importlib.import_module(name)
    ours = []
    for factory_name, factory in _factories().items():
        for key, component in factory.components.items():
            code = getattr(component.value, "__code__", None)
            origin = Path(code.co_filename).resolve() if code is not None else None
            module = getattr(component.value, "__module__", "") or ""
            if module.split(".")[0] == "pipeline" or (origin is not None and origin.is_relative_to(PACKAGE_DIR)):
                ours.append(f"{factory_name}[{key}]")
    assert not ours, f"registered by pipeline: {ours}"


@pytest.mark.slow
def test_importing_the_package_has_no_side_effects():
    """In a fresh interpreter: importing pipeline, pipeline.networks and then every module leaves the excepthook,
    matplotlib's backend and the names in MONAI's layer factories as they were."""
    code = (
        "import sys, importlib, matplotlib; import monai.networks.layers.factories as f;"
        "names = lambda: {k: sorted(v.names) for k, v in vars(f).items() if isinstance(v, f.LayerFactory)};"
        "hook = sys.excepthook; backend = matplotlib.get_backend(); before = names();"
        "import pipeline, pipeline.networks; after_networks = names();"
        f"[importlib.import_module(m) for m in {_all_modules()!r}];"
        "assert after_networks == before, ('pipeline.networks changed MONAI factories', after_networks, before);"
        "assert names() == before, ('importing pipeline changed MONAI factories', names(), before);"
        "assert sys.excepthook is hook, 'excepthook changed';"
        "assert matplotlib.get_backend() == backend, 'backend changed'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MPLBACKEND": "svg"},
                          cwd=PACKAGE_DIR.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_installed_hook_prints_one_line_and_exits_non_zero():
    code = ("from pipeline.errors import PipelineError, install_excepthook; install_excepthook(); "
            "raise PipelineError('bad x')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == "error: bad x\n"
