"""Model handoff at submit: every ordered pair of registered kinds, parent → child, is either accepted or refused
with a 400 that names the reason, and nothing is written for a refusal. Generated from the registry, so a new
kind is covered without editing this file. That an accepted pair really runs is tests/kinds/test_handoff.py."""

from __future__ import annotations

import itertools

import pytest

from automl_site.jobs.models import Dataset, Job, JobStatus
from search_spaces import registry
from search_spaces.base import DataShape
from search_spaces.kit.models import complete_arch

pytestmark = pytest.mark.django_db

PAIRS = list(itertools.product(sorted(registry.KINDS), repeat=2))


def _data(row: Dataset) -> DataShape:
    return DataShape(row.modality, tuple(row.input_shape), row.num_classes)


def finished_parent(owner, kind_name: str, dataset: str | None = None) -> Job:  # noqa: ANN001
    """A succeeded job of ``kind_name`` whose result names the model its kind declares it produces."""
    kind = registry.get_kind(kind_name)
    row = Dataset.objects.get(builtin=dataset or kind.default_dataset)
    config = kind.validate(kind.tiny_config)
    arch = kind.output_arch(config, _data(row), None)
    result = {"output_model": "model.pt", "output_arch": complete_arch(arch)} if arch else {}
    return Job.objects.create(
        owner=owner, kind=kind_name, config=config, dataset=row, status=JobStatus.SUCCEEDED, result=result
    )


@pytest.mark.parametrize(("parent_kind", "child_kind"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_pair_is_accepted_or_refused_with_its_reason(alice, alice_api, parent_kind: str, child_kind: str) -> None:  # noqa: ANN001
    parent = finished_parent(alice, parent_kind)
    child = registry.get_kind(child_kind)
    before = Job.objects.count()
    r = alice_api.post(
        "/api/v1/jobs/", {"kind": child_kind, "config": child.tiny_config, "parent": parent.pk}, format="json"
    )
    arch = parent.result.get("output_arch")
    if r.status_code == 201:
        job = Job.objects.get(pk=r.json()["id"])
        assert job.parent_id == parent.pk and job.dataset_id == parent.dataset_id, "a child works on its parent's data"
        assert child.accepts_model and arch["name"] in child.input_families
        assert alice_api.get(f"/api/v1/jobs/{parent.pk}/").json()["children"] == [job.pk]
        return
    assert r.status_code == 400, r.content
    assert Job.objects.count() == before, "a refused submit wrote a job"
    errors = r.json()
    if "dataset" in errors:  # the parent's data (a child's default) is of a modality the child kind does not take
        assert f"{child_kind} needs a dataset of modality" in " ".join(errors["dataset"])
        assert parent.dataset.modality not in child.modalities
        return
    message = " ".join(errors["parent"])
    if not child.accepts_model:
        assert f"{child_kind} does not take an input model" in message
    elif arch is None:
        assert "has no output model" in message
    else:
        assert arch["name"] in message and child_kind in message, message


def test_a_model_shaped_for_other_data_is_refused_at_submit(alice, alice_api) -> None:  # noqa: ANN001
    """The jet tagger (16 features, 5 classes) as the parent of a digits job: refused before the worker sees it."""
    tagger = finished_parent(alice, "hls4ml_sweep")  # an MLP on jets_synthetic
    r = alice_api.post(
        "/api/v1/jobs/",
        {"kind": "granularity_sweep", "dataset": "digits", "parent": tagger.pk, "config": {"n_trials": 2}},
        format="json",
    )
    assert r.status_code == 400, r.content
    message = " ".join(r.json()["parent"])
    assert "input of shape [16]" in message and "[1, 8, 8]" in message and "5 classes" in message
    # On its own data (the default for a child) the same parent is fine.
    r = alice_api.post(
        "/api/v1/jobs/", {"kind": "granularity_sweep", "parent": tagger.pk, "config": {"n_trials": 2}}, format="json"
    )
    assert r.status_code == 201, r.content
    assert r.json()["dataset"] == tagger.dataset_id


def test_an_uploaded_model_is_checked_the_same_way(alice, alice_api) -> None:  # noqa: ANN001
    from automl_site.jobs.models import ModelFile

    mlp = ModelFile.objects.create(
        owner=alice, name="tagger", architecture=complete_arch({"name": "mlp", "input_shape": [16], "num_classes": 5})
    )
    r = alice_api.post("/api/v1/jobs/", {"kind": "adc_prune", "dataset": "digits", "model": mlp.pk}, format="json")
    assert r.status_code == 400 and "the dataset's samples are [1, 8, 8]" in " ".join(r.json()["model"])
    r = alice_api.post("/api/v1/jobs/", {"kind": "pathlevel_nas", "dataset": "digits", "model": mlp.pk}, format="json")
    assert r.status_code == 400 and "pathlevel_nas does not take an input model" in " ".join(r.json()["model"])


def test_the_parent_picker_lists_only_parents_the_submit_accepts(alice, bob, alice_api) -> None:  # noqa: ANN001
    jobs = {name: finished_parent(alice, name) for name in sorted(registry.KINDS)}
    finished_parent(bob, "pathlevel_nas")  # another user's job is never offered
    for child_kind in sorted(registry.KINDS):
        listed = alice_api.get(f"/api/v1/jobs/?parent_for={child_kind}&page_size=100").json()["results"]
        offered = {j["id"] for j in listed}
        accepted = set()
        for parent in jobs.values():
            r = alice_api.post("/api/v1/jobs/", {"kind": child_kind, "parent": parent.pk}, format="json")
            if r.status_code == 201:
                accepted.add(parent.pk)
                Job.objects.filter(pk=r.json()["id"]).delete()
        assert offered == accepted, child_kind
    # With the child's dataset named, the check is against that dataset.
    digits = alice_api.get("/api/v1/jobs/?parent_for=granularity_sweep&for_dataset=digits").json()["results"]
    assert jobs["hls4ml_sweep"].pk not in {j["id"] for j in digits}
