"""Path-level network transformation architecture search (Cai, Yang, Zhang, Han, Yu, ICML 2018).

* :mod:`search_spaces.kit.tree_cells` and :mod:`search_spaces.kit.pathlevel` (in the kit, since the ``pathlevel``
  model family is built and consumed by other kinds too) — the tree-structured cell as plain JSON with the
  transformations on it, and the residual / dense base networks built from it;
* :mod:`.transforms` — the same transformations on a built network, keeping its function;
* :mod:`.controller` — the bidirectional tree-LSTM meta-controller and its REINFORCE trainer;
* :mod:`.evaluate` — fine-tuning sampled networks, serially or in a pool of plain subprocesses;
* :mod:`.search` — the job's driver; :mod:`.draw` — an SVG drawing of a cell.
"""
