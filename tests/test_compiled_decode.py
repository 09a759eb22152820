"""compiled_decode: the one-token step compiled by torch.compile is the model's own function.

Each compile of the tiny model takes a few seconds on 2 cores (inductor caches the C++ code on disk),
so the tests share one compiled decoder per weight kind.
"""

from __future__ import annotations

import pytest
import torch

from chatgpt_scratch.config import PRESETS
from chatgpt_scratch.generation import SamplingConfig, generate
from chatgpt_scratch.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**changes) -> GPTModel:
    torch.manual_seed(0)
    cfg = PRESETS["test-tiny"].with_(**changes)
    model = GPTModel(cfg).eval()
    with torch.no_grad():  # larger weights than the init's: sharper logits, so greedy ties are rare
        for p in model.parameters():
            p.mul_(8.0)
    return model


@pytest.fixture(scope="module")
def compiled():
    """weights -> (model, decoder), compiled once for the module."""
    from chatgpt_scratch.compiled_decode import CompiledDecoder

    made = {}

    def get(weights: str):
        if weights not in made:
            model = _model()
            decoder = CompiledDecoder(model, weights)
            assert decoder.warm_up(), decoder.error
            made[weights] = model, decoder
        return made[weights]
    return get


def _prefilled(model: GPTModel, ids: list[int]):
    cache = model.new_cache(1)
    with torch.inference_mode():
        model.hidden_states(torch.tensor([ids]), cache)
    return cache


@pytest.mark.parametrize("weights", ["float32", "bfloat16", "int8"])
def test_a_compiled_step_gives_the_eager_model_s_logits_keys_and_values(compiled, weights):
    from chatgpt_scratch.compiled_decode import weights_as_multiplied

    model, decoder = compiled(weights)
    reference = weights_as_multiplied(model, weights)
    ids = [5, 17, 300, 4000, 9]
    ours, theirs = _prefilled(model, ids), _prefilled(model, ids)  # the prompt runs eagerly in float32 for both
    for token in (12, 7000, 31):  # three steps: each sees the keys and values the one before stored
        logits = decoder.step(token, ours)
        with torch.inference_mode():
            expected = reference.head(reference.hidden_states(torch.tensor([[token]]), theirs)[:, -1])
        assert logits.shape == expected.shape == (1, model.cfg.vocab_size)
        assert torch.allclose(logits, expected, atol=1e-3, rtol=1e-4), (logits - expected).abs().max()
        assert ours.length == theirs.length
        n = ours.length
        assert torch.allclose(ours.all_keys[:, :, :, :n], theirs.all_keys[:, :, :, :n], atol=1e-4)
        assert torch.allclose(ours.all_values[:, :, :, :n], theirs.all_values[:, :, :, :n], atol=1e-4)
    assert decoder.error is None


def test_generation_with_the_compiled_decoder_makes_the_eager_tokens_past_the_context(compiled):
    model, decoder = compiled("float32")
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=model.cfg.context_length + 30)  # the window slides
    prompt = [11, 2000, 345, 8]
    eager = list(generate(model, prompt, sampling, stop_ids=()))
    model.decoder = decoder
    try:
        fast = list(generate(model, prompt, sampling, stop_ids=()))
    finally:
        del model.decoder
    assert decoder.error is None
    assert fast == eager and len(fast) == sampling.max_new_tokens


def test_a_decoder_that_cannot_compile_says_why_once_and_decodes_eagerly():
    from chatgpt_scratch.compiled_decode import CompiledDecoder

    model = _model()
    decoder = CompiledDecoder(model, "float32")
    calls = []

    def broken(inputs):
        calls.append(inputs)
        raise RuntimeError("Compiler: cc not found\nmore detail that stays out of the message")
    decoder.run = broken
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=12)
    eager = list(generate(model, [3, 4, 5], sampling, stop_ids=()))
    model.decoder = decoder
    assert list(generate(model, [3, 4, 5], sampling, stop_ids=())) == eager
    assert decoder.error == "RuntimeError: Compiler: cc not found"
    assert len(calls) == 1  # tried once, then the eager step every time


def test_attach_decoder_serves_only_float32_cpu_language_models():
    from chatgpt_scratch.compiled_decode import attach_decoder
    from chatgpt_scratch.model import to_classifier

    assert attach_decoder(_model().to(torch.bfloat16)) is None
    assert attach_decoder(to_classifier(_model(), 2)) is None
    model = _model()
    decoder = attach_decoder(model, "int8")
    assert model.decoder is decoder and decoder.weights == "int8"
    with pytest.raises(ValueError, match="weights must be one of float32, bfloat16, int8"):
        attach_decoder(_model(), "int4")


def test_a_deep_copy_of_a_model_with_a_decoder_decodes_eagerly():
    import copy

    from chatgpt_scratch.compiled_decode import attach_decoder

    model = _model()
    attach_decoder(model, "bfloat16")
    twin = copy.deepcopy(model)  # the decoder holds the original's weights and a lock: the copy gets none
    assert twin.decoder is None and model.decoder is not None
    assert torch.equal(twin.tok_emb.weight, model.tok_emb.weight)


def test_a_one_prompt_batch_goes_through_the_decoder_with_the_batch_rules(compiled):
    from chatgpt_scratch.generation import generate_batch

    model, decoder = compiled("float32")
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=25)
    eager = generate_batch(model, [[40, 41, 42]], sampling, stop_strings=["\n\n"])
    model.decoder = decoder
    try:
        assert generate_batch(model, [[40, 41, 42]], sampling, stop_strings=["\n\n"]) == eager
    finally:
        del model.decoder


