"""Tokenise a corpus once, before any training job (the config groups and overrides of run.py):

python -m ablations.prepare data=local_files 'data.paths=[corpus/*.jsonl]' tokenizer=llama2 [part=i/N]

With `part=i/N` it tokenises part i of N (blocks of `data.block_documents` documents, block b in part
b mod N); the part that finishes last merges them into the shards one process would have written. Run the
parts as a SLURM array (`part=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) or on any machines sharing
`data.cache_dir`. Prints the shard directory (for `data=pretokenized data.shards_dir=...`).
"""

from __future__ import annotations

import logging
import sys

from ablations.cli import exit_with_usage_if_asked
from ablations.data.build import parse_part, prepare_locked, prepare_part
from ablations.data.shards import read_manifest
from ablations.data.tokenizer import load_tokenizer
from ablations.job.config import compose_config, job_config
from ablations.records.errors import ConfigError, DataError
from ablations.records.secrets import cli_exit, install_log_masking


def main(argv: list[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    exit_with_usage_if_asked(overrides, __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    install_log_masking()
    part = None
    for item in [o for o in overrides if o.startswith("part=")]:
        part = item.split("=", 1)[1]
        overrides.remove(item)
    try:
        job = job_config(compose_config(overrides))
        if part is None:
            _, out = prepare_locked(job.data, job.tokenizer)
        else:
            index, parts = parse_part(part)
            done = prepare_part(
                job.data, job.tokenizer, load_tokenizer(job.tokenizer, job.data), index, parts
            )
            if done is None:
                print(f"part {index}/{parts} written; the last part to finish merges")
                return
            out = done
    except (ConfigError, DataError) as error:
        raise cli_exit(error) from None
    manifest = read_manifest(out, verify_hashes=False)
    splits = manifest["splits"]
    print(
        f"shards: {out}  (train {splits['train']['tokens']:,} tokens, val {splits['val']['tokens']:,} tokens)"
    )


if __name__ == "__main__":
    main()
