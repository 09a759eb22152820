"""Property (issue 13): whatever bytes a `.safetensors` file holds, and whatever JSON its header holds,
the checkpoint reader raises only ScratchError (one line for the user), and a listing never raises.

Hypothesis generates the files: arbitrary bytes, and well-framed files whose header is arbitrary JSON
shaped like a real one (tensor entries, `__metadata__` with a `config` of the right keys but any values).
"""

from __future__ import annotations

import json
import string
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatgpt_scratch.checkpoints import (checkpoint_info, config_from_metadata, load_checkpoint, read_metadata,
                                         read_safetensors_header)
from chatgpt_scratch.config import GPTConfig
from chatgpt_scratch.errors import ScratchError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=False), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

config_keys = [f for f in GPTConfig.__dataclass_fields__]
config_json = st.dictionaries(st.sampled_from(config_keys + ["bogus"]),
                              st.one_of(st.integers(-3, 64), json_value), max_size=len(config_keys))
metadata_value = st.one_of(st.text(max_size=20), config_json.map(json.dumps), json_value.map(json.dumps))
metadata = st.one_of(
    json_value,  # anything at all where a string map belongs
    st.fixed_dictionaries(
        {"format": st.sampled_from(["chatgpt-scratch/1", "chatgpt-scratch-state/1", "other"])},
        optional={"kind": st.sampled_from(["base", "instruct", "classifier", "lora-adapter", "x"]),
                  "config": st.one_of(config_json.map(json.dumps), st.text(max_size=10)),
                  "json_keys": st.one_of(st.just('["metrics"]'), st.text(max_size=10)),
                  "metrics": metadata_value, "parent": metadata_value, "created": metadata_value}),
)
tensor_entry = st.one_of(json_value, st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "BF16", "I64"]), json_value),
    "shape": st.one_of(st.lists(st.integers(-1, 8), max_size=3), json_value),
    "data_offsets": st.one_of(st.lists(st.integers(-1, 64), min_size=2, max_size=2), json_value),
}))
header = st.builds(lambda tensors, meta, with_meta: {**tensors, **({"__metadata__": meta} if with_meta else {})},
                   st.dictionaries(st.sampled_from(["tok_emb.weight", "pos_emb.weight", "x", ""]), tensor_entry,
                                   max_size=3),
                   metadata, st.booleans())


def _file(data: bytes) -> Path:
    tmp = tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False)
    tmp.write(data)
    tmp.close()
    return Path(tmp.name)


def _only_scratch_errors(path: Path) -> None:
    info = checkpoint_info(path)  # never raises: a broken file is a row with a reason
    assert info.ok or (isinstance(info.error, str) and info.error)
    for read in (read_safetensors_header, read_metadata, lambda p: config_from_metadata(read_metadata(p), p),
                 load_checkpoint):
        try:
            read(path)
        except ScratchError as e:
            assert str(e)
        # any other exception type fails the test, with hypothesis's smallest example


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_scratch_error(data):
    path = _file(data)
    try:
        _only_scratch_errors(path)
    finally:
        path.unlink()


@SETTINGS
@given(header, st.binary(max_size=64), st.sampled_from([0, 1, 7]))
def test_arbitrary_json_headers_only_ever_raise_scratch_error(head, payload, pad):
    raw = json.dumps(head).encode() + b" " * pad
    path = _file(struct.pack("<Q", len(raw)) + raw + payload)
    try:
        _only_scratch_errors(path)
    finally:
        path.unlink()


@SETTINGS
@given(st.text(alphabet=string.printable, max_size=40))
def test_arbitrary_config_text_is_a_scratch_error_or_a_config(text):
    try:
        config_from_metadata({"config": text}, "f")
    except ScratchError:
        pass
