"""Issue 13: no user input and no environment fault ends in a traceback or loses work.

One regression test (at least) per numbered defect of the issue; each name says the guarantee.
Fault injection across every writing command is in test_fault_injection.py, the property test of
the checkpoint reader in test_checkpoint_reader_property.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatgpt_scratch.cli import main
from chatgpt_scratch.training.events import read_events

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--preset", "test-tiny", "--context", "16", "--batch-size", "2", "--device", "cpu", "--eval-batches", "2",
        "--seed", "3"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 80)
    return path


# --- 2. Ctrl-C through a pipe --------------------------------------------------------------------


def test_ctrl_c_through_a_pipe_whose_reader_died_still_saves(tmp_path, corpus):
    """`pretrain ... 2>&1 | tee log`, Ctrl-C: tee dies first, so every write to stderr fails with
    BrokenPipeError. The checkpoint and the resumable state are saved all the same."""
    out = tmp_path / "ck" / "piped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatgpt_scratch", "pretrain", "--data", str(corpus), *TINY, "--max-steps", "100000",
         "--eval-every", "0", "--out", str(out)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    deadline = time.time() + 120
    files = []
    while time.time() < deadline and proc.poll() is None:
        files = list(runs.glob("piped-*/events.jsonl"))
        if files and '"type": "step"' in files[0].read_text():
            break
        time.sleep(0.05)
    proc.stdout.close()  # tee is gone
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    events = read_events(files[0].parent)
    assert events[-1]["type"] == "stopped", events[-1]
    assert not [e for e in events if e["type"] == "error"]
    assert out.with_suffix(".safetensors").is_file()
    assert (files[0].parent / "state.safetensors").is_file()


def _events(total: int):
    yield {"type": "start", "task": "pretrain", "total_steps": total, "step": 0, "params": 10, "device": "cpu",
           "run_dir": "r"}
    for step in range(1, total + 1):
        yield {"type": "step", "step": step, "train_loss": 5.0 - step / 10, "tokens_per_s": 100.0,
               "elapsed_s": float(step)}
        if step % 2 == 0:
            yield {"type": "eval", "step": step, "tokens_seen": step * 32, "elapsed_s": float(step),
                   "val_loss": 9.0 - step}


def test_piped_stderr_gets_a_plain_progress_line_now_and_then(capsys):
    from chatgpt_scratch.cli.train_common import ProgressBar

    bar = ProgressBar()
    assert not bar.live  # capsys: not a terminal
    bar.plain_every_s = 0.0
    for event in _events(4):
        bar(event)
    err = capsys.readouterr().err
    assert "step 1/4 (25%): loss 4.900, 100 tok/s" in err
    assert "step 3/4 (75%): loss 4.700, val 7.000, 100 tok/s" in err


def test_progress_output_errors_never_reach_the_trainer(monkeypatch):
    from chatgpt_scratch.cli.train_common import ProgressBar, say

    class Broken(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Broken())
    bar = ProgressBar()
    for event in _events(4):
        bar(event)  # no exception
    assert bar.dead
    say("stopping")  # no exception


def test_the_bars_final_val_is_the_latest_eval(capsys):
    from chatgpt_scratch.cli.train_common import ProgressBar

    bar = ProgressBar()
    bar.live = True  # draw the tqdm bar (into the captured stderr)
    events = list(_events(4))
    for event in events[:-1]:  # up to the last eval, not included
        bar(event)
    bar(events[-1])  # the final eval: val 5.0
    assert "val=5.000" in bar.bar.postfix


# --- 5. disk full during a save ------------------------------------------------------------------


def _disk_full_in(folder: Path, monkeypatch):
    """safetensors' writer raising what it raises on a full disk, for files under `folder` only."""
    import safetensors.torch

    from chatgpt_scratch.storage import checkpoint_format

    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if Path(filename).parent == folder:
            Path(filename).write_bytes(b"partial")
            raise safetensors.SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                              "message: \"No space left on device\" })")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_format, "save_file", save_file)


