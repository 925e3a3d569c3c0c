"""The pipeline steps as plain typed functions (no Hera or KFP imports here).

One package per step (``dataset``, ``train``, ``evaluate``, ``register``), each exporting its step function,
plus ``common`` (shared by every step) and the pipeline-level tasks ``preflight`` and ``finish``.
"""
