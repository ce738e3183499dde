"""Fine-tuning the model on the operators' labelled examples: a LoRA adapter (`streamwatch model finetune`)."""
