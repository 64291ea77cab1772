"""Meta-parameters shipped with the package.

- `vsml-cloned.safetensors`: VSML's shared LSTM (N=16, M=8, K=2) trained by backprop
  cloning (`vsml_bench.training.cloning`, `configs/cloning-cpu.yaml`) to act as a
  weight under online gradient descent; it runs on any layer size. How it was made
  and how well it learns: docs/cloning.md. `vsml_bench.harness.pretrained_path()`
  finds it.
"""
