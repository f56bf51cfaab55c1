"""Language domain: SST-2 sentiment (BiLSTM with attention; Transformer) and Universal
Dependencies POS tagging (Transformer). Importing this package registers the workloads;
``transformers`` and ``datasets`` are imported only inside functions."""

from domains.language import sst2_lstm  # noqa: F401  (registers its workloads)
from domains.language import ud_pos  # noqa: F401
