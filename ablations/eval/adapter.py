"""lm-eval's model interface for our checkpoints: `lm_eval.simple_evaluate(model="mobilellm", ...)`.

Tokenisation, BOS handling, the context/continuation split (`TemplateLM._encode_pair`: encode the whole
string, cut at the context's length, so a token spanning the join never breaks a request) follow lm-eval's
own `hf` model, so both give the same scores on the same weights. What is faster: no HF wrapper; the
vocabulary projection and log-softmax run only on the continuation positions; and the choices of one
question are packed into one sequence behind their shared context (computed once), each at the positions
it would have alone and masked from the others.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator, handle_stop_sequences
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from ablations.eval.devices import (
    all_gather,
    barrier,
    eval_dtype,
    gather_object,
    rank_and_world,
    resolve_device,
)
from ablations.eval.loading import load_for_eval
from ablations.model.architecture import KVCache, MobileLLM, sample_next_token

log = logging.getLogger(__name__)
DEFAULT_MAX_GEN_TOKS = 256


def appends_eos(tokenizer: Any) -> bool:
    """Whether the tokenizer's special-token rule ends an encoding with EOS (plain text never does)."""
    return (
        tokenizer.encode("a")[-1:]
        == [tokenizer.eos_token_id]
        != tokenizer.encode("a", add_special_tokens=False)[-1:]
    )


