"""The reproduction harness: every table and figure of the paper as a grid of runs.

``python -m reproduce table5 --profile mini`` plans the grid of :mod:`reproduce.specs.table5`
(pre-training runs, then evaluations of their checkpoints), launches what has not finished
(:mod:`reproduce.launchers`: inline, local processes, SLURM through submitit), collects the
results from the store (:mod:`reproduce.store`: one JSON per finished run, keyed by a hash of
its resolved config) and renders ``results/<profile>/table5.{md,csv}`` with the paper's numbers
beside ours (:mod:`reproduce.render`, :mod:`reproduce.plots`).

Layers: ``profiles`` (how big), ``paths`` (where the data is), ``runs`` (what a run is and its
hash), ``store`` (what finished), ``execute`` (how one run runs), ``launchers`` (where it runs),
``specs`` (what each table needs and what the paper says), ``render`` / ``plots`` (the output).
"""
