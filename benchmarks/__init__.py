"""Performance benchmarks: ``python -m benchmarks.run_all`` runs the CPU ones.

Every script prints ratios against a baseline measured in the same process (see
:mod:`benchmarks.common`); ``docs/performance.md`` holds the figures and the commands.
"""
