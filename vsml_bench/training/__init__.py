"""Meta-training: evolution strategies, gradients, backprop cloning, checkpoints."""
