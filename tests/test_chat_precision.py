"""ChatSession.from_checkpoint runs a model on the CPU in the precision its header recommends for chat."""

from __future__ import annotations

import torch

from chatgpt_scratch.chat import ChatSession
from chatgpt_scratch.checkpoints import save_checkpoint
from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig
from chatgpt_scratch.model import GPTModel


def _save(tmp_path, **meta):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "m.safetensors", GPTModel(PRESETS["test-tiny"]), kind="instruct",
                           template="alpaca", **meta)


def test_the_header_picks_int8_and_replies_still_come(tmp_path):
    path = _save(tmp_path, chat_precision="int8")
    session = ChatSession.from_checkpoint(path, device="cpu", sampling=SamplingConfig(max_new_tokens=3))
    qkv = session.model.trf_blocks[0].att.qkv
    assert "quantized" in type(qkv).__module__ and qkv.weight().dtype == torch.qint8
    assert session.stats is None and isinstance("".join(session.send("Hi")), str)
    assert session.stats.new_tokens >= 1


def test_bfloat16_recommendation_and_explicit_dtype_wins(tmp_path):
    path = _save(tmp_path, chat_precision="bfloat16")
    assert next(ChatSession.from_checkpoint(path, device="cpu").model.parameters()).dtype == torch.bfloat16
    explicit = ChatSession.from_checkpoint(path, device="cpu", dtype=torch.float32)
    assert next(explicit.model.parameters()).dtype == torch.float32


def test_no_recommendation_keeps_the_saved_dtype(tmp_path):
    path = _save(tmp_path)
    assert next(ChatSession.from_checkpoint(path, device="cpu").model.parameters()).dtype == torch.float32


def test_compile_keeps_float32_for_the_prompt_and_decodes_in_the_recommended_precision(tmp_path):
    path = _save(tmp_path, chat_precision="int8")
    session = ChatSession.from_checkpoint(path, device="cpu", sampling=SamplingConfig(max_new_tokens=3), compile=True)
    assert next(session.model.parameters()).dtype == torch.float32  # the eager model: the prompt runs here
    assert type(session.model.trf_blocks[0].att.qkv) is torch.nn.Linear  # not dynamic-quantized
    assert session.model.decoder.weights == "int8"
    assert session.model.decoder.module.layers[0].qkv.weight.dtype == torch.int8


def test_a_compiled_session_s_reply_says_so_in_its_stats(tmp_path):
    path = _save(tmp_path, chat_precision="bfloat16")
    session = ChatSession.from_checkpoint(path, device="cpu", sampling=SamplingConfig(max_new_tokens=4), compile=True)
    assert session.warm_up() is None  # compiled, no error
    "".join(session.send("Hi"))
    assert session.stats.decoder == "compiled, bfloat16 weights"
    assert " tok/s (compiled, bfloat16 weights), prompt " in session.stats.summary()
    plain = ChatSession.from_checkpoint(path, device="cpu", sampling=SamplingConfig(max_new_tokens=4))
    "".join(plain.send("Hi"))
    assert plain.stats.decoder == "" and " tok/s, prompt " in plain.stats.summary()


def test_compiled_precision_picks_the_compiled_step_s_weights_and_leaves_eager_chat_alone(tmp_path):
    """The compiled step rounds only its weights, so its own pick can be lower than eager chat's."""
    path = _save(tmp_path, chat_precision="bfloat16", compiled_precision="int8")
    compiled = ChatSession.from_checkpoint(path, device="cpu", compile=True)
    assert compiled.model.decoder.weights == "int8"
    assert next(ChatSession.from_checkpoint(path, device="cpu").model.parameters()).dtype == torch.bfloat16
