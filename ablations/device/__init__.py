"""On the device: a model exported to an ExecuTorch program (XNNPACK), measured the way the paper's Table 7
measures its phone runs. Needs the `device` extra (`pip install -e ".[device]"`: executorch, torchao).

- `config`: `DeviceConfig` (the job's `device` group and the CLI's arguments), the recipe names, the check
  that the extra is installed. Torch-free.
- `program`: `ExportableLM`, the model with its KV cache as buffers, one `forward(tokens, input_pos)`.
- `quantize`: the torchao recipes (`none`, `8da4w`, `w8a8`).
- `export`: model → `.pte` bytes (torch.export, XNNPACK lowering, the LLM runner's metadata).
- `runtime`: `DeviceProgram`, a `.pte` loaded by ExecuTorch's runtime (load, init, forward, generate).
- `measure`: load/init/prefill/decode timings, sizes and the quantized val-loss change → `device.json`.
- `__main__`: `python -m ablations.device` (a preset, a checkpoint or a run dir).

May import: `ablations.model`, `ablations.records`. Not training, evaluation or job code, except in
`__main__`, an entry point (it composes presets with the job config and loads checkpoints as evaluation does).
"""
