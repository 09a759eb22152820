"""`chatgpt-scratch export-gguf CHECKPOINT OUT.gguf`: a model for llama.cpp and Ollama."""

from __future__ import annotations

import argparse

from chatgpt_scratch.cli.common import add_command

# Kept here (not imported from gguf_export) so that --help does not import the library.
_TYPES = ("f32", "f16", "q8_0")


def register(subparsers) -> None:
    p = add_command(subparsers, "export-gguf", run_export_gguf,
                    after="types: f32 = exact weights; f16 = half the size, within f16 rounding; q8_0 = a quarter "
                    "of the size, 8-bit blocks of 32 weights (the fastest on a CPU). Norms, biases and the position "
                    "embedding stay f32.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a base or instruct .safetensors checkpoint, or a LoRA adapter of one")
    p.add_argument("out", metavar="OUT.gguf", help="the GGUF file to write")
    p.add_argument("--type", dest="type_name", choices=_TYPES, default="f16",
                   help="weight type for the matrices (default: f16, what llama.cpp's converter picks for a float32 model)")
    modelfile = p.add_mutually_exclusive_group()
    modelfile.add_argument("--modelfile", nargs="?", const=True, default=None, metavar="PATH",
                           help="write an Ollama Modelfile (default for instruct models: OUT.Modelfile beside "
                           "OUT.gguf; give PATH to name it, same folder); a base model gets one only with this flag")
    modelfile.add_argument("--no-modelfile", dest="modelfile", action="store_false", default=None,
                           help="do not write the Modelfile of an instruct model")
    p.add_argument("--force", action="store_true", help="overwrite OUT.gguf (and the Modelfile) if they exist")


def run_export_gguf(args: argparse.Namespace) -> int:
    """write a checkpoint as a GGUF file for llama.cpp and Ollama

    Write a base or instruct checkpoint (or a LoRA adapter, merged into its base first) as GGUF, architecture
    gpt2, with the GPT-2 tokenizer inside: the tensors and metadata llama.cpp's convert_hf_to_gguf.py writes for
    the same model. An instruct model also gets its chat template (tokenizer.chat_template) and, beside
    OUT.gguf, an Ollama Modelfile OUT.Modelfile with the prompt template, its stop strings and num_ctx.
    Classifiers cannot be exported (llama.cpp has no class head).

    examples:
      chatgpt-scratch export-gguf checkpoints/instruct.safetensors exported/instruct.gguf --type q8_0
      llama-cli -m exported/instruct.gguf               # chat with llama.cpp (uses the chat template)
      ollama create my-gpt -f exported/instruct.Modelfile && ollama run my-gpt
    """
    from chatgpt_scratch.usecases.gguf_export import export_gguf
    from chatgpt_scratch.model import format_params

    done = export_gguf(args.checkpoint, args.out, args.type_name, modelfile=args.modelfile, force=args.force)
    what = f"{done.kind} model" + (f", {done.template} chat template" if done.template else "")
    print(f"wrote {done.path} ({done.type}, {done.n_tensors} tensors, {format_params(done.n_params)} parameters; "
          f"{what})")
    if done.template:
        print(f"chat with it in llama.cpp: llama-cli -m {done.path}")
    else:
        print(f"continue text with llama.cpp: llama-completion -m {done.path} -no-cnv -p 'Every effort moves you' -n 50")
    if done.modelfile is not None:
        print(f"wrote {done.modelfile}; for Ollama: ollama create NAME -f {done.modelfile} && ollama run NAME")
    return 0
