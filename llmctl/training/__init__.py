"""Training: the data scientist -> Slurm operator hand-off (``llmctl train``).

``slurm`` is the one module that runs Slurm's tools; ``batch`` renders the batch script and
``k8s_job`` the same job as a Kubernetes Job; ``recipe`` is what the job runs; ``run`` submits,
follows and records; ``history`` keeps the run records and compares measured hours with the
estimate. Nothing here is imported by ``llmctl check``.
"""
