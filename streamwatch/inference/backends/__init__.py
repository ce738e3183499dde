"""Model backends: each file implements `Backend` for one way of running a model."""
