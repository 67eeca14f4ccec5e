"""Data sets: data lists and their checks, MSD / nnU-Net layouts, and the generators of the synthetic data.

- ``datalist``: ``load_datalist``, the checked cases of one split (what the bundles call)
- ``listing``, ``case_files``, ``cases``, ``splits``: listing a data set folder, header checks of a case's files,
  file types and case ids, training/validation splits
- ``integrity``: the whole-data-set check behind ``python -m pipeline check-data``
- ``msd``, ``prepare``: writing and preparing data sets in the MSD layout
- ``nnunet``, ``nnunet_convert``: nnU-Net v2 raw folders, and converting between the MSD and nnU-Net layouts
- ``shapes2d``, ``shapes_variants``, ``phantom``: the 2D shapes and the abdominal CT phantoms

Nothing is imported here, so that importing one module does not load the generators.
"""
