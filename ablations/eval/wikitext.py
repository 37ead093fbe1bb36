"""WikiText-2 perplexity in the MobileLLM protocol (their eval.py, credited to mit-han-lab/llm-awq).

The raw test split (line rows) joined with "\\n\\n", tokenised once with one BOS in front, cut into
non-overlapping windows of `window` tokens with the remainder dropped; each window's loss is the mean
cross-entropy of its `window - 1` shifted targets, and ppl = exp(mean of the window losses). This differs
from lm-eval's `wikitext` (document-level, rolling windows, word perplexity); both are reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ablations.eval.tasks import WIKITEXT_MOBILELLM_HUB, MissingTaskData
from ablations.model.architecture import MobileLLM


def raw_text_from_pages(pages: list[str]) -> str:
    """`wiki.test.raw` back from its document-level pages: the builder split the file at top-level headings,
    dropping the file's leading blank line (" \\n") and the newline before each heading."""
    return " \n" + "\n".join(pages)


def lines_from_pages(pages: list[str]) -> list[str]:
    """The line rows of HF `wikitext-2-raw-v1` rebuilt from its document-level pages: each raw line with
    its "\\n", a blank line (" ") as ""."""
    pieces = raw_text_from_pages(pages).split("\n")
    rows = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    return [row if row.strip() else "" for row in rows]


def wikitext2_test_lines(data_dir: str | Path | None) -> list[str]:
    """Test rows from `data_dir/wikitext/test.jsonl` (document level, as lm-eval reads) or the hub."""
    if data_dir is None:
        import datasets  # heavy: only for the hub path

        return list(datasets.load_dataset(*WIKITEXT_MOBILELLM_HUB, split="test")["text"])
    path = Path(data_dir) / "wikitext" / "test.jsonl"
    if not path.is_file():
        raise MissingTaskData("wikitext2_mobilellm", path, Path(data_dir))
    with path.open() as rows:
        return lines_from_pages([json.loads(row)["page"] for row in rows])


def protocol_tokens(lines: list[str], tokenizer: Any) -> list[int]:
    """One BOS, then the "\\n\\n"-joined text without further special tokens."""
    body = tokenizer.encode("\n\n".join(lines), add_special_tokens=False)
    return [tokenizer.bos_token_id, *body]


@torch.inference_mode()
def window_losses(model: MobileLLM, tokens: list[int], window: int, batch_size: int = 4) -> list[float]:
    """Mean next-token cross-entropy of each full, non-overlapping `window`-token slice (remainder dropped)."""
    n_windows = len(tokens) // window
    ids = torch.tensor(tokens[: n_windows * window], dtype=torch.long).view(n_windows, window)
    device = model.embed_tokens.weight.device
    losses: list[float] = []
    for batch in ids.split(batch_size):
        batch = batch.to(device)
        logits = model(batch[:, :-1]).float()
        per_token = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        losses.extend(per_token.mean(dim=1).tolist())
    return losses


def wikitext2_perplexity(
    model: MobileLLM,
    tokenizer: Any,
    data_dir: str | Path | None,
    window: int = 2048,
    limit: int | None = None,
) -> dict[str, Any]:
    """{"ppl", "n_windows", "window", "tokens", "window_losses"}; `limit` caps the number of windows."""
    window = min(window, model.config.max_seq_len)
    tokens = protocol_tokens(wikitext2_test_lines(data_dir), tokenizer)
    if limit is not None:
        tokens = tokens[: limit * window]
    losses = window_losses(model, tokens, window)
    if not losses:
        raise ValueError(f"WikiText-2 has {len(tokens)} tokens, fewer than one {window}-token window")
    return {
        "ppl": math.exp(sum(losses) / len(losses)),
        "n_windows": len(losses),
        "window": window,
        "tokens": len(tokens),
        "window_losses": losses,
    }
