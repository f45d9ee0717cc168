"""Fine-tune and score sampled networks, in this process or in a pool of plain ``python`` subprocesses.

A *task* is everything one evaluation needs, as tensors and plain containers: the parent network's
architecture and weights, the transformation ops, the data, the fine-tune settings and a seed. The result
depends on nothing else (one torch thread, seeded batch order), so a pool gives the same numbers as a serial
loop. Workers are plain ``python`` subprocesses started by :mod:`search_spaces.kit.procs` (the job may run inside
a daemonic Celery pool process, which ``multiprocessing`` refuses children); they read their task file with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from search_spaces.kit import procs

POLL_SECONDS = 0.1
# The reference's SGD (han-cai/PathLevel-EAS RunConfig: momentum 0.9, Nesterov, weight decay 1e-4) for every
# training run of the search: base, fine-tunes, final training and the equal-size comparison.
TRAIN_RECIPE: dict[str, Any] = {"nesterov": True, "weight_decay": 1e-4}


def build_candidate(
    arch: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    ops: list[dict[str, Any]],
    calib_x: torch.Tensor | None,
    *,
    noise: float = 0.0,
    seed: int = 0,
    mimic_x: torch.Tensor | None = None,
    mimic_epochs: int = 0,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The parent network with ``ops`` applied to every cell (weights inherited); returns it and its arch.

    Replicated and identity-initialised layers get ``noise`` (:func:`.transforms.perturb`, drawn from ``seed``);
    identity layers are calibrated on ``calib_x``; a cell with a pooling edge (not function-preserving) is first
    taught the parent's logits on ``mimic_x`` for ``mimic_epochs`` (:func:`.mimic.mimic`, the reference's repair).
    """
    from search_spaces.kit import pathlevel as N
    from search_spaces.kit import tree_cells as T
    from search_spaces.nas import transforms

    net = N.build_network(arch)
    net.load_state_dict(state_dict)
    transforms.apply_to_network(net, ops, noise=noise, generator=torch.Generator().manual_seed(seed))
    if calib_x is not None:
        transforms.calibrate(net, calib_x)
    new_arch = {**arch, "tree": T.apply_all(arch["tree"], ops)}
    mimic_parent(net, new_arch["tree"], arch, state_dict, mimic_x, epochs=mimic_epochs, seed=seed)
    return net, new_arch


def mimic_parent(
    net: torch.nn.Module,
    tree: dict[str, Any],
    parent_arch: dict[str, Any],
    parent_state: dict[str, torch.Tensor],
    x: torch.Tensor | None,
    *,
    epochs: int,
    seed: int,
) -> bool:
    """Run the mimic step (:func:`.mimic.mimic`) on ``net`` if its cell ``tree`` has a pooling edge, ``x`` is given
    and ``epochs`` > 0; returns whether it ran."""
    from search_spaces.kit import pathlevel as N
    from search_spaces.nas import mimic

    if x is None or epochs <= 0 or not mimic.needs_mimic(tree):
        return False
    parent = N.build_network(parent_arch)
    parent.load_state_dict(parent_state)
    mimic.mimic(net, parent, x, epochs=epochs, seed=seed)
    return True


def mimic_images(x_train: torch.Tensor, seed: int) -> torch.Tensor:
    """The :data:`.mimic.IMAGES` training images (a seeded draw) a pooling cell mimics its parent on."""
    from search_spaces.nas import mimic

    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    return x_train[order[: mimic.IMAGES]]


