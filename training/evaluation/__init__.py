"""Evaluating a checkpoint: held-out perplexity and bits per byte, lm-evaluation-harness tasks,
and a sample continuation, side by side with an untrained model of the same configuration.

- `config`: what an evaluation is asked to do and what it reports; torch-free, so the
  `evaluation` asset and the web server import it cheaply.
- `heldout`: loss, perplexity and bits per byte on the validation split.
- `offline_tasks`: lm-eval task directories built from held-out documents (no internet).
- `lm_eval_model`: our checkpoints as lm-eval's model `llamapipe`; importing it registers the
  name, and `python -m training.evaluation.lm_eval_model` is lm_eval's CLI with it registered.
- `run`: one whole evaluation (`evaluate_run`), in process or launched as
  `python -m training.evaluation.run --config JOB.json`.

This package imports none of them, so importing `config` alone never pulls in torch or the
harness, and the two programs run with `-m` without being imported twice.
"""