def test_a_full_disk_during_a_save_is_one_error_line_and_the_state_is_still_saved(tmp_path, corpus, capsys,
                                                                                     monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "full.safetensors").write_bytes(b"the previous checkpoint")
    _disk_full_in(ck, monkeypatch)
    rc = main(["pretrain", "--data", str(corpus), *TINY, "--max-steps", "2", "--eval-every", "0",
               "--out", str(ck / "full")])
    err = capsys.readouterr().err
    assert rc == 1
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert f"no space left in {ck}" in line and "needs about" in line and "state.safetensors" in line
    assert "Traceback" not in err
    assert (ck / "full.safetensors").read_bytes() == b"the previous checkpoint"  # untouched
    assert not [p for p in ck.iterdir() if p.name.endswith(".tmp")]
    run_dir = next(Path(os.environ["CHATGPT_SCRATCH_RUNS"]).glob("full-*"))
    assert (run_dir / "state.safetensors").is_file()  # the runs folder had room: resumable
    assert read_events(run_dir)[-1]["type"] == "error"


# --- 3. hand-edited checkpoint headers -----------------------------------------------------------


def _save_tiny(path: Path, kind: str = "instruct") -> Path:
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(0)
    save_checkpoint(path, GPTModel(PRESETS["test-tiny"]), kind)
    return path


