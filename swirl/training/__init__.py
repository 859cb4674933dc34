"""Stage 2 of SWiRL: LoRA training with the swirl, swirl_offline, sft and oreo objectives (docs/method.md).

`python -m swirl.training --spec spec.json` runs the trainer in its own process (the train stage's
`subprocess` launcher), so `torchrun` / `accelerate launch` can start it on several GPUs with the same code.
"""
