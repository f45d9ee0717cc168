"""Pruning at different granularities and the storage it costs (Mao et al., 2017).

Mao, Han, Pool, Li, Liu, Wang, Dally, "Exploring the Regularity of Sparse Structure in Convolutional
Neural Networks" (arXiv:1705.08922). :mod:`.pruning` makes group masks at fine (0-D), vector (1-D),
kernel (2-D) and filter (3-D) granularity and runs the iterative prune → retrain schedule;
:mod:`.storage` counts the bits of the pruned weights in a relative-index sparse format, so the
"index saving" effect of coarse groups shows in the compression ratio; :mod:`.sweep` drives an Optuna
study over granularity, sparsity, saliency norm and retrain epochs: its typed config in :mod:`.config`, one
trial in :mod:`.trial`, the study and its workers in :mod:`.study`, the result in :mod:`.results` and
:mod:`.figures`.

Only :mod:`.storage` is free of torch; import the others lazily from code the web process loads.
"""
