"""The shared inference path: requests from every camera, batched on one model."""
