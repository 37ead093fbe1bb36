"""`DeviceProgram`: a `.pte` run by the ExecuTorch runtime (its Python bindings), as a phone app runs it.

Load (the program), init (the method: memory planning, XNNPACK weight packing) and each call are timed by
the caller or here; the XNNPACK thread pool is process-wide, set before the method loads. Decoding follows
`MobileLLM.generate` (greedy) and refuses, before any compute, what the program's cache cannot hold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ablations.model.architecture import sample_next_token


def set_threads(threads: int) -> int:
    """Resize ExecuTorch's process-wide thread pool (XNNPACK runs on it); returns the count it reports."""
    # executorch imported here, as in every function of this module: the job imports it without the extra
    from executorch.extension.pybindings import portable_lib

    if threads < 1:
        raise ValueError(f"threads must be >= 1 (got {threads})")
    portable_lib._unsafe_reset_threadpool(threads)
    return portable_lib._threadpool_get_thread_count()


def planned_memory_bytes(path: Path, method: str = "forward") -> int:
    """Bytes the memory plan of `method` allocates (activations and the KV cache; not the delegate's packed
    weights or scratch), read from the program's execution plan (what `MethodMeta` reports in C++; the Python
    bindings do not expose it). Reads only the flatbuffer, not the weight segments after it."""
    # a private module: the flatbuffer's schema types are not exported elsewhere (executorch 1.5.1)
    from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header

    with open(path, "rb") as file:
        header = _get_extended_header(file.read(64))
        file.seek(0)
        flatbuffer = file.read(header.program_size) if header is not None else file.read()
    plan = next(plan for plan in _flatbuffer_to_program(flatbuffer).execution_plan if plan.name == method)
    return sum(plan.non_const_buffer_sizes[1:])  # entry 0 is reserved by the format


class DeviceProgram:
    """A loaded program's `forward` method, its KV cache and the position it has reached."""

    def __init__(self, program: Any, path: Path, threads: int, load_ms: float, init_ms: float) -> None:
        self._program, self.threads, self.load_ms, self.init_ms = program, threads, load_ms, init_ms
        self._forward = program.load_method("forward")  # loaded (and timed) by `load`: cached by the program
        self.pte_bytes = path.stat().st_size
        self.planned_memory_bytes = planned_memory_bytes(path)
        self.max_seq_len: int = self._constant("get_max_seq_len")
        self.vocab_size: int = self._constant("get_vocab_size")
        self.max_prompt = self.max_seq_len - 1
        self.position = 0  # tokens cached so far

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> DeviceProgram:
        """Load a `.pte` as a phone app does: the runtime's file loader, minimal verification, then the
        `forward` method (memory planning, XNNPACK weight packing); both timed."""
        import executorch.kernels.quantized  # noqa: F401  (registers the quantized embedding kernels)
        from executorch.runtime import Runtime, Verification

        path = Path(path)
        reported_threads = set_threads(threads)
        start = time.perf_counter()
        try:
            program = Runtime.get().load_program(path, verification=Verification.Minimal)
        except (RuntimeError, ValueError) as error:  # the bindings raise RuntimeError for a file they reject
            raise ValueError(f"{path} is not a loadable ExecuTorch program: {error}") from error
        load_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        program.load_method("forward")
        init_ms = (time.perf_counter() - start) * 1e3
        return cls(program, path, reported_threads, load_ms, init_ms)

    def _constant(self, name: str) -> int:
        if name not in self._program.method_names:
            raise ValueError(f"the program has no {name} method: not an LLM program of ablations.device")
        return int(self._program.load_method(name).execute([])[0])

    def reset(self) -> None:
        """Start again at position 0 (the cache is overwritten from there)."""
        self.position = 0

    def forward(self, tokens: Tensor, input_pos: int) -> Tensor:
        """Logits [1, T, vocab] of tokens [1, T] at positions input_pos…input_pos+T-1; the cache holds the
        positions below input_pos from earlier calls."""
        if tokens.dim() != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must have shape [1, T] with T >= 1 (got {list(tokens.shape)})")
        seq = tokens.shape[1]
        if seq > self.max_prompt:
            raise ValueError(
                f"{seq} tokens in one call exceed max_prompt {self.max_prompt} (max_seq_len - 1)"
            )
        if input_pos < 0 or input_pos + seq > self.max_seq_len:
            raise ValueError(
                f"positions {input_pos}..{input_pos + seq - 1} exceed the KV cache: max_seq_len {self.max_seq_len}"
            )
        logits = self._forward.execute([tokens.to(torch.long), torch.tensor([input_pos], dtype=torch.long)])[
            0
        ]
        self.position = input_pos + seq
        return logits

    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new_tokens: int) -> Tensor:
        """Greedy continuation of `prompt` [1, T] by `max_new_tokens`, as `MobileLLM.generate` at temperature 0
        (prompt and new tokens, [1, T + max_new_tokens]); starts at position 0."""
        if prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must have shape [1, T] with T >= 1 (got {list(prompt.shape)})")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
        if prompt.shape[1] > self.max_prompt:
            raise ValueError(f"a prompt of {prompt.shape[1]} tokens exceeds max_prompt {self.max_prompt}")
        fed = prompt.shape[1] + max_new_tokens - 1  # the last new token is never fed back
        if fed > self.max_seq_len:
            raise ValueError(
                f"{prompt.shape[1]} prompt + {max_new_tokens} new tokens need {fed} cache positions; "
                f"max_seq_len is {self.max_seq_len}"
            )
        tokens, step_input = prompt, prompt
        self.reset()
        for _ in range(max_new_tokens):
            logits = self.forward(step_input, self.position)[:, -1].float()
            step_input = sample_next_token(logits)
            tokens = torch.cat((tokens, step_input), dim=1)
        return tokens
