"""The stages the runner runs: each maps input shards to output shards with one model per actor.

* ``answer`` (:mod:`ray_bench.stages.answer`): questions -> results (scores, generations);
* ``judge`` (:mod:`ray_bench.stages.judge`): open-ended results -> safety judgements.

A stage is plain Python (no Ray): :class:`ray_bench.stages.base.Stage` says what the Ray
runner (``ray_bench.runner``) needs from it. New stages implement that protocol.
"""
