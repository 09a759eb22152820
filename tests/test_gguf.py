"""export-gguf: the file read back with gguf's own GGUFReader matches the checkpoint, tensor by tensor
(f32 exact, f16 within rounding, q8_0 within its block error), and carries what llama.cpp's `gpt2`
loader reads (hyperparameters, tokenizer, chat template). Tiny random models; no llama.cpp needed.

The expected tensors are built here from our own parameter names, independently of gguf_export's
path through the Hugging Face layout, so a wrong name, orientation or padding cut fails.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from chatgpt_scratch.checkpoints import save_checkpoint  # noqa: E402
from chatgpt_scratch.cli import main  # noqa: E402
from chatgpt_scratch.config import PRESETS  # noqa: E402
from chatgpt_scratch.errors import ScratchError  # noqa: E402
from chatgpt_scratch.usecases.gguf_export import export_gguf  # noqa: E402
from chatgpt_scratch.usecases.inference import load_for_inference  # noqa: E402
from chatgpt_scratch.lora import inject_lora, save_lora_adapter  # noqa: E402
from chatgpt_scratch.model import GPTModel, to_classifier  # noqa: E402
from chatgpt_scratch.data.templates import ALPACA, PHI3  # noqa: E402
from chatgpt_scratch.tokenizer import get_tokenizer  # noqa: E402

TINY = PRESETS["test-tiny"]  # emb 32, 4 heads, 2 layers, context 64: every row a multiple of Q8_0's 32
Q = gguf.GGMLQuantizationType


def make_checkpoint(path: Path, kind: str = "base", seed: int = 0, **cfg_changes) -> tuple[Path, GPTModel]:
    torch.manual_seed(seed)
    model = GPTModel(TINY.with_(**cfg_changes)).eval()
    with torch.no_grad():  # LayerNorm starts at 1/0: random values so a swapped scale/shift shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_()
    extra = {"template": "alpaca"} if kind == "instruct" else {}
    return save_checkpoint(path, model, kind=kind, **extra), model


def expected_tensors(model: GPTModel) -> dict[str, np.ndarray]:
    """llama.cpp gpt2 name -> our weight, (out, in) as nn.Linear stores it, vocabulary rows cut to 50,257."""
    cfg = model.cfg
    s = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": s["tok_emb.weight"][:cfg.vocab_size],
        "position_embd.weight": s["pos_emb.weight"],
        "output_norm.weight": s["final_norm.scale"],
        "output_norm.bias": s["final_norm.shift"],
    }
    if not cfg.tie_embeddings:
        out["output.weight"] = s["out_head.weight"][:cfg.vocab_size]
    for i in range(cfg.n_layers):
        b = f"trf_blocks.{i}."
        out |= {
            f"blk.{i}.attn_norm.weight": s[b + "norm1.scale"], f"blk.{i}.attn_norm.bias": s[b + "norm1.shift"],
            f"blk.{i}.attn_qkv.weight": s[b + "att.qkv.weight"],
            f"blk.{i}.attn_qkv.bias": s.get(b + "att.qkv.bias", np.zeros(3 * cfg.emb_dim, np.float32)),
            f"blk.{i}.attn_output.weight": s[b + "att.out_proj.weight"],
            f"blk.{i}.attn_output.bias": s[b + "att.out_proj.bias"],
            f"blk.{i}.ffn_norm.weight": s[b + "norm2.scale"], f"blk.{i}.ffn_norm.bias": s[b + "norm2.shift"],
            f"blk.{i}.ffn_up.weight": s[b + "ff.layers.0.weight"], f"blk.{i}.ffn_up.bias": s[b + "ff.layers.0.bias"],
            f"blk.{i}.ffn_down.weight": s[b + "ff.layers.2.weight"], f"blk.{i}.ffn_down.bias": s[b + "ff.layers.2.bias"],
        }
    return out


def read(path: Path) -> tuple[dict, dict]:
    """(metadata key -> value, tensor name -> ReaderTensor) through gguf's own reader."""
    reader = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def as_array(t) -> np.ndarray:
    """A reader tensor as float32 in numpy (rows, cols) order, dequantized if need be."""
    shape = tuple(int(n) for n in reversed(t.shape))  # ggml lists dimensions innermost first
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)


