"""Use-cases beside chat and classify: X-ray, instruction evaluation, loading a model for inference (precision), GGUF export."""
