"""Planning a run before it starts, and accounting for it after: memory per GPU (`memory`),
steps, FLOPs, GPU-hours, energy and carbon (`compute`, `carbon`), the hardware they assume
(`hardware`) and the paper's own figures they are checked against (`paper`).

Pure arithmetic over `model.config` shapes and `training.config` recipes, so that sizing a 65B
run needs no tensors and no GPU; only `usage` (what a finished run consumed) touches torch.
"""