def is_plain(name: str, array: np.ndarray) -> bool:
    """Tensors llama.cpp keeps in F32 whatever the file type: 1-D ones and the position embedding."""
    return array.ndim == 1 or name == "position_embd.weight"


@pytest.fixture
def tied_padded(tmp_path):
    """GPT-2-like: tied head, and a vocabulary padded to 50,304 rows (vocab_multiple=64)."""
    return make_checkpoint(tmp_path / "base.safetensors", tie_embeddings=True, vocab_multiple=64)


def test_f32_every_tensor_equals_the_checkpoint_exactly_with_llama_cpp_names_and_orientation(tmp_path, tied_padded):
    ckpt, model = tied_padded
    done = export_gguf(ckpt, tmp_path / "m.gguf", "f32")
    _, tensors = read(done.path)
    expected = expected_tensors(model)
    assert set(tensors) == set(expected)  # no output.weight: a tied head reuses token_embd, as in llama.cpp
    assert done.n_tensors == len(expected) == 4 + 12 * TINY.n_layers
    for name, want in expected.items():
        t = tensors[name]
        assert t.tensor_type == Q.F32, name
        got = as_array(t)
        assert got.shape == want.shape, name  # e.g. attn_qkv (96, 32): (out, in); token_embd 50,257 rows, not 50,304
        assert np.array_equal(got, want), name


def test_untied_head_exports_output_weight_and_f16_is_within_rounding(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "untied.safetensors", tie_embeddings=False)
    _, tensors = read(export_gguf(ckpt, tmp_path / "m.gguf", "f16").path)
    expected = expected_tensors(model)
    assert "output.weight" in tensors and set(tensors) == set(expected)
    assert not np.array_equal(expected["output.weight"], expected["token_embd.weight"])  # really a separate head
    for name, want in expected.items():
        t, got = tensors[name], as_array(tensors[name])
        if is_plain(name, want):
            assert t.tensor_type == Q.F32 and np.array_equal(got, want), name
        else:
            assert t.tensor_type == Q.F16, name
            # f16 keeps 11 significant bits: each weight is the nearest f16, relative error <= 2^-11
            assert np.array_equal(got, want.astype(np.float16).astype(np.float32)), name
            assert np.all(np.abs(got - want) <= np.abs(want) * 2.0 ** -11 + 2.0 ** -24), name


def test_a_bfloat16_checkpoint_exports_its_exact_values_in_f32(tmp_path):
    """The shipped default models are saved in bfloat16; every bfloat16 value is exact in float32."""
    torch.manual_seed(0)
    model = GPTModel(TINY.with_(tie_embeddings=True)).to(torch.bfloat16).eval()
    ckpt = save_checkpoint(tmp_path / "bf16.safetensors", model, kind="base")
    _, tensors = read(export_gguf(ckpt, tmp_path / "m.gguf", "f32").path)
    for name, want in expected_tensors(model).items():
        assert np.array_equal(as_array(tensors[name]), want), name


