"""Changes that move alerts without touching a rule's question: another LoRA adapter, other thresholds.
Each is proven first by the gate (every rule's labelled examples, before and after), recorded as a
version, made live, and can be rolled back."""
