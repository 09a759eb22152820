"""Files and formats: the checkpoint file format, built-in models, the Hugging Face GPT-2 layout, chat history, atomic writes, paths."""