def rewrite_header(path: Path, edit) -> None:
    """Hand-edit a safetensors header as a user with a hex editor would: edit(header_dict) in place."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])


def _config_edit(**change):
    def edit(h):
        cfg = json.loads(h["__metadata__"]["config"])
        cfg.update(change)
        h["__metadata__"]["config"] = json.dumps(cfg)
    return edit


HAND_EDITS = {
    "config is 5": lambda h: h["__metadata__"].update(config="5"),
    "__metadata__ is a list": lambda h: h.update(__metadata__=["format", "kind"]),
    "drop_rate is x": _config_edit(drop_rate="x"),
    "n_layers is true": _config_edit(n_layers=True),
    "config is a list": lambda h: h["__metadata__"].update(config="[1, 2]"),
    "shape holds text": lambda h: h["tok_emb.weight"].update(shape=["a", 2]),
    "kind is a number": lambda h: h["__metadata__"].update(kind="7", json_keys='["kind"]'),
    "json_keys is 5": lambda h: h["__metadata__"].update(json_keys="5"),
}


@pytest.mark.parametrize("edit", HAND_EDITS, ids=list(HAND_EDITS))
def test_a_hand_edited_header_is_one_broken_row_and_never_hides_the_good_ones(tmp_path, capsys, edit):
    from chatgpt_scratch.checkpoints import checkpoint_info, list_checkpoints

    folder = tmp_path / "ck"
    _save_tiny(folder / "good.safetensors")
    bad = _save_tiny(folder / "bad.safetensors")
    rewrite_header(bad, HAND_EDITS[edit])
    infos = {i.name: i for i in list_checkpoints(folder)}
    assert infos["good"].ok and not infos["bad"].ok and infos["bad"].error
    assert not checkpoint_info(bad).ok

    assert main(["checkpoints", "list", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "BROKEN" in out and "good" in out and "broken: bad:" in out
    for command in (["checkpoints", "info", str(bad)], ["generate", "--checkpoint", str(bad), "Hi"],
                    ["xray", "--checkpoint", str(bad), "Hi"],
                    ["chat", "--checkpoint", str(bad), "--no-save"]):
        rc = main(command)
        err = capsys.readouterr().err
        assert rc == 1, command
        assert [line for line in err.splitlines() if line.startswith("error:")] == err.strip().splitlines()[-1:]
        assert "Traceback" not in err and str(bad) in err, (command, err)


def test_the_tui_model_lists_keep_the_good_models_beside_a_broken_header(tmp_path, monkeypatch):
    from chatgpt_scratch.checkpoints import list_checkpoints

    folder = Path(os.environ["CHATGPT_SCRATCH_CHECKPOINTS"])
    _save_tiny(folder / "good.safetensors")
    rewrite_header(_save_tiny(folder / "bad.safetensors"), HAND_EDITS["config is 5"])
    infos = list_checkpoints()
    assert [i.name for i in infos if i.ok] == ["good"] and [i.name for i in infos if not i.ok] == ["bad"]


# --- 10. control characters from files and users --------------------------------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


def test_escape_sequences_in_a_header_are_shown_escaped_by_checkpoints_list_and_info(tmp_path, capsys):
    from chatgpt_scratch.system.terminal_text import printable

    folder = tmp_path / "ck"
    path = _save_tiny(folder / "m.safetensors")
    rewrite_header(path, lambda h: h["__metadata__"].update(parent=f"evil{ESCAPES}", note=f"x{ESCAPES}\ny"))
    assert main(["checkpoints", "list", str(folder)]) == 0
    assert main(["checkpoints", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "note: x\\e]0;pwned\\x07\\e[2J\\ny" in out
    assert printable("a\x9b31mb\u202e") == "a\\x9b31mb\\u202e"
    assert printable("two\nlines\x1b", keep_lines=True) == "two\nlines\\e"


# --- 4. chat store faults; issue 14 #9: piped slash commands ---------------------------------------


@pytest.fixture
def chat_ckpt(tmp_path) -> Path:
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import GPTConfig
    from chatgpt_scratch.model import GPTModel

    torch.manual_seed(0)
    cfg = GPTConfig(context_length=128, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return save_checkpoint(tmp_path / "tiny.safetensors", GPTModel(cfg), kind="base")


def _chat(ckpt: Path, stdin: bytes, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatgpt_scratch", "chat", "--checkpoint", str(ckpt),
                           "--max-new-tokens", "4", "--temperature", "0", "--device", "cpu", *extra],
                          input=stdin, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"}, timeout=120)


def _stored(db: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()


def test_non_utf8_piped_input_is_answered_noted_and_saved(chat_ckpt):
    from chatgpt_scratch.storage.chat_store import default_db_path

    result = _chat(chat_ckpt, b"caf\xe9 win\nsecond\n")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 2  # "second" is answered too
    assert b"note: line 1 is not UTF-8" in result.stderr and b"Traceback" not in result.stderr
    users = [c for r, c in _stored(default_db_path()) if r == "user"]
    assert users == ["caf\ufffd win", "second"]


def test_piped_slash_commands_are_commands_never_prompts(chat_ckpt):
    from chatgpt_scratch.storage.chat_store import default_db_path

    result = _chat(chat_ckpt, b"/temperature 1.0\n/settings\nhello\n/bogus\n//not a command\n/quit\nafter quit\n")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert len(out.splitlines()) == 3  # hello, the /bogus error line, //not a command
    assert "temperature = 1.0" in err and "unknown command /bogus" in err
    users = [c for r, c in _stored(default_db_path()) if r == "user"]
    assert users == ["hello", "/not a command"]  # no command stored; nothing after /quit
    assert result.returncode == 1  # the bad command


def _fill(db: Path) -> bytes:
    from chatgpt_scratch.storage.chat_store import ChatStore

    with ChatStore(db) as store:
        cid = store.create_conversation("kept")
        store.add_message(cid, "user", "old question")
        store.add_message(cid, "assistant", "old answer")
    return db.read_bytes()


class FakeSession:
    """The smallest ChatSession stand-in: one canned reply per message."""

    checkpoint, stats = "m", None

    def __init__(self):
        self.turns = []

    def send(self, text):
        from types import SimpleNamespace

        yield "a reply"
        self.turns.append(SimpleNamespace(user=text, assistant="a reply", stats=None))


def test_a_read_only_chat_database_still_answers_and_keeps_its_history(tmp_path, monkeypatch):
    """Read-only as SQLite sees it (mode=ro: the tests may run as root, for whom chmod 444 changes nothing)."""
    import sqlite3

    from chatgpt_scratch.storage import chat_store
    from chatgpt_scratch.cli.chat import ChatController, run_piped

    db = tmp_path / "chat.db"
    _fill(db)
    before = db.read_bytes()
    real = sqlite3.connect
    monkeypatch.setattr(chat_store.sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))
    store = chat_store.ChatStore(db)
    out, err = io.StringIO(), io.StringIO()
    rc = run_piped(ChatController(FakeSession(), store), io.StringIO("first\nsecond\n"), out, err, jsonl=False)
    store.close()
    assert out.getvalue() == "a reply\na reply\n"
    errors = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read-only" in errors[0] and "--no-save" in errors[0], err.getvalue()
    assert rc == 1
    assert db.read_bytes() == before


def test_a_damaged_chat_database_still_answers_and_is_left_as_it_was(chat_ckpt):
    from chatgpt_scratch.storage.chat_store import default_db_path

    db = default_db_path()
    db.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(_fill(db))
    data[100:4096] = b"\xff" * (4096 - 100)  # damaged pages
    db.write_bytes(bytes(data))
    result = _chat(chat_ckpt, b"first\nsecond\n")
    err = result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 2 and "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "is not a usable chat database" in line and ".recover" in line
    assert db.read_bytes() == bytes(data)  # never "repaired" away


def test_a_lock_held_too_long_reports_after_the_reply_and_loses_nothing(tmp_path, monkeypatch):
    """A lock held > 10 s: the store's busy timeout ends with `database is locked`."""
    import sqlite3

    from chatgpt_scratch.storage.chat_store import ChatStore, ChatStoreError
    from chatgpt_scratch.cli.chat import ChatController, run_piped

    db = tmp_path / "chat.db"
    _fill(db)
    before = _stored(db)
    store = ChatStore(db)
    store._conn.execute("PRAGMA busy_timeout = 100")  # the test does not wait 10 s
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    controller = ChatController(FakeSession(), store)
    out, err = io.StringIO(), io.StringIO()
    rc = run_piped(controller, io.StringIO("one\ntwo\n"), out, err, jsonl=True)
    holder.execute("ROLLBACK")
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("reply") for r in replies] == ["a reply", "a reply"]
    assert rc == 1 and err.getvalue().count("error:") == 1 and "busy" in err.getvalue()
    assert "the rest of this conversation is not saved" in err.getvalue()
    assert _stored(db) == before
    assert issubclass(ChatStoreError, Exception)
    store.close()


