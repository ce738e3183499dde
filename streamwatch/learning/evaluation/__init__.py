"""`streamwatch eval`: replay labelled examples (reviewed events, answered label requests, labelled
clips) through rules and a model, and measure each rule per camera."""
