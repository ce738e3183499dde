"""The learning loop: label requests (labels), shadow rules (shadow_rules), measuring rules and models on
labelled examples (evaluation), fine-tuning from reviews (finetune), the jobs that run them (jobs), and
the release gate every change of model, adapter or threshold passes before it goes live (release)."""
