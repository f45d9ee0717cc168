"""AMC / ADC: reinforcement-learning channel pruning (He et al., ECCV 2018, arXiv:1802.03494).

* :mod:`.graph` finds the prunable channel boundaries of a kit model, counts FLOPs / params per layer as
  a function of the kept channels, and cuts a model into a physically smaller one (new tensors);
* :mod:`.reconstruct` refits the layer after each cut by least squares on sampled feature maps and
  re-estimates BatchNorm statistics;
* :mod:`.env` is the layer-by-layer environment (state vector, action wall, rewards);
* :mod:`.ddpg` is the agent (actor / critic, replay buffer, truncated-normal exploration);
* :mod:`.latency` measures CPU latency and fits the per-layer latency model of the ``latency`` mode;
* :mod:`.search` drives a job: pretrain, episodes, checkpoints, fine-tuning, result and artifacts.
"""
