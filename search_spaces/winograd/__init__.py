"""The ``winograd_prune`` kind's algorithm: Winograd transforms and layers, the networks, exact
multiplication counts and the prune/retrain driver (Liu, Pool, Han, Dally, ICLR 2018)."""
