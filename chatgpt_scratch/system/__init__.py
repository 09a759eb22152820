"""The machine: device choice, process and memory facts, terminal-safe text."""
