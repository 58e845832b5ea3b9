"""Our checkpoints in EleutherAI's lm-evaluation-harness (lm_eval 0.4.x) as model `llamapipe`.

    python -m training.evaluation.lm_eval_model --model llamapipe \
        --model_args checkpoint=RUN_DIR[,max_length=256,dtype=bfloat16,tokenizer=PATH] \
        --batch_size 8 --device cpu \
        --tasks heldout_continuation --include_path TASK_DIR [--limit 20]

(The CLI always passes its own `--batch_size` and `--device`: give them there, not in
`--model_args`, or lm_eval reports the keyword twice.)

The module form is needed: lm_eval 0.4.x knows the models registered in its own process (its
built-ins through a lazy table, others by `@register_model` at import) and discovers none
through entry points, so a bare `lm_eval --model llamapipe` cannot see this class. Running this
module imports the registration and then hands the command line to lm_eval's own CLI (every
lm_eval option works). In Python: `simple_evaluate(model=LlamapipeLM(checkpoint=...), ...)`.

Framing: every text starts with `<s>`, as every document does in the token shards the model
was trained on (curation/tokens/shards.py): contexts are `<s>` + the context's tokens, the
continuation's tokens are those of context + continuation after the context's (the harness's
own split, trailing context spaces moved to the continuation), and a rolling text is scored
as `<s> text` (its tokens, conditioned on `<s>`; no `</s>`, as the harness scores perplexity
tasks). Tokenization is the run's SentencePiece model (`tokenizer.model` of the run's
data_dir, or `tokenizer=PATH`).

An HF export (`llamapipe export-hf --dtype float32`) runs in the stock harness and scores the
same numbers (tests/test_lm_eval.py): `lm_eval --model hf --model_args
pretrained=EXPORT_DIR,add_bos_token=True,dtype=float32 ...` for multiple-choice tasks
(`loglikelihood`). For perplexity tasks (`loglikelihood_rolling`) give `add_bos_token=False`:
the harness conditions rolling texts on `<s>` itself, and with `add_bos_token=True` its
tokenizer adds a second `<s>`, which it then scores as the text's first token.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import lm_eval.models  # noqa: F401  (the built-in lazy table first: see get_model)
import sentencepiece as spm
import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from model.generate import Generator, Sampling
from training.checkpoint import load_model, tokenizer_of

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _int(value, default: int) -> int:
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return default
    return int(value)


@register_model("llamapipe")
class LlamapipeLM(TemplateLM):
    """A llamapipe checkpoint (a run directory or one checkpoint) as an lm_eval model."""

    def __init__(
        self,
        checkpoint: str,
        batch_size: int | str = 8,
        device: str | None = None,
        max_length: int | str | None = None,
        dtype: str = "float32",
        tokenizer: str | None = None,
        **_ignored,  # e.g. max_batch_size, which the CLI always passes
    ) -> None:
        super().__init__()
        model, state = load_model(checkpoint)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device=device, dtype=DTYPES[dtype]).eval()
        self._device = torch.device(device)
        tokenizer = tokenizer or tokenizer_of(state)
        self.sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
        self.batch_size = _int(batch_size, 8)
        self.max_length = _int(max_length, model.config.max_seq_len)
        self._generator: Generator | None = None

    # -- what TemplateLM needs --------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.sp.eos_id()

    @property
    def prefix_token_id(self) -> int:
        return self.sp.bos_id()

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs
    ) -> list[int]:
        """SentencePiece ids, `<s>` first unless add_special_tokens is False."""
        ids = self.sp.encode(string)
        return ids if add_special_tokens is False else [self.sp.bos_id(), *ids]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.sp.decode(list(tokens))

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        """(sum of log p(continuation token), all greedy) per (key, context, continuation)."""
        results: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            rows, spans = [], []
            for _, context, continuation in batch:
                whole = (list(context) + list(continuation))[-(self.max_length + 1) :]
                inputs = whole[:-1]
                rows.append(inputs)
                spans.append((len(inputs) - len(continuation), list(continuation)))
            width = max(len(r) for r in rows)
            tokens = torch.zeros(len(rows), width, dtype=torch.long)
            for i, row in enumerate(rows):
                tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            logprobs = F.log_softmax(self.model(tokens.to(self._device)).float(), dim=-1)
            for i, (first, continuation) in enumerate(spans):
                span = logprobs[i, first : first + len(continuation)]
                target = torch.tensor(continuation, device=span.device)
                value = span.gather(1, target[:, None]).sum().item()
                greedy = bool((span.argmax(dim=-1) == target).all())
                results.append((value, greedy))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole text: disjoint windows of max_length tokens, the first
        conditioned on `<s>` (lm_eval's rolling windows, context 1)."""
        windows, owners = [], []
        for index, request in enumerate(requests):
            (text,) = request.args
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=self.sp.encode(text),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            ):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (value, _) in zip(owners, self._loglikelihood_tokens(windows), strict=True):
            totals[owner] += value
        for index, request in enumerate(requests):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, totals[index])
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, if the task asks) continuations, cut at the first `until`
        string, at most `max_gen_toks` tokens; batched per identical generation settings."""
        if self._generator is None:
            self._generator = Generator(self.model, pad_id=0)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[repr(sorted(request.args[1].items()))].append(index)
        outputs: list[str] = [""] * len(requests)
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            # A task may ask for more tokens than a small model's context holds (HumanEval
            # asks 1024): at most half the context, the rest for the prompt.
            max_new = min(int(kwargs.get("max_gen_toks", 256)), self.max_length // 2)
            sampled = kwargs.get("do_sample", False) and float(kwargs.get("temperature", 0)) > 0
            sampling = Sampling(
                max_new_tokens=max_new,
                temperature=float(kwargs.get("temperature", 0.0)) if sampled else 0.0,
                top_p=kwargs.get("top_p") if sampled else None,
                seed=int(kwargs.get("seed", 0) or 0),
                eos_id=self.eot_token_id,
            )
            keep = max(1, self.max_length - max_new)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts = [self.tok_encode(requests[i].args[0])[-keep:] for i in chunk]
                generation = self._generator.generate(prompts, sampling)
                for i, new in zip(chunk, generation.tokens, strict=True):
                    text = self.sp.decode([t for t in new if t != self.eot_token_id])
                    for stop in until:
                        if stop:
                            text = text.split(stop)[0]
                    outputs[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return outputs


def main(argv: list[str] | None = None) -> None:
    """lm_eval's command line with `llamapipe` registered (module docstring)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = [str(Path(sys.argv[0]).name), *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
