"""Synthetic abdominal CT phantoms with pancreas / pancreatic-tumour labels in the MSD Task07_Pancreas layout.

Each case is an abdomen at the level of the pancreas, built in patient millimetre coordinates (u towards the
patient's right, v anterior, w superior; w = 0 at the portal confluence) from implicit shapes (approximate signed
distances, tubes around spline centre lines, randomly deformed). Shapes are evaluated on a coarse grid inside
their bounding box and trilinearly upsampled to the voxel grid of the case, whose spacing, field of view, axis
order and axis directions are drawn per case and recorded in the NIfTI affine (world coordinates are RAS+).

Modules, one job each, in the order a case is made:

- ``tables``: tissue classes, their HU ranges and the label lookup
- ``geometry``: distance functions, random fields, rotations, spline tubes
- ``grid``: the voxel grid of a case and coarse meshes upsampled onto it
- ``anatomy`` / ``sampling``: one patient's anatomy (a plain description, no voxels) and drawing it
- ``scan``: sampling the acquisition (grid, noise, blur, stored orientation)
- ``canvas`` / ``painting`` / ``painting_organs``: painting the tissue map organ by organ (body wall, skeleton,
  vessels and kidneys; then pancreas, hollow and solid organs)
- ``rendering``: HU from the tissue map, with texture, noise and blur
- ``case``: one case end to end, reoriented into its stored axis order
- ``dataset``: a data set of cases, written by the shared MSD writer (``pipeline.data.msd``)
"""
from pipeline.data.msd import nifti_bytes
from pipeline.data.phantom.case import PhantomCase, case_seed, generate_case
from pipeline.data.phantom.dataset import make_pancreas_dataset
from pipeline.data.phantom.tables import TISSUES

__all__ = ["TISSUES", "PhantomCase", "case_seed", "generate_case", "make_pancreas_dataset", "nifti_bytes"]
