"""scripts/model_cards.py picks the chat precisions from the fidelity benchmark's table by the README's rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The table benchmarks/quantize_fidelity.py --compiled printed for the built-in instruct model (the README's).
TABLE = """\
| precision | reference loss | top-1 = float32 | replies = float32 | tokens/s | vs float32 |
|---|---:|---:|---:|---:|---:|
| float32 | 3.3502 | 100.00% | 110/110 | 109.8 | 1.00x |
| bfloat16 | 3.3496 | 99.24% | 105/110 | 120.5 | 1.10x |
| int8 (dynamic, linears) | 3.3546 | 97.66% | 89/110 | 255.5 | 2.33x |
| float32 weights, compiled decode step | 3.3502 | 100.00% | 110/110 | 196.6 | 1.79x |
| bfloat16 weights, compiled decode step | 3.3502 | 100.00% | 110/110 | 273.3 | 2.49x |
| int8 weights, compiled decode step | 3.3507 | 99.66% | 106/110 | 351.6 | 3.20x |
"""


def _model_cards():
    spec = importlib.util.spec_from_file_location("model_cards", REPO / "scripts" / "model_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_way_gets_the_fastest_precision_that_keeps_90_percent_of_the_replies():
    """Eager: dynamic int8 is fastest but keeps 81% (89/110), so bf16; compiled: int8 keeps 96%, so int8."""
    picked = _model_cards().pick_precisions(TABLE)
    assert picked["chat_precision"] == "bfloat16" and picked["compiled_precision"] == "int8"
    assert picked["chat_replies_equal_float32"] == {"float32": 1.0, "bfloat16": 0.955, "int8": 0.809}
    assert picked["compiled_tokens_per_s"] == {"float32": 196.6, "bfloat16": 273.3, "int8": 351.6}


def test_without_compiled_rows_the_header_leaves_compiled_precision_out():
    """(The compiled step then uses chat_precision: usecases.inference.apply_chat_precision.)"""
    eager_only = "\n".join(TABLE.splitlines()[:5])
    picked = _model_cards().pick_precisions(eager_only)
    assert picked["chat_precision"] == "bfloat16" and not any(k.startswith("compiled") for k in picked)
