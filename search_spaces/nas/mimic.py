"""Mimic the parent: regress a grown network's logits onto its parent's before it is fine-tuned.

A pooling edge cannot start as the identity (paper §3.1), so a cell that has one is not function-preserving: a
max-pool cell inherited from a 94% base scores about 32% before fine-tuning, and a short fine-tune then measures
mostly how far it fell, not what the cell can do. The reference (han-cai/PathLevel-EAS, ``arch_search_tree_cell``
→ ``ExpdirMonitor.mimic_run`` → ``mimic_run_with_linear_regression``) repairs such cells first: 30 epochs of
plain SGD (lr 0.02) on the mean squared error between the child's and the parent's logits on 1,000 held-out images
in batches of 100, in training mode. The images here are training images: the reference draws them from its
validation loader, whose images also score the reward, which would let the repair see the images it is scored on.
The job's default is 5 epochs (``mimic_epochs``): the reference's 30 on 1,000 images were ~3% of its 20-epoch
fine-tune on 45,000 CIFAR-10 images, but are 3× a 3-epoch fine-tune on mnist5k's 3,500; 5 epochs already take a
max-pool cell there from 0.44 to 0.94 validation accuracy before fine-tuning (30: 0.95).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POOLS = ("maxpool3x3", "avgpool3x3")
IMAGES, EPOCHS, LR, BATCH = 1000, 30, 0.02, 100  # the reference's mimic_run defaults (sample_size, distill_*)


def needs_mimic(tree: dict[str, Any] | None) -> bool:
    """Whether the cell ``tree`` has a pooling edge (the only primitive that cannot start as the identity)."""
    if tree is None:
        return False
    return any(b["op"] in POOLS or needs_mimic(b["child"]) for b in tree["branches"])


def mimic(
    child: nn.Module,
    parent: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int = EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH,
    seed: int = 0,
) -> float:
    """Train ``child`` in place for ``epochs`` passes over ``x`` to output ``parent``'s logits (MSE, plain SGD at
    ``lr``, batches in a seeded order); returns the last epoch's mean loss (NaN for no epochs)."""
    was_training = parent.training
    parent.eval()
    with torch.no_grad():
        targets = torch.cat([parent(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    parent.train(was_training)
    opt = torch.optim.SGD(child.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    child.train()
    loss_sum, batches = float("nan"), 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        losses = []
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = F.mse_loss(child(x[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        loss_sum, batches = float(torch.stack(losses).sum()), len(losses)
    return loss_sum / batches if batches else float("nan")
