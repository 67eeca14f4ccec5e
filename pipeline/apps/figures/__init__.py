"""Figures like the report's Fig. 1.9: image, ground truth, prediction and attention maps per case, as PNG.

``cases`` (which cases, their files checked, arrays in display orientation), ``panels`` (one figure per case, drawn
by ``pipeline.handlers.panels``), ``command`` (``python -m pipeline figures``). Nothing is imported here, so that
building the command-line parser stays light.
"""
