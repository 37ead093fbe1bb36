"""Text to training batches: corpus → tokenizer → token shards + manifest → windows → Lightning.

- `config`: `DataConfig`, `TokenizerConfig` (typed, validated). Torch-free.
- `corpus`: documents of each source (embedded stdlib, local files, HF datasets), split, fingerprint.
- `tokenizer`: trained BPE (cached by corpus hash), HF and SentencePiece tokenizers, vocab checks.
- `shards`: parallel tokenisation into flat token shards + `manifest.json` (reuse, verification).
- `build`: a corpus's tokenizer and shards built once: under a file lock, or in parts (`part=i/N`) merged.
- `epochs`: the token budget against the train split (passes, the limit), the validation split's size.
- `loader`: windows, seeded shuffling, a disjoint slice per rank, exact-resume state (plain torch).
- `datamodule`: `TokenDataModule`, the loader as a LightningDataModule.

May import: `ablations.records`. Independent of the model.
"""