@register_model("mobilellm")
class MobileLLMEvalLM(TemplateLM):
    """Scores a `MobileLLM` with lm-eval; built from `path=` (any checkpoint `load_for_eval` reads) or
    in-process from `model=` and `tokenizer=` (what the training job passes). `device` defaults to `auto`
    (CUDA when present, bf16 weights there); `data_parallel=True` shares the docs among the ranks."""

    def __init__(
        self,
        path: str | None = None,
        model: MobileLLM | None = None,
        tokenizer: Any = None,
        batch_size: int | str = 16,
        device: str | None = None,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        data_parallel: bool = False,
        **_: Any,  # lm-eval passes max_batch_size and friends to every model
    ) -> None:
        super().__init__()
        self._warned_truncation = False
        if model is None:
            if path is None:
                raise ValueError("MobileLLMEvalLM needs `path=` or `model=` and `tokenizer=`")
            model, tokenizer = load_for_eval(path)
        if tokenizer is None:
            raise ValueError("MobileLLMEvalLM needs the model's tokenizer")
        self._device = resolve_device(device or "auto")
        self.model = model.to(self._device, eval_dtype(self._device)).eval()
        # data_parallel: lm-eval splits the docs over the ranks of the initialised process group and gathers
        # the per-sample results on rank 0 through the hooks below (every rank must then score)
        self._rank, self._world_size = rank_and_world() if data_parallel else (0, 1)
        self.tokenizer = tokenizer
        # "auto" (lm-eval's adaptive batch size) has no meaning here; fall back to the default
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self._max_length = int(max_length or model.config.max_seq_len)
        self.max_gen_toks = int(max_gen_toks)
        self._appends_eos = appends_eos(tokenizer)

    # ---------------------------------------------------------------- tokenizer conventions (as `hf`)
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def device(self) -> torch.device:
        return self._device

    # ---------------------------------------------------------------- ranks (lm-eval's data parallelism)
    def all_gather(self, tensor: Tensor) -> Tensor:
        return all_gather(tensor)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        return gather_object(obj, dst)

    def barrier(self) -> None:
        barrier()

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """The tokenizer's own special-token rule (BOS if it adds one), unless told; never a second BOS."""
        special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos_text = self.tokenizer.decode(self.prefix_token_id)
        if add_special_tokens is None and bos_text and string.startswith(bos_text):
            special = {"add_special_tokens": False}
        tokens = self.tokenizer.encode(string, **special)
        # a tokenizer that frames documents with a final EOS (`tokenizer.add_eos=true`) would end every
        # context with it and shift the continuation by one token; evaluation text is never a whole document
        if (
            self._appends_eos
            and special.get("add_special_tokens", True)
            and tokens[-1:] == [self.eot_token_id]
        ):
            tokens.pop()
        return tokens

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # ---------------------------------------------------------------- scoring
    def _vocab_logprobs(self, rows: list[Tensor]) -> list[Tensor]:
        """Each group of hidden rows projected onto the vocabulary and log-softmaxed in fp32 (only the rows
        that predict a scored token are ever projected)."""
        logits = F.linear(torch.cat(rows), self.model.output_weight).float()
        return list(F.log_softmax(logits, dim=-1).split([len(r) for r in rows]))

    @torch.inference_mode()
    def _continuation_logprobs(self, tokens: Tensor, spans: list[tuple[int, int]]) -> list[Tensor]:
        """Log-softmax rows [end-start, vocab] predicting each span's tokens; projects only those rows."""
        hidden = self.model.hidden_states(tokens)
        return self._vocab_logprobs([hidden[i, start - 1 : end - 1] for i, (start, end) in enumerate(spans)])

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False, **_: Any
    ) -> list[tuple[float, bool]]:
        """(log p(continuation | context), is-greedy) per request. Requests sharing a context of more than
        one token (the choices of one question) are packed into one sequence that holds the context once;
        the others (rolling windows, windows to cut) are batched whole, longest first."""
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="mobilellm loglikelihood")
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, (_, context, _continuation) in enumerate(requests):
            by_context[tuple(context)].append(index)
        packed: list[list[int]] = []
        alone: list[int] = []
        for context, members in by_context.items():
            longest = max(len(requests[i][2]) for i in members)
            if len(context) >= 2 and len(context) + longest <= self.max_length + 1:
                packed.append(members)
            else:  # nothing to share, or a window to cut
                alone += members
        # longest packed rows first, so the rows of one batch have similar lengths
        packed.sort(key=lambda group: -len(requests[group[0]][1]) - sum(len(requests[i][2]) for i in group))
        for start in range(0, len(packed), self.batch_size):
            groups = packed[start : start + self.batch_size]
            scores = self._packed_scores([(requests[g[0]][1], [requests[i][2] for i in g]) for g in groups])
            for index, score in zip(
                (i for g in groups for i in g), (x for row in scores for x in row), strict=True
            ):
                results[index] = score
                if requests[index][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[index][0], score)
                progress.update(1)
        scores = self._batched_scores([requests[i] for i in alone], progress)
        for index, score in zip(alone, scores, strict=True):
            results[index] = score
        progress.close()
        return results  # type: ignore[return-value]  # every index was filled above

    @torch.inference_mode()
    def _packed_scores(
        self, groups: list[tuple[list[int], list[list[int]]]]
    ) -> list[list[tuple[float, bool]]]:
        """Scores of each (context, continuations) group, one packed row per group: the context, then every
        continuation but its last token, each at the positions it would have after the context and seeing
        only the context and itself (the log-likelihoods of scoring each whole sequence, to rounding)."""
        rows, positions, segments, predictors = [], [], [], []
        for context, continuations in groups:
            tokens, pos, seg, at = list(context), list(range(len(context))), [-1] * len(context), []
            for number, continuation in enumerate(continuations):
                # continuation token j is predicted at the context's last position (j = 0), else at token j - 1
                at.append([len(context) - 1, *range(len(tokens), len(tokens) + len(continuation) - 1)])
                tokens += continuation[:-1]
                pos += range(len(context), len(context) + len(continuation) - 1)
                seg += [number] * (len(continuation) - 1)
            rows.append(torch.tensor(tokens, dtype=torch.long))
            positions.append(torch.tensor(pos, dtype=torch.long))
            segments.append(torch.tensor(seg, dtype=torch.long))
            predictors.append(at)
        tokens = pad_sequence(rows, batch_first=True).to(self._device)
        pos = pad_sequence(positions, batch_first=True).to(self._device)
        seg = pad_sequence(segments, batch_first=True, padding_value=-2).to(self._device)  # padding: -2
        # a query sees earlier tokens of the context (segment -1) and of its own segment; padding sits after
        # every real token, so real queries never see it, and padding queries see at least themselves
        causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=self._device).tril()
        visible = (seg.unsqueeze(1) == seg.unsqueeze(2)) | (seg == -1).unsqueeze(1)
        hidden = self.model.hidden_states(tokens, positions=pos, mask=(causal & visible).unsqueeze(1))
        logprobs = iter(
            self._vocab_logprobs([hidden[row, at] for row, group in enumerate(predictors) for at in group])
        )
        scores = []
        for _, continuations in groups:
            scores.append([])
            for continuation in continuations:
                rows_of = next(logprobs)
                target = torch.tensor(continuation, dtype=torch.long, device=self._device)
                logprob = float(rows_of.gather(1, target.unsqueeze(1)).sum())
                scores[-1].append((logprob, bool((rows_of.argmax(dim=-1) == target).all())))
        return scores

    def _batched_scores(
        self, requests: list[tuple[Any, list[int], list[int]]], progress: tqdm
    ) -> list[tuple[float, bool]]:
        """Scores of requests scored whole: batched longest first, left-truncated to the window."""

        def by_length(req: tuple[Any, list[int], list[int]]) -> tuple[int, tuple[int, ...]]:
            toks = req[1] + req[2]
            return -len(toks), tuple(toks)

        # requests sharing context + continuation[:-1] (e.g. one-token answers) are scored once
        ordered = Collator(
            requests, sort_fn=by_length, group_by="contexts", group_fn=lambda r: r[1] + r[2][:-1]
        )
        results: list[tuple[float, bool]] = []
        for chunk in ordered.get_batched(n=self.batch_size):
            inputs, spans = [], []
            for _, context, continuation in chunk:
                # too long: drop tokens from the left; the last token is only ever a target
                window = (context + continuation)[-(self.max_length + 1) :][:-1]
                scored = min(len(continuation), len(window))  # a continuation longer than the window:
                if scored < len(continuation) and not self._warned_truncation:  # its last max_length tokens
                    log.warning("continuations longer than max_length=%d are scored on their last %d tokens",
                                self.max_length, self.max_length)  # fmt: skip
                    self._warned_truncation = True
                inputs.append(torch.tensor(window, dtype=torch.long))
                spans.append((len(window) - scored + 1, len(window) + 1))
            batch = pad_sequence(inputs, batch_first=True)  # right padding: causal rows never see it
            logprobs = self._continuation_logprobs(batch.to(self._device), spans)
            for (request, context, continuation), rows in zip(chunk, logprobs, strict=True):
                rows = rows.unsqueeze(0)  # [1, cont, vocab]
                greedy = rows.argmax(dim=-1)
                for request_str, cont, cont_rows in ordered.get_cache(
                    req_str=request, cxt_toks=context, cont_toks=continuation, logits=rows
                ):
                    target = torch.tensor(cont[-cont_rows.shape[1] :], dtype=torch.long, device=self._device)
                    target = target.unsqueeze(0)
                    is_greedy = bool((greedy[:, -target.shape[1] :] == target).all())
                    logprob = float(torch.gather(cont_rows, 2, target.unsqueeze(-1)).sum())
                    results.append((logprob, is_greedy))
                    if request_str is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str, (logprob, is_greedy))
                    progress.update(1)
        return ordered.get_original(results)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Total log-likelihood of each whole text: disjoint max_length windows, as lm-eval's `hf` does."""
        windows, owner = [], []
        for index, (text,) in enumerate(req.args for req in requests):
            token_windows = lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for context, continuation in map(lm_utils.make_disjoint_window, token_windows):
                windows.append((None, context, continuation))
                owner.append(index)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owner, scores, strict=True):
            totals[index] += logprob
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---------------------------------------------------------------- generation
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, if asked) continuation through the KV cache until a stop string."""
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        outputs = []
        for req in tqdm(requests, disable=disable_tqdm, desc="mobilellm generate_until"):
            context, gen_kwargs = req.args
            kwargs = dict(gen_kwargs)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = min(int(kwargs.pop("max_gen_toks", self.max_gen_toks)), self.max_length - 1)
            temperature = float(kwargs.pop("temperature", 0.0)) if kwargs.pop("do_sample", False) else 0.0
            prompt = self.tok_encode(context)[-(self.max_length - max_new) :]
            text = self._generate(prompt, max_new, until, temperature)
            outputs.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return outputs

    @torch.inference_mode()
    def _generate(self, prompt: list[int], max_new: int, until: list[str], temperature: float) -> str:
        param = self.model.embed_tokens.weight
        cache = KVCache.empty(self.model.config, 1, len(prompt) + max_new, self._device, param.dtype)
        step = torch.tensor([prompt], dtype=torch.long, device=self._device)
        new_tokens: list[int] = []
        text = ""
        for _ in range(max_new):
            logits = self.model(step, cache)[:, -1].float()
            step = sample_next_token(logits, temperature)
            if step.item() == self.eot_token_id:
                break
            new_tokens.append(int(step.item()))
            text = self.tok_decode(new_tokens)
            if any(stop in text for stop in until):
                break
        for stop in until:  # cut at the first stop string, as lm-eval's `hf` does
            text = text.split(stop)[0]
        return text
