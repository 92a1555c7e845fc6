"""The training engine: config, devices, amp, distributed, data, transforms, loop,
schedules, checkpoint, metrics, report. ``classify.run(cfg)`` runs one training job."""

__all__ = ["run"]


def run(cfg):
    from .run import run as _run

    return _run(cfg)
