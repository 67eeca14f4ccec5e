"""The shared MSD writer: layout and dataset.json, checks before any change on disk, overwrite safety."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.msd import MSDCase, MSDDataset, check_msd_target, png_bytes, write_msd_dataset
from pipeline.errors import PipelineError

HEADER = {"name": "Toy", "description": "toy", "reference": "none", "licence": "CC0-1.0", "release": "1",
          "tensorImageSize": "2D", "modality": {"0": "synthetic"}, "labels": {"0": "background", "1": "thing"}}
PATTERN = r"toy_\d+\.bin"


def _dataset(splits: list[str], **kwargs) -> MSDDataset:
    cases = [MSDCase(i, f"toy_{i:03d}.bin", split) for i, split in enumerate(splits)]
    return MSDDataset(header=HEADER, cases=cases, file_pattern=PATTERN, **kwargs)


def _encode(tag: str = "a"):
    def encode(case: MSDCase) -> tuple[bytes, bytes]:
        return f"{tag} image {case.index}".encode(), f"{tag} label {case.index}".encode()
    return encode


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every file and folder under `folder` with its modification time and contents (folders: None)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def test_writes_msd_layout_and_dataset_json(tmp_path: Path) -> None:
    out = tmp_path / "set"
    path = write_msd_dataset(out, _dataset(["training", "validation", "test", "training"]), _encode())
    assert path == out / "dataset.json"
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"]
    assert (out / "imagesTr" / "toy_001.bin").read_bytes() == b"a image 1"
    assert (out / "labelsTs" / "toy_002.bin").read_bytes() == b"a label 2"
    text = path.read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=2) + "\n"
    assert list(meta)[:8] == list(HEADER) and meta["name"] == "Toy"
    assert meta["numTraining"] == 3 and meta["numTest"] == 1
    assert meta["training"] == [{"image": "./imagesTr/toy_000.bin", "label": "./labelsTr/toy_000.bin"},
                                {"image": "./imagesTr/toy_003.bin", "label": "./labelsTr/toy_003.bin"}]
    assert meta["validation"] == [{"image": "./imagesTr/toy_001.bin", "label": "./labelsTr/toy_001.bin"}]
    assert meta["test"] == [{"image": "./imagesTs/toy_002.bin", "label": "./labelsTs/toy_002.bin"}]
    assert not list(out.rglob("*.partial"))


def test_msd_style_test_list_and_indent(tmp_path: Path) -> None:
    dataset = _dataset(["training", "test"], lists=("training", "test"), test_labels_listed=False, json_indent=4)
    path = write_msd_dataset(tmp_path / "set", dataset, _encode(), workers=2)
    meta = json.loads(path.read_text())
    assert "validation" not in meta and meta["test"] == ["./imagesTs/toy_001.bin"]
    assert path.read_text() == json.dumps(meta, indent=4) + "\n"
    assert (tmp_path / "set" / "labelsTs" / "toy_001.bin").read_bytes() == b"a label 1"  # written, not listed


def test_threads_write_the_same_files(tmp_path: Path) -> None:
    splits = ["training"] * 5 + ["test"] * 2
    write_msd_dataset(tmp_path / "one", _dataset(splits), _encode(), workers=1)
    write_msd_dataset(tmp_path / "two", _dataset(splits), _encode(), workers=2)
    one, two = _snapshot(tmp_path / "one"), _snapshot(tmp_path / "two")
    assert {k: v[1] for k, v in one.items()} == {k: v[1] for k, v in two.items()}


def test_existing_data_set_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "set"
    write_msd_dataset(out, _dataset(["training", "test"]), _encode())
    before = _snapshot(out)
    with pytest.raises(PipelineError, match="dataset.json: already exists") as info:
        write_msd_dataset(out, _dataset(["training"]), _encode("b"))
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(out) == before


@pytest.mark.parametrize("content, problem", [('{"name": "Task07_Pancreas", "training": []}', "not a Toy data set"),
                                              ("{not json", "unreadable")])
def test_foreign_or_broken_dataset_json_never_replaced(tmp_path: Path, content: str, problem: str) -> None:
    out = tmp_path / "set"
    (out / "imagesTr").mkdir(parents=True)
    (out / "dataset.json").write_text(content)
    (out / "imagesTr" / "toy_000.bin").write_bytes(b"user data")
    before = _snapshot(out)
    with pytest.raises(PipelineError, match=problem):
        write_msd_dataset(out, _dataset(["training"]), _encode(), overwrite=True)
    assert _snapshot(out) == before


def test_leftover_files_without_dataset_json(tmp_path: Path) -> None:
    out = tmp_path / "set"
    (out / "labelsTr").mkdir(parents=True)
    (out / "labelsTr" / "toy_000.bin").write_bytes(b"interrupted")
    before = _snapshot(out)
    with pytest.raises(PipelineError, match=r"toy_000\.bin: already exists without a dataset.json"):
        write_msd_dataset(out, _dataset(["training"]), _encode())
    assert _snapshot(out) == before
    write_msd_dataset(out, _dataset(["training"]), _encode(), overwrite=True)
    assert (out / "labelsTr" / "toy_000.bin").read_bytes() == b"a label 0"


def test_overwrite_replaces_only_what_the_generator_wrote(tmp_path: Path) -> None:
    out = tmp_path / "set"
    write_msd_dataset(out, _dataset(["training", "training", "test"], lists=("training", "test"),
                                    test_labels_listed=False), _encode())
    # the user adds files of their own, and lists some in dataset.json
    (out / "imagesTr" / "notes.txt").write_text("mine")
    (out / "imagesTr" / "toy_009.bin").write_bytes(b"mine too, not listed")
    (tmp_path / "toy_777.bin").write_bytes(b"outside the data set")
    meta = json.loads((out / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/notes.txt", "label": "../toy_777.bin"})
    (out / "dataset.json").write_text(json.dumps(meta))
    write_msd_dataset(out, _dataset(["training"]), _encode("b"), overwrite=True)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"dataset.json", "imagesTr/toy_000.bin", "labelsTr/toy_000.bin", "imagesTr/notes.txt",
                     "imagesTr/toy_009.bin"}  # stale toy_001 and toy_002 (held-out label too) are gone
    assert (out / "imagesTr" / "toy_000.bin").read_bytes() == b"b image 0"
    assert (tmp_path / "toy_777.bin").is_file()
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 1


def test_paths_that_are_not_folders_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        with pytest.raises(PipelineError, match="exists and is not a folder"):
            write_msd_dataset(out, _dataset(["training"]), _encode())
    assert blocker.read_text() == "x"
    out = tmp_path / "set"
    out.mkdir()
    (out / "labelsTs").write_text("a file where a folder belongs")
    before = _snapshot(out)
    with pytest.raises(PipelineError, match="labelsTs: exists and is not a folder"):
        write_msd_dataset(out, _dataset(["training"]), _encode())
    assert _snapshot(out) == before


@pytest.mark.parametrize("cases", [
    [MSDCase(0, "toy_000.bin", "training"), MSDCase(1, "toy_000.bin", "test")],  # repeated name
    [MSDCase(0, "other.bin", "training")],  # not the generator's own file name
    [MSDCase(0, "toy_000.bin", "holdout")],  # unknown list
    [],
])
def test_bad_case_list_refused(tmp_path: Path, cases: list[MSDCase]) -> None:
    dataset = MSDDataset(header=HEADER, cases=cases, file_pattern=PATTERN)
    with pytest.raises(PipelineError):
        check_msd_target(tmp_path / "set", dataset, overwrite=False)
    with pytest.raises(PipelineError):
        write_msd_dataset(tmp_path / "set", dataset, _encode())
    assert not (tmp_path / "set").exists()


def test_png_bytes_round_trip() -> None:
    array = (np.arange(12 * 10).reshape(12, 10) % 256).astype(np.uint8)
    data = png_bytes(array)
    assert data.startswith(b"\x89PNG") and data == png_bytes(array)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), array)
