"""``tools/bench.py --levers``: the step-time cost of each lever of "Beyond the seed recipes".

Each lever's training step (``classify.loop.train_step`` on ``TrainParts`` from
``classify.parts.build_train_parts``, as ``classify.run`` builds them) against the default
step (``off``, every lever off) on the same synthetic batch, interleaved ABBA over
``--repeat`` rounds; the best window of each is kept, and the cost is its step time over
``off``'s. Accumulation is timed per batch (its optimizer step every second batch), the
EMA at its default interval (32 optimizer steps: pass ``--steps`` >= 32 to include an update)
and every step (``ema_every_step``, the worst case).
"""

from typing import Callable, Dict, List, Sequence

from classify.schema import LeverConfig
from classify.loop import Micro, train_step
from classify.metrics import Meter

__all__ = ["LEVERS", "bench_levers"]

LEVERS = {
    "off": LeverConfig(),
    "grad_accum_2": LeverConfig(grad_accum_steps=2),
    "clip_grad_norm": LeverConfig(clip_grad_norm=1.0),
    "model_ema": LeverConfig(model_ema=True),
    "ema_every_step": LeverConfig(model_ema=True, model_ema_steps=1),
    "mixup_cutmix": LeverConfig(mixup_alpha=0.2, cutmix_alpha=1.0),
    "norm_bias_wd_0": LeverConfig(norm_weight_decay=0.0, bias_weight_decay=0.0),
}


def _step(parts, images, target) -> Callable[[], None]:
    parts.model.train()
    meter, n, count = Meter(["loss", "acc1", "acc5"], parts.device), images.shape[0], [0]
    if parts.accum_steps == 1:
        return lambda: train_step(parts, images, target, meter=meter, n=n)

    def accumulate():
        micro = Micro.at(count[0] % parts.accum_steps, parts.accum_steps, pass_start=0, pass_end=parts.accum_steps)
        count[0] += 1
        train_step(parts, images, target, meter=meter, n=n, micro=micro)

    return accumulate


def bench_levers(net, s, names: Sequence[str], progress, *, make_parts, synthetic_batch, time_steps) -> List[Dict]:
    """Rows ``arch, lever, img_per_s, step_ms, cost_pct`` (cost vs ``off`` in the same run);
    ``make_parts``/``synthetic_batch``/``time_steps``: tools/bench.py's."""
    names = ["off", *[n for n in names if n != "off"]]
    uint8, _, target = synthetic_batch(net, s)
    steps = {name: _step(make_parts(net, s, levers=LEVERS[name]), uint8, target) for name in names}
    best = {name: 0.0 for name in names}
    for r in range(s.repeat):
        for name in (names if r % 2 == 0 else names[::-1]):  # ABBA: the machine's drift cancels
            _, run_s = time_steps(steps[name], s.device, s.warmup if r == 0 else 1, s.steps)
            best[name] = max(best[name], s.steps * s.batch_size / run_s)
            progress(f"{net.arch} lever {name}: {s.steps * s.batch_size / run_s:.1f} img/s")
    return [{"arch": net.arch, "lever": name, "img_per_s": round(best[name], 1),
             "step_ms": round(1000 * s.batch_size / best[name], 2),
             "cost_pct": round(100 * (best["off"] / best[name] - 1), 1)} for name in names]
