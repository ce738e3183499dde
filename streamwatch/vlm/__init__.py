"""Working with vision-language model checkpoints: loading, prompting, tiny offline models."""
