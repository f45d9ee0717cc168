"""Path-level network transformation architecture search (Cai, Yang, Zhang, Han, Yu, ICML 2018).

* :mod:`.tree` — the tree-structured cell as plain JSON, and the transformations on that JSON (no torch);
* :mod:`.network` — cells and the small residual / dense base networks built from that JSON (torch);
* :mod:`.transforms` — the same transformations on a built network, keeping its function;
* :mod:`.controller` — the bidirectional tree-LSTM meta-controller and its REINFORCE trainer;
* :mod:`.evaluate` — fine-tuning sampled networks, serially or in a pool of plain subprocesses;
* :mod:`.search` — the job's driver; :mod:`.draw` — an SVG drawing of a cell.
"""