def test_q8_0_dequantizes_to_the_checkpoint_within_each_blocks_error(tmp_path, tied_padded):
    ckpt, model = tied_padded
    _, tensors = read(export_gguf(ckpt, tmp_path / "q8.gguf", "q8_0").path)
    for name, want in expected_tensors(model).items():
        t, got = tensors[name], as_array(tensors[name])
        if is_plain(name, want):
            assert t.tensor_type == Q.F32 and np.array_equal(got, want), name
            continue
        assert t.tensor_type == Q.Q8_0 and t.n_bytes == want.size // 32 * 34, name  # 34 bytes per 32 weights
        # Q8_0: each run of 32 weights along a row is stored as q = round(w / d), d = max|w| / 127, and read
        # back as q * f16(d): off by at most half a step plus |q| <= 127 times f16's rounding of d (2^-11).
        blocks_want, blocks_got = want.reshape(-1, 32), got.reshape(-1, 32)
        step = np.abs(blocks_want).max(axis=1, keepdims=True) / 127
        err = np.abs(blocks_got - blocks_want)
        assert np.all(err <= (0.5 + 127 * 2.0 ** -11) * step * (1 + 1e-6)), name
        assert err.max() > 0, name  # it really is quantized


def test_metadata_has_every_key_llama_cpp_reads_for_gpt2(tmp_path):
    ckpt, model = make_checkpoint(tmp_path / "base.safetensors", tie_embeddings=True)
    fields, _ = read(export_gguf(ckpt, tmp_path / "m.gguf", "q8_0").path)
    assert fields["general.architecture"] == "gpt2"
    assert fields["general.type"] == "model" and fields["general.name"] == "base"
    assert fields["gpt2.context_length"] == TINY.context_length == 64
    assert fields["gpt2.embedding_length"] == TINY.emb_dim == 32
    assert fields["gpt2.feed_forward_length"] == 4 * TINY.emb_dim
    assert fields["gpt2.block_count"] == TINY.n_layers == 2
    assert fields["gpt2.attention.head_count"] == TINY.n_heads == 4
    eps = fields["gpt2.attention.layer_norm_epsilon"]
    norm_eps = {m.eps for m in model.modules() if hasattr(m, "eps")}  # every LayerNorm of the model
    assert len(norm_eps) == 1 and eps == pytest.approx(norm_eps.pop(), rel=1e-6)
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0 == 7
    assert fields["general.quantization_version"] == gguf.GGML_QUANT_VERSION
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    tokens, types, merges = (fields[f"tokenizer.ggml.{k}"] for k in ("tokens", "token_type", "merges"))
    assert len(tokens) == len(types) == 50257
    assert tokens[50256] == "<|endoftext|>" and types[50256] == gguf.TokenType.CONTROL
    assert set(types[:50256]) == {gguf.TokenType.NORMAL}
    assert len(merges) == 50000 and merges[0] == "Ġ t"
    assert fields["tokenizer.ggml.bos_token_id"] == fields["tokenizer.ggml.eos_token_id"] == 50256
    assert fields["tokenizer.ggml.add_bos_token"] is False  # GPT-2 prompts never start with <|endoftext|>
    assert "tokenizer.chat_template" not in fields  # a base model continues text


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (how encoder.json spells token bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def test_token_strings_are_the_bytes_of_our_tokenizer(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "base.safetensors")
    fields, _ = read(export_gguf(ckpt, tmp_path / "m.gguf", "f16").path)
    tokens, enc, table = fields["tokenizer.ggml.tokens"], get_tokenizer(), _bytes_to_unicode()
    for i in [*range(0, 50256, 397), 50255, 11, 198, 262, 13]:
        assert tokens[i] == "".join(table[b] for b in enc.decode_single_token_bytes(i)), i
    # merges replay the tokenizer: "Ġthe" (" the") is one token, made by the merges in the file
    assert tokens[enc.encode(" the")[0]] == "Ġthe" and "Ġt he" in fields["tokenizer.ggml.merges"]


@pytest.mark.parametrize("template", [ALPACA, PHI3], ids=lambda t: t.name)
def test_instruct_chat_template_renders_the_prompt_our_chat_builds(tmp_path, template):
    jinja2 = pytest.importorskip("jinja2")
    from chatgpt_scratch.chat import ChatSession, Turn

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "inst.safetensors", GPTModel(TINY), kind="instruct", template=template.name)
    fields, _ = read(export_gguf(ckpt, tmp_path / "m.gguf", "f32").path)
    # HF's apply_chat_template (and llama.cpp) render with trim_blocks and lstrip_blocks on
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    chat = env.from_string(fields["tokenizer.chat_template"])
    turns = [Turn("Name a colour.", "Blue."), Turn("And another?\nPlease.", "Red.")]
    messages = [m for t in turns for m in ({"role": "user", "content": t.user}, {"role": "assistant", "content": t.assistant})]
    messages.append({"role": "user", "content": "One more."})
    session = ChatSession(model=None, template=template, turns=turns)
    assert chat.render(messages=messages, add_generation_prompt=True) == session.format_conversation("One more.")
    single = chat.render(messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert single == template.prompt("Hi")


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs, read the way Ollama's parser does: a value is quoted with " or \"\"\"
    (newlines allowed inside), no escapes; a # line is a comment."""
    out, pos = [], 0
    pattern = re.compile(r'[ \t\r\n]*(?:#[^\n]*|(\w+)[ \t]+(?:(\w+)[ \t]+)?("""(.*?)"""|"([^"\n]*)"|([^\n]*)))', re.S)
    while pos < len(text.rstrip()):
        m = pattern.match(text, pos)
        assert m, f"cannot parse the Modelfile at {text[pos:pos + 40]!r}"
        pos = m.end()
        if m.group(1):
            command = m.group(1).upper() + (f" {m.group(2)}" if m.group(2) else "")
            value = next(g for g in (m.group(4), m.group(5), m.group(6)) if g is not None)
            out.append((command, value))
    return out


def test_instruct_export_writes_an_ollama_modelfile_with_template_and_stop_strings(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "inst.safetensors", kind="instruct")
    done = export_gguf(ckpt, tmp_path / "out" / "chat.gguf", "q8_0")
    assert done.modelfile == tmp_path / "out" / "chat.Modelfile"
    commands = parse_modelfile(done.modelfile.read_text())
    assert ("FROM", "./chat.gguf") in commands
    stops = [v for c, v in commands if c == "PARAMETER stop"]
    assert stops == list(ALPACA.stop_strings)  # "\n\nBelow is an instruction" keeps its newlines
    assert ("PARAMETER num_ctx", str(TINY.context_length)) in commands
    template = dict(commands)["TEMPLATE"]
    # a user turn becomes exactly template.prompt(message), where the reply starts
    assert ALPACA.preamble + "{{ .Content }}" + ALPACA.response_prefix in template
    assert "{{-" not in template and "-}}" not in template  # trimming would eat the prompt's newlines


def test_base_export_writes_no_modelfile_unless_asked(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path / "base.safetensors")
    assert export_gguf(ckpt, tmp_path / "a.gguf").modelfile is None
    assert not (tmp_path / "a.Modelfile").exists()
    done = export_gguf(ckpt, tmp_path / "b.gguf", modelfile=True)
    commands = parse_modelfile(done.modelfile.read_text())
    assert dict(commands)["TEMPLATE"] == "{{ .Prompt }}" and not any(c == "PARAMETER stop" for c, _ in commands)


def test_a_classifier_is_refused_with_a_message_and_nothing_is_written(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPTModel(TINY)
    to_classifier(model, 2)
    ckpt = save_checkpoint(tmp_path / "spam.safetensors", model.eval(), kind="classifier", labels=["ham", "spam"])
    with pytest.raises(ScratchError, match=r"is a classifier; GGUF export writes language models .*base or instruct"):
        export_gguf(ckpt, tmp_path / "spam.gguf")
    assert main(["export-gguf", str(ckpt), str(tmp_path / "spam.gguf")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "classifier" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "spam.gguf").exists()


def test_a_lora_adapter_is_merged_into_its_base_before_export(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    base = save_checkpoint(tmp_path / "base.safetensors", model, kind="base")
    base_tensors = expected_tensors(model)
    inject_lora(model, rank=2, alpha=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # training would move B from zero; do it by hand so the adapter changes the weights
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    adapter = save_lora_adapter(tmp_path / "chat.lora.safetensors", copy.deepcopy(model), base,
                                model_kind="instruct", template="alpaca")
    done = export_gguf(adapter, tmp_path / "chat.gguf", "f32")
    assert done.kind == "instruct" and done.modelfile is not None  # the adapted kind, with its template
    merged, _ = load_for_inference(adapter, dtype=torch.float32)
    fields, tensors = read(done.path)
    assert "tokenizer.chat_template" in fields
    want = expected_tensors(merged)
    assert set(tensors) == set(want)
    for name, w in want.items():
        assert np.array_equal(as_array(tensors[name]), w), name
    qkv = "blk.0.attn_qkv.weight"
    assert not np.array_equal(as_array(tensors[qkv]), base_tensors[qkv])  # the adapter is in there


def test_cli_writes_the_type_asked_and_refuses_to_overwrite_without_force(tmp_path, capsys):
    ckpt, _ = make_checkpoint(tmp_path / "base.safetensors")
    out = tmp_path / "m.gguf"
    assert main(["export-gguf", str(ckpt), str(out), "--type", "q8_0"]) == 0
    assert "q8_0" in capsys.readouterr().out
    fields, tensors = read(out)
    assert fields["general.file_type"] == 7 and tensors["blk.0.ffn_up.weight"].tensor_type == Q.Q8_0
    before = out.read_bytes()
    assert main(["export-gguf", str(ckpt), str(out), "--type", "f32"]) != 0
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export-gguf", str(ckpt), str(out), "--type", "f32", "--force"]) == 0
    assert read(out)[0]["general.file_type"] == 0
    assert main(["export-gguf", str(ckpt), str(tmp_path / "m.bin")]) != 0
    assert ".gguf" in capsys.readouterr().err


# --- against llama.cpp's own converter (opt-in: needs its source tree) ------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LLAMA_CPP_CONVERTER"),
                    reason="set LLAMA_CPP_CONVERTER to llama.cpp's convert_hf_to_gguf.py (e.g. from the "
                    "llama-cpp-python sdist, vendor/llama.cpp/) to compare with it")
@pytest.mark.parametrize("type_name", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_same_tensors_and_metadata_as_convert_hf_to_gguf_on_our_export_hf(tmp_path, type_name, tied):
    """Byte-identical tensors (names, types, shapes, data) and the same metadata as llama.cpp's converter
    run on `export-hf` output; ours adds only add_bos_token (and a chat template for instruct models)."""
    import subprocess
    import sys

    pytest.importorskip("transformers")
    ckpt, _ = make_checkpoint(tmp_path / "m.safetensors", tie_embeddings=tied)
    assert main(["export-hf", str(ckpt), str(tmp_path / "hf")]) == 0
    ref = tmp_path / "ref.gguf"
    subprocess.run([sys.executable, os.environ["LLAMA_CPP_CONVERTER"], str(tmp_path / "hf"), "--outfile", str(ref),
                    "--outtype", type_name], check=True, capture_output=True)
    ours = export_gguf(ckpt, tmp_path / "ours.gguf", type_name).path
    (ref_fields, ref_tensors), (our_fields, our_tensors) = read(ref), read(ours)
    assert set(our_fields) - set(ref_fields) == {"tokenizer.ggml.add_bos_token"}
    assert set(ref_fields) <= set(our_fields)
    for key in ref_fields:
        if key != "general.name":  # the converter names the model after the folder
            assert our_fields[key] == ref_fields[key], key
    assert set(our_tensors) == set(ref_tensors)
    for name, t in ref_tensors.items():
        o = our_tensors[name]
        assert (o.tensor_type, list(o.shape)) == (t.tensor_type, list(t.shape)), name
        assert o.data.tobytes() == t.data.tobytes(), name