def evaluate_task(task: dict[str, Any], should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Build, fine-tune briefly and score one candidate on the validation split (never the test split).

    Fine-tuning follows the reference (han-cai/PathLevel-EAS ``RunConfig``): SGD with Nesterov momentum 0.9 and
    weight decay ``task["weight_decay"]`` (1e-4), the learning rate from ``task["lr"]`` annealed by cosine every
    batch to 0. The seconds reported include building the candidate (and its mimic step, if any).
    """
    from search_spaces.kit import counting, models, trainer

    with trainer.torch_threads(task.get("threads", 1)):
        started = time.perf_counter()
        data = task["data"]
        net, arch = build_candidate(
            task["arch"],
            task["state_dict"],
            task["ops"],
            data["x_train"][:256],
            noise=task.get("noise", 0.0),
            seed=task["seed"],
        )
        size = counting.count(net, tuple(task["arch"]["input_shape"]))
        if task.get("max_params") is not None and size["params"] > task["max_params"]:
            return {"val_acc": 0.0, "seconds": 0.0, "params": size["params"], "macs": size["macs"], "over_budget": True}
        mimicked = mimic_parent(
            net,
            arch["tree"],
            task["arch"],
            task["state_dict"],
            data.get("x_mimic"),
            epochs=task.get("mimic_epochs", 0),
            seed=task["seed"],
        )
        stop = _StopOnly(should_stop) if should_stop is not None else None
        trainer.train(
            net,
            data["x_train"],
            data["y_train"],
            epochs=task["epochs"],
            lr=task["lr"],
            batch_size=task["batch_size"],
            seed=task["seed"],
            nesterov=task.get("nesterov", False),
            weight_decay=task.get("weight_decay", 0.0),
            reporter=stop,
        )
        acc = trainer.evaluate(net, data["x_val"], data["y_val"])
        result: dict[str, Any] = {
            "val_acc": acc,
            "seconds": time.perf_counter() - started,
            "params": size["params"],
            "macs": size["macs"],
            "over_budget": False,
            "mimicked": mimicked,
        }
        if task.get("return_weights"):
            result["state_dict"] = models.cpu_state(net)
            result["arch"] = arch
        return result


class _StopOnly:
    """Hands the trainer a stop check and nothing else (fine-tune curves would flood the job's metrics)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def metric(self, *args: Any, **kwargs: Any) -> None:
        pass


def evaluate_many(
    tasks: list[dict[str, Any]],
    *,
    workers: int = 1,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``tasks`` serially (``workers`` ≤ 1) or in up to ``workers`` subprocesses at once.

    ``on_result(index, result)`` is called as each finishes, in task order for a serial run; a pool reports in
    task order too (a result waits for the earlier ones), so trial numbers come out in order either way.
    ``should_stop`` is polled while waiting; on True the subprocesses are killed and ``JobCancelled`` raised.
    """
    from search_spaces.base import JobCancelled

    if workers <= 1 or len(tasks) <= 1:
        results = []
        for i, task in enumerate(tasks):
            if should_stop is not None and should_stop():
                raise JobCancelled()
            results.append(evaluate_task(task, should_stop))
            if on_result is not None:
                on_result(i, results[-1])
        return results
    with tempfile.TemporaryDirectory(prefix="nas-eval-") as tmp:
        return _Pool(Path(tmp), tasks, workers, should_stop, on_result).run()


class _Pool:
    def __init__(
        self,
        tmp: Path,
        tasks: list[dict[str, Any]],
        workers: int,
        should_stop: Callable[[], bool] | None,
        on_result: Callable[[int, dict[str, Any]], None] | None,
    ) -> None:
        self.tmp, self.tasks, self.workers = tmp, tasks, workers
        self.should_stop, self.on_result = should_stop, on_result
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.reported = 0

    def run(self) -> list[dict[str, Any]]:
        from search_spaces.base import JobCancelled

        pending = list(range(len(self.tasks)))
        try:
            while pending or self.running:
                while pending and len(self.running) < self.workers:
                    self._start(pending.pop(0))
                time.sleep(POLL_SECONDS)
                if self.should_stop is not None and self.should_stop():
                    raise JobCancelled()
                self._collect()
                self._report_in_order()
        finally:
            procs.stop(self.running.values(), grace_s=0)  # unfinished evaluations are thrown away
        return [self.results[i] for i in range(len(self.tasks))]

    def _start(self, index: int) -> None:
        task_path = self.tmp / f"task{index}.pt"
        torch.save(self.tasks[index], task_path)
        self.running[index] = procs.start_python(
            ["-m", "search_spaces.nas.evaluate", str(task_path), str(self.tmp / f"out{index}.pt")],
            threads=1,
            log=self.tmp / f"task{index}.log",
        )

    def _collect(self) -> None:
        for index, process in list(self.running.items()):
            code = process.poll()
            if code is None:
                continue
            del self.running[index]
            out = self.tmp / f"out{index}.pt"
            if code != 0 or not out.exists():
                tail = (self.tmp / f"task{index}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"evaluation worker {index} exited with {code}: {tail}")
            self.results[index] = torch.load(out, map_location="cpu", weights_only=True)

    def _report_in_order(self) -> None:
        while self.reported in self.results:
            if self.on_result is not None:
                self.on_result(self.reported, self.results[self.reported])
            self.reported += 1


def _main(argv: list[str]) -> None:
    procs.die_with_parent()
    task = torch.load(argv[0], map_location="cpu", weights_only=True)
    result = evaluate_task(task)
    tmp = Path(argv[1]).with_suffix(".tmp")
    torch.save(result, tmp)
    os.replace(tmp, argv[1])


if __name__ == "__main__":
    _main(sys.argv[1:])
