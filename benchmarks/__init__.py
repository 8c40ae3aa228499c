"""Benchmarks of facerestore: the measurements behind docs/benchmarks.md and the model card.

Lab code, not installed with the package. Run a script from the repository root as a module,
``python -m benchmarks.NAME [options]`` (e.g. ``python -m benchmarks.by_scale --help``), so that
the scripts can share :mod:`benchmarks.common` without import-path edits. The evaluation
protocols they report (``benchmarks/protocols/*.toml``) are read by the product's loader,
:mod:`facerestore.protocols`, the one ``facerestore eval --protocol FILE`` uses. Figures and
one-off tools (GPU training, plots, screenshots) are in ``tools/``.
"""