# --- 6. classify arguments; 11: latin-1 input; 10: the classify table ----------------------------


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> Path:
    import torch

    from chatgpt_scratch.checkpoints import save_checkpoint
    from chatgpt_scratch.config import GPTConfig
    from chatgpt_scratch.model import GPTModel, to_classifier

    torch.manual_seed(0)
    model = to_classifier(GPTModel(GPTConfig(context_length=64, emb_dim=32, n_heads=4, n_layers=2)), 2)
    return save_checkpoint(tmp_path_factory.mktemp("cls") / "spam.safetensors", model, kind="classifier",
                           labels=["ham", "spam"])


def test_classify_a_message_longer_than_a_file_name_may_be(classifier_ckpt, capsys):
    message = "win " * 100  # 400 bytes: Path.is_file() raised OSError ENAMETOOLONG
    assert main(["classify", "--checkpoint", str(classifier_ckpt), message]) == 0
    assert capsys.readouterr().out.split()[0] in ("ham", "spam")
    assert main(["classify", "--checkpoint", str(classifier_ckpt), "x" * 300]) == 0  # one long word, no path


@pytest.mark.parametrize("arg", ["mesages.txt", "data/sms.csv", "./inbox.jsonl"])
def test_classify_a_misspelled_file_name_is_an_error_not_a_message(classifier_ckpt, capsys, arg):
    assert main(["classify", "--checkpoint", str(classifier_ckpt), arg]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: no such file: {arg}") and len(err.splitlines()) == 1
    # A message with a slash in it is still a message.
    assert main(["classify", "--checkpoint", str(classifier_ckpt), "Call 0800/123 now"]) == 0


def test_latin1_lines_are_counted_and_control_characters_escaped_in_the_table(classifier_ckpt, tmp_path, capsys):
    messages = tmp_path / "inbox.txt"
    messages.write_bytes(b"caf\xe9 prize\nhello\n\xa3100 cash\nrename \x1b]0;pwned\x07 now\x1b[2J\n")
    assert main(["classify", "--checkpoint", str(classifier_ckpt), str(messages)]) == 0
    captured = capsys.readouterr()
    assert f"note: 2 lines of {messages} (1, 3) were not UTF-8" in captured.err
    assert "\x1b" not in captured.out and "\x07" not in captured.out
    assert "rename \\e]0;pwned\\x07 now\\e[2J" in captured.out
    assert "caf\ufffd prize" in captured.out


def test_finetune_spam_says_how_many_lines_were_not_utf8(tmp_path, capsys):
    data = tmp_path / "sms.tsv"
    rows = [b"ham\tsee you at caf\xe9 later", b"spam\tWIN \xa3100 now"] + \
        [f"{'ham' if i % 2 else 'spam'}\tmessage number {i}".encode() for i in range(40)]
    data.write_bytes(b"\n".join(rows) + b"\n")
    main(["finetune-spam", "--data", str(data), "--preset", "test-tiny", "--max-steps", "1", "--device", "cpu",
          "--out", str(tmp_path / "s")])
    assert f"note: 2 lines of {data} (1, 2) were not UTF-8" in capsys.readouterr().err


# --- 7. --resume with a damaged run.json; 8. --out edge cases ------------------------------------


@pytest.mark.parametrize("content", [b'{"command": "pretrain", "ar', b'{"command": "pretrain"}', b"[1, 2]",
                                     b'{"command": "pretrain", "args": 5}', b"\xff\xfe"])
def test_resume_with_a_damaged_run_json_is_one_clear_error(tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_bytes(content)
    assert main(["pretrain", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume {run}: run.json") and len(err.splitlines()) == 1


def test_run_json_is_written_atomically(tmp_path, corpus, monkeypatch):
    from chatgpt_scratch.storage import fileio

    written = []
    real = fileio.write_text_atomic
    monkeypatch.setattr(fileio, "write_text_atomic", lambda path, text: written.append(Path(path).name) or real(path, text))
    assert main(["pretrain", "--data", str(corpus), *TINY, "--max-steps", "1", "--out", str(tmp_path / "a")]) == 0
    assert "run.json" in written


@pytest.mark.parametrize("out, message", [(".", "not a folder"), ("..", "not a folder"), ("ck/", "not a folder"),
                                          ("x" * 230, "use at most 200"), ("y" * 260, "use at most 200")])
def test_out_names_are_checked_before_any_work(tmp_path, corpus, capsys, out, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = Path(os.environ["CHATGPT_SCRATCH_RUNS"])
    assert main(["pretrain", "--data", str(corpus), *TINY, "--max-steps", "1", "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and message in err and len(err.splitlines()) == 1, err
    assert not runs.exists() or not any(runs.iterdir())  # no run folder was made


# --- 9. metrics that lie; 11: file modes --------------------------------------------------------


def test_a_response_loss_with_no_answer_token_is_not_measurable_not_zero():
    import math

    import torch

    from chatgpt_scratch.config import PRESETS
    from chatgpt_scratch.usecases.evaluate_instruct import InstructEvaluation
    from chatgpt_scratch.model import GPTModel
    from chatgpt_scratch.training.instruct_task import IGNORE_INDEX, token_mean_loss

    model = GPTModel(PRESETS["test-tiny"])
    inputs = torch.zeros(2, 8, dtype=torch.long)
    targets = torch.full((2, 8), IGNORE_INDEX)  # every answer token was cut off by the context
    loss = token_mean_loss(model, [(inputs, targets)])
    assert math.isnan(loss)
    ev = InstructEvaluation(n_test=2, val_loss=None, val_ppl=None, test_response_loss=loss,
                            test_response_ppl=math.exp(loss), rouge_l=0.0)
    assert "test responses: loss not measurable" in ev.summary_lines()[0]
    assert ev.to_dict()["test_response_loss"] is None and json.dumps(ev.to_dict(), allow_nan=False)


def test_responses_and_eval_json_get_the_mode_of_any_new_file(tmp_path):
    """Not mkstemp's 0600: the same mode as a checkpoint or any file the user's umask makes."""
    from chatgpt_scratch.usecases.evaluate_instruct import write_json_atomic

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    checkpoint = _save_tiny(tmp_path / "m.safetensors")
    for name in ("m.responses.json", "m.eval.json"):
        mode = write_json_atomic(tmp_path / name, {"a": 1}).stat().st_mode & 0o777
        assert mode == plain.stat().st_mode & 0o777 == checkpoint.stat().st_mode & 0o777


# --- 11. names in rename/duplicate ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad\x00name", "x" * 300, "tab\there", "esc\x1b[2J"])
def test_rename_and_duplicate_refuse_unusable_names_with_a_scratch_error(tmp_path, name):
    from chatgpt_scratch.checkpoints import duplicate_checkpoint, rename_checkpoint
    from chatgpt_scratch.errors import ScratchError

    path = _save_tiny(tmp_path / "m.safetensors")
    before = path.read_bytes()
    for operation in (rename_checkpoint, duplicate_checkpoint):
        with pytest.raises(ScratchError):
            operation(path, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"] and path.read_bytes() == before


def test_generate_with_a_prompt_longer_than_the_context_is_one_error_line(tmp_path, capsys):
    path = _save_tiny(tmp_path / "m.safetensors", kind="base")  # test-tiny: a short context
    from chatgpt_scratch.config import PRESETS

    context = PRESETS["test-tiny"].context_length
    prompt = "word " * (context + 10)
    for extra in ([], ["--quantize", "int8", "--device", "cpu"]):
        assert main(["generate", "--checkpoint", str(path), *extra, prompt]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: the prompt is") and f"{context}-token context" in err
    assert main(["generate", "--checkpoint", str(path), "--max-new-tokens", "3", "word " * (context - 2)]) == 0
