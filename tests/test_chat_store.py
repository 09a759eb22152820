"""The chat database: a real SQLite file, schema migration, round trip, Markdown export."""

from __future__ import annotations

import sqlite3

import pytest

from chatgpt_scratch.storage.chat_store import SCHEMA_VERSION, ChatStore, default_db_path
from chatgpt_scratch.errors import ScratchError


def test_default_path_is_in_the_app_data_folder(tmp_path):
    assert default_db_path() == tmp_path / "home" / "chat.db"  # conftest points CHATGPT_SCRATCH_HOME there


def test_round_trip_through_a_reopened_file(tmp_path):
    path = tmp_path / "chat.db"
    with ChatStore(path) as store:
        cid = store.create_conversation("Sky colour", checkpoint="checkpoints/instruct.safetensors")
        store.add_message(cid, "user", "What colour is the sky?\nBe brief.")
        store.add_message(cid, "assistant", "Blue.", stats={"new_tokens": 3, "tokens_per_s": 12.5})
    with ChatStore(path) as store:  # a new connection: the data really is on disk
        [conv] = store.list_conversations()
        assert (conv.id, conv.title, conv.checkpoint, conv.message_count) == (
            cid, "Sky colour", "checkpoints/instruct.safetensors", 2)
        messages = store.get_messages(cid)
        assert [(m.role, m.content, m.stats) for m in messages] == [
            ("user", "What colour is the sky?\nBe brief.", None),
            ("assistant", "Blue.", {"new_tokens": 3, "tokens_per_s": 12.5}),
        ]
        assert store.turns(cid) == [("What colour is the sky?\nBe brief.", "Blue.")]
        assert conv.updated >= conv.created


def test_migration_from_an_empty_version_0_file(tmp_path):
    path = tmp_path / "chat.db"
    sqlite3.connect(path).close()  # an existing, empty database: user_version 0, no tables
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    ChatStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "messages"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # CLI and TUI can share the file
    conn.close()


def test_a_database_from_a_newer_version_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ScratchError, match=r"newer chatgpt-scratch \(chat schema v99, this version knows v1\)"):
        ChatStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_file_that_is_not_a_database_gives_a_one_line_error(tmp_path):
    path = tmp_path / "chat.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ScratchError, match="is not a usable chat database .*move it aside"):
        ChatStore(path)
    assert path.read_bytes() == b"this is not sqlite at all" * 100  # nothing lost


def test_rename_and_delete(tmp_path):
    with ChatStore(tmp_path / "chat.db") as store:
        a = store.create_conversation("first")
        b = store.create_conversation("second")
        store.add_message(a, "user", "hello")
        store.add_message(b, "user", "other")
        store.rename(a, "  renamed  ")
        assert store.get_conversation(a).title == "renamed"
        store.delete(a)
        assert [c.id for c in store.list_conversations()] == [b]
        assert store.get_messages(a) == []  # its messages went with it (ON DELETE CASCADE)
        assert [m.content for m in store.get_messages(b)] == ["other"]
        with pytest.raises(ScratchError, match=f"no saved conversation with id {a}"):
            store.rename(a, "x")
        with pytest.raises(ScratchError, match=f"no saved conversation with id {a}"):
            store.add_message(a, "user", "lost?")
        with pytest.raises(ScratchError, match="unknown message role 'robot'"):
            store.add_message(b, "robot", "beep")


def test_most_recently_active_conversation_is_listed_first(tmp_path):
    with ChatStore(tmp_path / "chat.db") as store:
        old = store.create_conversation("old")
        new = store.create_conversation("new")
        store.add_message(old, "user", "bump")  # activity moves it to the top
        assert [c.title for c in store.list_conversations()] == ["old", "new"]
        assert new > old


def test_markdown_export(tmp_path):
    with ChatStore(tmp_path / "chat.db") as store:
        cid = store.create_conversation("Greetings", checkpoint="tiny.safetensors")
        store.add_message(cid, "user", "Say hi")
        store.add_message(cid, "assistant", "Hi!\n\n- twice", stats={"new_tokens": 5, "tokens_per_s": 20.0,
                                                                      "finish": "stopped"})
        created = store.get_conversation(cid).created
        assert store.export_markdown(cid) == (
            "# Greetings\n"
            "\n"
            "- Checkpoint: `tiny.safetensors`\n"
            f"- Started: {created}\n"
            "\n"
            "## You\n"
            "\n"
            "Say hi\n"
            "\n"
            "## Model\n"
            "\n"
            "Hi!\n"
            "\n"
            "- twice\n"
            "\n"
            "*5 tokens, 20.0 tokens/s, stopped early*\n"
        )


def test_two_connections_share_the_file(tmp_path):
    """The TUI and the CLI each hold a connection; what one writes the other reads at once."""
    path = tmp_path / "chat.db"
    with ChatStore(path) as cli, ChatStore(path) as tui:
        cid = cli.create_conversation("shared")
        cli.add_message(cid, "user", "from the CLI")
        assert [m.content for m in tui.get_messages(cid)] == ["from the CLI"]
        tui.add_message(cid, "assistant", "seen by the TUI")
        assert len(cli.get_messages(cid)) == 2
