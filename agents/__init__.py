"""The built-in learners, found by name through `vsml_bench.registry`."""
