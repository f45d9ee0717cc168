"""What the submit check accepts really runs: for every registered kind that produces a model and every kind that
says it can start from that model (``input_model_problems`` empty), the child's tiny config runs to completion on
a model of exactly the declared architecture, and its own output model is what it declares. Generated from the
registry (no Django here); the refusals are tests/service/test_model_handoff.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search_spaces import registry
from search_spaces.base import DataShape, JobInputs, MemoryReporter
from search_spaces.kit import datasets
from search_spaces.kit.models import build_model, complete_arch, load_model, save_model


def _data(dataset: str) -> DataShape:
    info = datasets.BUILTIN[dataset]
    return DataShape(info.modality, tuple(info.input_shape), info.num_classes)


def _handoffs() -> list[tuple[str, str, str, dict]]:
    """(parent kind, child kind, dataset, the parent's declared output arch), one per distinct arch and child."""
    seen, pairs = set(), []
    for parent_name, parent in sorted(registry.KINDS.items()):
        dataset = parent.default_dataset
        arch = parent.output_arch(parent.validate(parent.tiny_config), _data(dataset), None)
        if arch is None:
            continue
        arch = complete_arch(arch)
        for child_name, child in sorted(registry.KINDS.items()):
            fits = _data(dataset).modality in child.modalities and not child.input_model_problems(arch, _data(dataset))
            key = (child_name, dataset, json.dumps(arch, sort_keys=True))
            if fits and key not in seen:
                seen.add(key)
                pairs.append((parent_name, child_name, dataset, arch))
    return pairs


HANDOFFS = _handoffs()


def test_the_chains_users_want_are_declared() -> None:
    pairs = {(a, b) for a, b, _, _ in HANDOFFS}
    wanted = {("pathlevel_nas", "granularity_sweep"), ("pathlevel_nas", "adc_prune"), ("hls4ml_sweep", "hls4ml_sweep")}
    assert wanted <= pairs, pairs
    # A pruned MLP (granularity or AMC on tabular data) feeds the FPGA sweep: the kinds declare an MLP there.
    jets = _data("jets_synthetic")
    for pruner in ("granularity_sweep", "adc_prune"):
        kind = registry.get_kind(pruner)
        arch = complete_arch(kind.output_arch(kind.validate({}), jets, None))
        assert not registry.get_kind("hls4ml_sweep").input_model_problems(arch, jets), pruner


@pytest.mark.parametrize(("parent", "child", "dataset", "arch"), HANDOFFS, ids=[f"{a}->{b}" for a, b, _, _ in HANDOFFS])
def test_an_accepted_input_model_runs(parent: str, child: str, dataset: str, arch: dict, tmp_path: Path) -> None:
    model_path = tmp_path / "parent.pt"
    save_model(build_model(arch), arch, model_path)
    kind = registry.get_kind(child)
    config = kind.validate(kind.tiny_config)
    inputs = JobInputs(
        dataset=dataset,
        model_path=model_path,
        workdir=tmp_path,
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.sqlite3'}",
        study_name="handoff",
    )
    reporter = MemoryReporter()
    result = kind.run(config, inputs, reporter)
    assert reporter.progress_values[-1][0] == 1.0
    if result.get("output_model"):
        produced = {name: path for name, path, _ in reporter.artifacts}[result["output_model"]]
        _, stored = load_model(produced)
        assert stored == result["output_arch"]
        declared = kind.output_arch(config, _data(dataset), arch)
        assert stored["name"] == declared["name"] and stored["num_classes"] == declared["num_classes"]