def test_evaluate_instruct_compile_writes_the_eager_responses(tmp_path, capsys):
    """`evaluate-instruct --compile` answers one prompt at a time through the compiled step: the same
    responses as the eager model one at a time."""
    import json

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.cli import main

    path = save_checkpoint(tmp_path / "inst.safetensors", _model(), kind="instruct", template="alpaca")
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": f"Say {word}.", "input": "", "output": word}
                                for word in ("one two three four five six seven eight nine ten eleven "
                                             "twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()]))
    common = ["evaluate-instruct", "--checkpoint", str(path), "--data", str(data), "--max-new-tokens", "12"]
    assert main([*common, "--batch-size", "1", "--responses", str(tmp_path / "eager.json")]) == 0
    assert main([*common, "--compile", "--responses", str(tmp_path / "compiled.json")]) == 0
    assert "compiling the decode step" in capsys.readouterr().err
    eager, compiled = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("eager", "compiled"))
    assert len(eager) == 2 and compiled == eager


def test_the_step_is_compiled_ahead_of_time_into_a_package_without_weights(compiled):
    """AOTInductor: one small package per shape in inductor's cache folder (the weights stay in memory: a
    float32 step of a 12 MB model packs to well under that), loaded by a second decoder without compiling."""
    from chatgpt_scratch.compiled_decode import CompiledDecoder, aot_package_path

    model, decoder = compiled("float32")
    if decoder.how != "ahead of time":
        pytest.skip(f"AOTInductor is not available here ({decoder.aot_error})")
    path = aot_package_path(decoder.module)
    assert path.is_file() and path.stat().st_size < 0.5 * model.tok_emb.weight.numel() * 4
    made = path.stat().st_mtime_ns
    twin = CompiledDecoder(_model(), "float32")  # the same shape: the package is loaded, not made again
    assert twin.warm_up() and twin.how == "ahead of time"
    assert path.stat().st_mtime_ns == made


def test_a_damaged_package_is_made_again(compiled, tmp_path, monkeypatch):
    """A package cut short (a full disk, a crash while copying) is replaced, not a reason to stop."""
    from chatgpt_scratch import compiled_decode
    from chatgpt_scratch.compiled_decode import CompiledDecoder, aot_package_path

    _, decoder = compiled("int8")
    if decoder.how != "ahead of time":
        pytest.skip(f"AOTInductor is not available here ({decoder.aot_error})")
    real = aot_package_path(decoder.module)
    damaged = tmp_path / real.name
    damaged.write_bytes(real.read_bytes()[:1000])
    monkeypatch.setattr(compiled_decode, "aot_package_path", lambda module: damaged)
    twin = CompiledDecoder(_model(), "int8")
    assert twin.warm_up() and twin.how == "ahead of time" and twin.aot_error is None
    assert damaged.stat().st_size > 100_000  # made again, whole


def test_a_chat_defers_an_uncompiled_step_and_takes_it_back_after_a_compile_in_another_process(tmp_path, monkeypatch):
    """What the app does on a first run: the step has no package yet, so replies decode eagerly at once;
    `python -m chatgpt_scratch.compiled_decode CKPT` compiles the package in another process; the session then
    loads it (without compiling again), takes it back only between replies, and its replies equal the eager ones."""
    import subprocess

    from chatgpt_scratch.chat import ChatSession
    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.compiled_decode import aot_package_path, compile_command

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # nothing compiled yet (the child too)
    path = save_checkpoint(tmp_path / "tiny.safetensors", _model(), kind="base")
    session = ChatSession.from_checkpoint(path, device="cpu", sampling=SamplingConfig(max_new_tokens=12), compile=True)
    assert session.defer_compile() and session.compile_deferred
    assert getattr(session.model, "decoder", None) is None
    eager = "".join(session.send("Every effort moves"))
    assert session.stats.decoder == "" and session.stats.new_tokens == 12

    done = subprocess.run(compile_command(path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("compiled (")
    decoder = session._set_aside
    assert decoder.package_cached or "torch.compile" in done.stdout
    made = aot_package_path(decoder.module).stat().st_mtime_ns if decoder.package_cached else None

    reply = session.send("Every effort moves")  # a reply under way: the step waits for its end
    next(reply)
    assert session.load_compiled() is None  # loading may run beside a reply (another thread, in the app)
    assert not session.resume_compiled() and session.compile_deferred
    for _ in reply:
        pass
    assert session.resume_compiled() and not session.compile_deferred and session.model.decoder is decoder
    if made is not None:
        assert decoder.how == "ahead of time" and aot_package_path(decoder.module).stat().st_mtime_ns == made

    session.clear()
    assert "".join(session.send("Every effort moves")) == eager
    assert session.stats.decoder == "compiled, float32 weights"
    again = ChatSession.from_checkpoint(path, device="cpu", compile=True)  # the package is there now: no deferring
    assert not again.defer_compile() or "torch.compile" in done.stdout


def test_the_compile_command_refuses_what_it_cannot_serve_in_one_line(tmp_path, capsys):
    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.compiled_decode import main

    assert main([str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    torch.manual_seed(0)
    classifier = save_checkpoint(tmp_path / "spam.safetensors", GPTModel(PRESETS["test-tiny"].with_(n_classes=2)),
                                 kind="classifier", labels=["ham", "spam"])
    assert main([str(classifier)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
