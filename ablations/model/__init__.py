"""The architecture family: its axes, its config, the model, and everything computed from a config.

- `axes`: one registry per ablated axis (FFN kinds, sharing schemes, norms, attention layouts). Torch-free.
- `config`: `ModelConfig`, the typed and validated point of the family. Torch-free.
- `counts`: closed-form parameter counts, FLOPs per token, the iso-parameter solver. Torch-free.
- `activations`: closed-form activation bytes a training forward keeps; activation-checkpointing modes. Torch-free.
- `architecture`: `MobileLLM`, the decoder (one file, readable in one sitting), its KV cache and sampler.
- `checkpoint`: the native model directory (safetensors + `model_config.json`).
- `hf_interop`: LLaMA-format export and import.

May import: `ablations.records`. Nothing here imports data, training or evaluation code.
"""
