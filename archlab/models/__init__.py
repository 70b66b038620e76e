"""Whole models by family, each registered by name in ``archlab.registry``.

Every module in this package is imported on first use of the registry (``archlab.list_models``),
so a new architecture file registers itself by existing: no list to edit here.
"""
