"""After the ADC search: the policy chosen on the selection split, the original, uniform and AMC models
fine-tuned and scored on the test split (FLOPs, parameters, latency), and the result with its headlines,
table and figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from search_spaces.adc import graph as g
from search_spaces.adc.ddpg import DDPG
from search_spaces.adc.env import Outcome, PruningEnv
from search_spaces.adc.search import SEARCH_END, SELECTION_CANDIDATES, AdcConfig, Data, SearchState
from search_spaces.base import JobInputs, Reporter, check_stop, json_safe


def _best_counts(state: SearchState, reporter: Reporter) -> list[int]:
    if state.best is not None:
        return list(state.best["counts"])
    records = [r for r in reporter.completed_trials() if r.values]
    if not records:
        raise RuntimeError("no episode finished: nothing to fine-tune")
    return list(max(records, key=lambda r: r.values[0]).params["channels"])  # type: ignore[index]


def select_policy(
    env: PruningEnv, state: SearchState, data: Data, reporter: Reporter
) -> tuple[list[int], dict[str, Any]]:
    """The policy to keep: of the :data:`SELECTION_CANDIDATES` best distinct episodes by reward (measured on the
    agent's half of the validation split), the one whose reward is best on the selection split (the other half).

    The best of hundreds of episodes on the images they were scored on is biased upwards (some of its lead is
    luck on those images); re-scoring a few leaders on images none of them was chosen on keeps the choice honest.
    Returns the counts and ``{"candidates": [...], "chosen_episode"}``."""
    from search_spaces.kit import trainer

    ranked = sorted(state.history or [], key=lambda r: -r["reward"])
    seen: set[tuple[int, ...]] = set()
    leaders: list[dict[str, Any]] = []
    for row in ranked:
        if tuple(row["counts"]) not in seen:
            seen.add(tuple(row["counts"]))
            leaders.append(row)
        if len(leaders) == SELECTION_CANDIDATES:
            break
    if not leaders:  # the history was lost with the checkpoint: the stored trials' best
        return _best_counts(state, reporter), {"candidates": [], "chosen_episode": None}
    scored = []
    for row in leaders:
        check_stop(reporter)
        accuracy = trainer.evaluate(env.build(row["counts"]), data.x_sel, data.y_sel)
        scored.append(
            {
                "episode": row["episode"],
                "reward": row["reward"],
                "accuracy": row["accuracy"],
                "selection_accuracy": accuracy,
                "selection_reward": env.reward(accuracy, row["flops"], row["params"]),
            }
        )
    chosen = max(range(len(scored)), key=lambda i: (scored[i]["selection_reward"], scored[i]["reward"]))
    return list(leaders[chosen]["counts"]), {"candidates": scored, "chosen_episode": scored[chosen]["episode"]}


def summarise(
    settings: AdcConfig,
    inputs: JobInputs,
    state: SearchState,
    env: PruningEnv,
    agent: DDPG,
    data: Data,
    reporter: Reporter,
    graph: g.Graph,
) -> dict[str, Any]:
    from search_spaces.adc.latency import measure_latency
    from search_spaces.kit import counting, models, trainer

    workdir = Path(inputs.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shape = graph.input_shape
    best, selection = select_policy(env, state, data, reporter)
    # Accuracy-guaranteed search has no target: the uniform baseline gets the AMC policy's own cost.
    same_cost = None if env.constrained else env.graph.total(best, env.resource) * (1 + 1e-9)
    policies = {"amc": best, "uniform": env.uniform_counts(same_cost)}
    rows: dict[str, dict[str, Any]] = {}
    dense = env.model
    counted = counting.count(dense, shape)
    rows["original"] = {
        "keep_ratios": [1.0] * env.n_units,
        "val_accuracy": state.dense.val_accuracy,
        "selection_accuracy": trainer.evaluate(dense, data.x_sel, data.y_sel),
        "test_accuracy": trainer.evaluate(dense, data.x_test, data.y_test),
        "val_accuracy_finetuned": None,
        "test_accuracy_finetuned": None,
        "flops": counted["flops"],
        "params": counted["params"],
        "latency_ms": measure_latency(dense, shape),
    }
    output_model, output_arch = None, None
    steps = len(policies)
    for i, (name, counts) in enumerate(policies.items()):
        check_stop(reporter)
        outcome: Outcome = env.evaluate(counts, keep_model=True)
        model = outcome.model
        assert model is not None
        arch = g.pruned_arch(state.dense.arch, model)
        counted = counting.count(model, shape)
        row = {
            "keep_ratios": outcome.keep_ratios,
            "channels": counts,
            "val_accuracy": outcome.accuracy,
            "selection_accuracy": trainer.evaluate(model, data.x_sel, data.y_sel),
            "test_accuracy": trainer.evaluate(model, data.x_test, data.y_test),
            "flops": counted["flops"],
            "params": counted["params"],
            "flops_ratio": counted["flops"] / rows["original"]["flops"],
            "params_ratio": counted["params"] / rows["original"]["params"],
            "cost_ratio": outcome.cost_ratio,
            "latency_ms": measure_latency(model, shape),
            "arch": arch,
        }
        if name == "amc":
            models.save_model(model, arch, workdir / "amc_pruned.pt")
            reporter.artifact("amc_pruned.pt", workdir / "amc_pruned.pt", "model")
        reporter.progress(SEARCH_END + (1 - SEARCH_END) * (i + 0.5) / steps, f"fine-tune the {name} model")
        if settings.fine_tune_epochs > 0:
            trainer.set_seed(settings.seed + 1 + i)
            trainer.train(
                model,
                data.x_train,
                data.y_train,
                epochs=settings.fine_tune_epochs,
                lr=settings.fine_tune_lr,
                batch_size=settings.batch_size,
                seed=settings.seed + 1 + i,
                x_val=data.x_val,
                y_val=data.y_val,
                reporter=reporter,
                metric_prefix=f"finetune_{name}/",
            )
        model.eval()
        row["val_accuracy_finetuned"] = trainer.evaluate(model, data.x_val, data.y_val)
        row["test_accuracy_finetuned"] = trainer.evaluate(model, data.x_test, data.y_test)
        file = f"{name}_finetuned.pt"
        models.save_model(model, arch, workdir / file)
        reporter.artifact(file, workdir / file, "model")
        if name == "amc":
            output_model, output_arch = file, arch
        rows[name] = row
    agent_file = workdir / "agent.pt"
    torch.save(
        {
            "actor": agent.actor.state_dict(),
            "critic": agent.critic.state_dict(),
            "settings": json.dumps(asdict(agent.settings)),
        },
        agent_file,
    )
    reporter.artifact("agent.pt", agent_file, "model")
    plots = write_figures(state, rows, graph, workdir, reporter)
    target = settings.target_ratio
    amc = rows["amc"]
    result = {
        "dataset": data.splits.info.name,
        "model": state.dense.source,
        "arch": state.dense.arch,
        "mode": settings.mode,
        "reward": settings.reward,
        "target_ratio": target,
        "target_reachable": env.reachable,
        "layers": [
            {
                "name": u.name,
                "producer": u.producer,
                "consumer": u.consumer,
                "followers": list(u.followers),
                "channels": u.channels,
                "producers": list(u.producers or (u.producer,)),
                "consumers": list(u.consumers or (u.consumer,)),
            }
            for u in graph.units
        ],
        "table": [{"model": name, **row} for name, row in rows.items()],
        "best_episode": state.best["episode"] if state.best else None,
        "best_reward": state.best["reward"] if state.best else None,
        "selection": selection,
        "channel_round": settings.rounding,
        "episodes": state.episode,
        "amc_cost_error": amc["cost_ratio"] / target - 1 if settings.reward == "error" else None,
        "amc_vs_uniform_val_accuracy": amc["val_accuracy"] - rows["uniform"]["val_accuracy"],
        "latency_speedup": rows["original"]["latency_ms"] / amc["latency_ms"],
        **models.output_entry(output_model, output_arch),
        "plots": plots,
        "settings": asdict(settings),
        **shown(settings, rows, graph),
    }
    path = workdir / "summary.json"
    path.write_text(json.dumps(json_safe(result), indent=2))
    reporter.artifact("summary.json", path, "data")
    return result


def shown(settings: AdcConfig, rows: dict[str, dict[str, Any]], graph: g.Graph) -> dict[str, Any]:
    """Headlines (AMC vs uniform at the same budget: He et al. 2018, Table 1's comparison), the original /
    uniform / AMC table and the keep ratio per layer."""
    from search_spaces.kit.results import headline, is_number, summary, table

    amc, uniform, original = rows["amc"], rows["uniform"], rows["original"]
    budget = (
        f"{settings.target_ratio:.0%} {settings.mode}" if settings.reward == "error" else f"AMC's own {settings.mode}"
    )

    def gap(key: str) -> float | None:
        a, u = amc.get(key), uniform.get(key)
        return 100 * (a - u) if is_number(a) and is_number(u) else None

    # test accuracy: the agent learnt on the validation half and the policy was chosen on the selection half
    searched, tuned = gap("test_accuracy"), gap("test_accuracy_finetuned")
    columns = [
        "model",
        "val accuracy",
        "selection accuracy",
        "test accuracy",
        "val accuracy fine-tuned",
        "test accuracy fine-tuned",
        "FLOPs",
        "params",
        "FLOPs ratio",
        "params ratio",
        "latency ms",
    ]
    keys = [
        "val_accuracy",
        "selection_accuracy",
        "test_accuracy",
        "val_accuracy_finetuned",
        "test_accuracy_finetuned",
        "flops",
        "params",
    ]
    table_rows = [
        [
            name,
            *(row.get(k) for k in keys),
            row.get("flops_ratio", 1.0),
            row.get("params_ratio", 1.0),
            row["latency_ms"],
        ]
        for name, row in rows.items()
    ]
    layers = [
        [u.name, u.channels, a, b]
        for u, a, b in zip(graph.units, amc["keep_ratios"], uniform["keep_ratios"], strict=True)
    ]
    return {
        "summary": summary(
            headline(f"AMC vs uniform, {budget}, test accuracy before fine-tuning", searched, "points")
            if searched is not None
            else None,
            headline(f"AMC vs uniform, {budget}, test accuracy fine-tuned", tuned, "points")
            if tuned is not None
            else None,
            headline("AMC FLOPs / original", 100 * amc["flops_ratio"], "%", "lower"),
            headline("AMC test accuracy", 100 * amc["test_accuracy"], "%"),
            headline("Latency, original / AMC", original["latency_ms"] / amc["latency_ms"], "×"),
        ),
        "tables": [
            table("Original, uniform and AMC", columns, table_rows),
            table("Keep ratio per layer", ["layer", "channels", "AMC keep", "uniform keep"], layers),
        ],
    }


def write_figures(
    state: SearchState, rows: dict[str, dict[str, Any]], graph: g.Graph, workdir: Path, reporter: Reporter
) -> list[str]:
    """Figure artifacts (plotly JSON): keep ratio per layer (AMC vs uniform) and the episode rewards; their names."""
    import plotly.graph_objects as go

    from search_spaces.kit.results import write_figure

    layers = [u.name for u in graph.units]
    policy = go.Figure()
    for name, colour in (("amc", "#d62728"), ("uniform", "#1f77b4")):
        row = rows[name]
        policy.add_trace(
            go.Bar(
                x=layers,
                y=row["keep_ratios"],
                name=f"{name} (val acc {row['val_accuracy']:.4f})",
                marker_color=colour,
                text=[str(c) for c in row["channels"]],
                hovertemplate="%{x}<br>keep %{y:.3f} (%{text} channels)",
            )
        )
    policy.update_layout(
        title="Keep ratio per layer: AMC policy vs uniform at the same budget",
        barmode="group",
        xaxis_title="layer (output channels cut)",
        yaxis_title="keep ratio",
        yaxis_range=[0, 1.05],
    )
    history = state.history or []
    rewards = go.Figure()
    rewards.add_trace(
        go.Scatter(
            x=[r["episode"] for r in history],
            y=[r["reward"] for r in history],
            mode="markers",
            name="reward",
            marker={"color": ["#999999" if r["warmup"] else "#1f77b4" for r in history]},
        )
    )
    rewards.add_trace(
        go.Scatter(
            x=[r["episode"] for r in history],
            y=[r["best_reward"] for r in history],
            mode="lines",
            name="best reward",
            line={"color": "#d62728"},
        )
    )
    rewards.update_layout(
        title="Episode reward (grey: warm-up, random actions)", xaxis_title="episode", yaxis_title="reward"
    )
    return [
        write_figure(reporter, workdir, name, fig)
        for name, fig in (("keep_ratios.json", policy), ("episode_rewards.json", rewards))
    ]
