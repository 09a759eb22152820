"""Use-cases beside chat and classify: X-ray, instruction evaluation, inference precision."""
