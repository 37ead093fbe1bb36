"""The adapter's numbers against hand computation on a toy model (no benchmark data needed)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from tqdm import tqdm

from ablations.eval.adapter import MobileLLMEvalLM


def request(kind: str, *args: object) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def reference_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) by hand: encode whole and context, split, one full forward."""
    whole = tokenizer.encode(context + continuation)
    n_context = len(tokenizer.encode(context))
    logprobs = F.log_softmax(model(torch.tensor([whole[:-1]])).float(), dim=-1)[0]
    return sum(float(logprobs[i - 1, whole[i]]) for i in range(n_context, len(whole)))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_loglikelihood_equals_hand_computed(eval_model, eval_tokenizer, batch_size):
    pairs = [
        ("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"),
        ("Question: Which gas do plants take in?\nAnswer:", " oxygen"),
        ("The quick brown fox jum", "ps over the lazy dog"),  # a token may span the join
        ("Answer: ", "yes"),  # trailing space moves to the continuation
        ("x", " a much longer continuation than the others, to force padding"),
    ]
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer, batch_size=batch_size)
    results = lm.loglikelihood([request("loglikelihood", c, x) for c, x in pairs], disable_tqdm=True)
    for (context, continuation), (logprob, _) in zip(pairs, results, strict=True):
        ctx, cont = (context.rstrip(), context[len(context.rstrip()) :] + continuation)
        assert logprob == pytest.approx(reference_logprob(eval_model, eval_tokenizer, ctx, cont), abs=1e-4)


def test_is_greedy_flag(eval_model, eval_tokenizer):
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer)
    prompt = eval_tokenizer.encode("Question: why")
    greedy = eval_model.generate(torch.tensor([prompt]), 3)[0, len(prompt) :].tolist()
    scores = lm._loglikelihood_tokens([(None, prompt, greedy), (None, prompt, [(greedy[0] + 1) % 600])])
    assert [flag for _, flag in scores] == [True, False]


def test_loglikelihood_rolling_equals_disjoint_windows(eval_model, eval_tokenizer):
    text = "Robert Boulter is an English film, television and theatre actor. " * 6
    max_len = 16
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer, max_length=max_len)
    (total,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)], disable_tqdm=True)
    tokens = eval_tokenizer.encode(text)
    seq = [eval_tokenizer.bos_token_id, *tokens]  # seq[j] predicts seq[j + 1] = tokens[j]
    expected = 0.0
    for start in range(0, len(tokens), max_len):  # each window predicts max_len new tokens
        end = min(start + max_len, len(tokens))
        first = max(0, end - max_len)
        logprobs = F.log_softmax(eval_model(torch.tensor([seq[first:end]])).float(), dim=-1)[0]
        expected += sum(float(logprobs[j - first, seq[j + 1]]) for j in range(start, end))
    assert len(tokens) > 3 * max_len
    assert total == pytest.approx(expected, abs=1e-3)


def test_generate_until_matches_greedy_decoding(eval_model, eval_tokenizer):
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer)
    context = "Question: Who wrote Hamlet?\nAnswer:"
    prompt = torch.tensor([eval_tokenizer.encode(context)])
    new = eval_model.generate(prompt, 12, use_cache=False)[0, prompt.shape[1] :].tolist()
    eos = eval_tokenizer.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    reference = eval_tokenizer.decode(new, skip_special_tokens=True)
    stop = reference[len(reference) // 2 : len(reference) // 2 + 1] or "\n"
    (text,) = lm.generate_until(
        [request("generate_until", context, {"until": [stop], "max_gen_toks": 12})], disable_tqdm=True
    )
    assert text == reference.split(stop)[0]


def test_a_continuation_longer_than_the_window_is_scored_on_its_last_tokens(eval_model, eval_tokenizer):
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer, batch_size=2, max_length=8)
    context, continuation = lm.tok_encode("Question: x?\nAnswer:"), lm.tok_encode(" " + "a long answer " * 4)
    assert len(continuation) > 8
    [(logprob, _)] = lm._loglikelihood_tokens([(None, context, continuation)], disable_tqdm=True)
    window = (context + continuation)[-9:]  # the model sees 8 tokens and predicts the 8 after the first
    logprobs = F.log_softmax(eval_model(torch.tensor([window[:-1]])).float(), dim=-1)[0]
    expected = sum(float(logprobs[i, window[i + 1]]) for i in range(8))
    assert logprob == pytest.approx(expected, abs=1e-4)


def test_a_tokenizer_that_appends_eos_scores_as_one_that_does_not(eval_model, eval_tokenizer):
    from tokenizers import processors

    from tests.eval_fixtures import make_tokenizer

    framed = make_tokenizer()  # `tokenizer.add_eos=true`: every encoding is "<s> text </s>"
    bos, eos = framed.bos_token_id, framed.eos_token_id
    framed._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    assert framed.encode("Answer:")[-1] == eos
    pairs = [("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"), ("Answer: ", "yes")]
    scores = [
        MobileLLMEvalLM(model=eval_model, tokenizer=tok).loglikelihood(
            [request("loglikelihood", c, x) for c, x in pairs], disable_tqdm=True
        )
        for tok in (eval_tokenizer, framed)
    ]
    assert scores[1] == scores[0]


def test_choices_of_one_context_score_as_whole_sequences(eval_model, eval_tokenizer):
    lm = MobileLLMEvalLM(model=eval_model, tokenizer=eval_tokenizer, batch_size=8)
    context = eval_tokenizer.encode("Question: Which gas do plants take in?\nAnswer:")
    choices = [eval_tokenizer.encode(x, add_special_tokens=False) for x in (" carbon dioxide", " a gas")]
    choices.append(choices[0][:1])  # a one-token choice: scored on the context's last position alone
    other = eval_tokenizer.encode("The quick brown fox")  # a second, shorter group in the same batch
    shared, other_shared = lm._packed_scores([(context, choices), (other, choices[:2])])  # contexts once
    alone = lm._batched_scores([(None, other, choice) for choice in choices[:2]], tqdm(disable=True))
    assert [x[0] for x in other_shared] == pytest.approx([x[0] for x in alone], abs=1e-5)
    whole = lm._batched_scores([(None, context, choice) for choice in choices], tqdm(disable=True))
    assert len({len(c) for c in choices}) == 3 and min(map(len, choices)) == 1
    for (logprob, greedy), (ref_logprob, ref_greedy) in zip(shared, whole, strict=True):
        assert logprob == pytest.approx(ref_logprob, abs=1e-5) and greedy == ref_greedy
