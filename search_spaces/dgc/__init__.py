"""Deep Gradient Compression (Lin, Han, Mao, Wang, Dally, ICLR 2018, arXiv:1712.01887).

:mod:`.compressor` is one worker's side of the algorithm: the per-parameter momentum ``u`` and
accumulator ``v``, top-k sparsification by a sampled threshold, momentum correction, local gradient
clipping, momentum factor masking, the warm-up sparsity schedule and the wire format (values + int32
indices). :mod:`.distributed` runs real data-parallel training over ``torch.distributed`` (gloo): N
worker processes (:mod:`.worker`) exchange the sparse pieces with an all-gather, or dense gradients with an
all-reduce for the baseline, and report to the parent process that holds the job's reporter (what they are
handed and send back: :mod:`.spec`). :mod:`.job` runs one ``dgc_train`` job with the typed config of
:mod:`.config` (free of torch) and writes its result with :mod:`.summary`.

All but :mod:`.config` import torch; import them lazily from code the web process loads (``search_spaces.dgc_train``).
"""
