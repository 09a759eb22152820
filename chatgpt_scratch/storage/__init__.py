"""Files and formats: the checkpoint file format, built-in models, GPT-2 and GGUF import/export, chat history, atomic writes, paths."""
