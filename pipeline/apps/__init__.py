"""Applications on top of the library: the ``python -m pipeline`` command line (``cli``), the context-vs-precision
study (``study``) and the figures (``figures``). Nothing in the library imports them, and ``import pipeline`` does
not load them."""
