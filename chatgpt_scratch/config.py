"""Model configuration: one dataclass and the named presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from chatgpt_scratch.errors import ScratchError


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.0
    qkv_bias: bool = True
    tie_embeddings: bool = False  # share tok_emb and out_head weights (GPT-2 does)
    n_classes: int | None = None  # set for a classifier: out_head maps to n_classes, not vocab
    # Embedding and head rows rounded up to a multiple of this (64: 50257 -> 50304, which GPU matmul
    # kernels handle faster). The extra rows are never looked up and never predicted.
    vocab_multiple: int = 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "vocab_multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ScratchError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.emb_dim % self.n_heads:
            raise ScratchError(
                f"model config: emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        # Configs also come from hand-editable checkpoint headers: check the types, not only the ranges.
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ScratchError(f"model config: drop_rate must be a number, got {self.drop_rate!r}")
        for name in ("qkv_bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ScratchError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")
        if self.n_classes is not None and (isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int)):
            raise ScratchError(f"model config: n_classes must be an integer, got {self.n_classes!r}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ScratchError(f"model config: drop_rate must be in [0, 1), got {self.drop_rate}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ScratchError(f"model config: n_classes must be at least 2, got {self.n_classes}")
        if self.n_classes is not None and self.tie_embeddings:
            raise ScratchError("model config: a classifier head cannot be tied to the token embedding")

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @property
    def out_dim(self) -> int:
        """Scores the model predicts per token: vocab_size, or n_classes for a classifier."""
        return self.n_classes if self.n_classes is not None else self.vocab_size

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the token embedding (and of an LM head): vocab_size rounded up to vocab_multiple."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    def with_(self, **changes) -> "GPTConfig":
        return replace(self, **changes)

    def to_json(self) -> str:
        data = asdict(self)
        if data["vocab_multiple"] == 1:  # written only when set, so older versions still read unpadded models
            del data["vocab_multiple"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GPTConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScratchError(f"model config is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ScratchError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ScratchError(f"model config has unknown keys {sorted(unknown)}; is this file from a newer version?")
        return cls(**data)


_GPT2 = dict(vocab_size=50257, context_length=1024, drop_rate=0.1, qkv_bias=True, tie_embeddings=True)

PRESETS: dict[str, GPTConfig] = {
    # The four OpenAI GPT-2 sizes (parameter counts with tied embeddings).
    "gpt2-small": GPTConfig(emb_dim=768, n_heads=12, n_layers=12, **_GPT2),  # 124M
    "gpt2-medium": GPTConfig(emb_dim=1024, n_heads=16, n_layers=24, **_GPT2),  # 355M
    "gpt2-large": GPTConfig(emb_dim=1280, n_heads=20, n_layers=36, **_GPT2),  # 774M
    "gpt2-xl": GPTConfig(emb_dim=1600, n_heads=25, n_layers=48, **_GPT2),  # 1558M
    # Small models that train in minutes on a laptop CPU, and one for tests.
    "cpu-small": GPTConfig(context_length=512, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.1, tie_embeddings=True),
    # The shipped default models: thinner and deeper than cpu-small (the vocabulary head, 50,257 x emb_dim,
    # is most of a small GPT's compute and file size), 26M parameters, 52 MB in bf16.
    "cpu-deep": GPTConfig(context_length=512, emb_dim=320, n_heads=5, n_layers=8, drop_rate=0.0, tie_embeddings=True),
    "cpu-mini": GPTConfig(context_length=256, emb_dim=256, n_heads=4, n_layers=4, drop_rate=0.1, tie_embeddings=True),
    "test-tiny": GPTConfig(context_length=64, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0),
}
# The weight precisions a CPU runs a trained model's decoding in: a checkpoint header's `chat_precision`
# (eager) and `compiled_precision` (the compiled step) name one each, and compiled_decode builds its step for each.
INFERENCE_PRECISIONS = ("float32", "bfloat16", "int8")

# The names people know from the book and from Hugging Face.
ALIASES = {"gpt2": "gpt2-small", "124M": "gpt2-small", "355M": "gpt2-medium", "774M": "gpt2-large", "1558M": "gpt2-xl"}


def get_preset(name: str) -> GPTConfig:
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ScratchError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[key]
