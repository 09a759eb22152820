"""One training engine for every task: pretraining, spam classification, instruction tuning."""
