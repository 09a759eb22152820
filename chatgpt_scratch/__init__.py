"""chatgpt-scratch: a GPT built from scratch in PyTorch, with a terminal app around it.

Importing the package is cheap: the heavy modules (torch, tiktoken) load only when
their submodules are imported, so the TUI can paint before the model stack is ready.
"""

__version__ = "0.1.0"
