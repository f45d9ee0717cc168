"""The training kit: datasets, reference models, FLOP counting and a lean training loop.

Import the submodules directly (``from search_spaces.kit import datasets``); this package imports
nothing itself, so the web process can load :mod:`search_spaces.kit.datasets` without torch.
"""
