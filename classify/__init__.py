"""The training engine (map: docs/architecture.md).

``from classify.run import run``; ``run(cfg)`` runs one training job for a ``Config`` built by
``classify.resolve.build_config``. The package itself exports nothing, so that ``classify.run``
is always the module.
"""
