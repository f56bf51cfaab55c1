"""Language domain: SST-2 sentiment (BiLSTM with attention; Transformer) and Universal
Dependencies POS tagging (Transformer). Importing this package registers the workloads;
``transformers`` and ``datasets`` are imported only inside functions."""

from domains.language import (  # noqa: F401  (each module registers its workloads)
    sst2_lstm,
    sst2_transformer,
    ud_pos,
)
