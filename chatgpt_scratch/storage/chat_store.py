"""Saved conversations: one SQLite file (stdlib sqlite3) shared by the chat CLI and the TUI.

Lives at `app_data_dir()/chat.db` (`chatgpt-scratch chat --db` prints the path).
WAL journaling lets the CLI and the TUI have it open at the same time (readers
never block the writer); every write is one short transaction.

Schema versions are counted in `PRAGMA user_version`. `migrate()` applies the steps
in MIGRATIONS from the file's version up to SCHEMA_VERSION, each in a transaction, so
an old file is upgraded in place and a half-applied upgrade never sticks. A file
from a newer version of the app is refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.paths import app_data_dir

DB_NAME = "chat.db"
ROLES = ("user", "assistant", "system")

# Step N takes a database from version N-1 to N. Append; never edit a released step.
MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE conversations (
            id         INTEGER PRIMARY KEY,
            title      TEXT NOT NULL,
            checkpoint TEXT,
            created    TEXT NOT NULL,
            updated    TEXT NOT NULL
        );
        CREATE TABLE messages (
            id              INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content         TEXT NOT NULL,
            created         TEXT NOT NULL,
            stats           TEXT
        );
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


def default_db_path() -> Path:
    return app_data_dir() / DB_NAME


_last_stamp = datetime.min.replace(tzinfo=timezone.utc)
_stamp_lock = threading.Lock()


def _now() -> str:
    """UTC time in microseconds, strictly increasing within this process.

    Conversations are listed by their latest activity; two writes in the same clock tick
    must still come out in the order they happened.
    """
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(datetime.now(timezone.utc), _last_stamp + timedelta(microseconds=1))
        return _last_stamp.isoformat(timespec="microseconds")


@dataclass
class Conversation:
    id: int
    title: str
    checkpoint: str | None
    created: str
    updated: str
    message_count: int = 0


@dataclass
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    created: str
    stats: dict[str, Any] | None = None


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str | Path = DB_NAME) -> int:
    """Bring the database up to SCHEMA_VERSION; return the version it had before."""
    before = schema_version(conn)
    if before > SCHEMA_VERSION:
        raise ScratchError(
            f"{path} was written by a newer chatgpt-scratch (chat schema v{before}, this version knows "
            f"v{SCHEMA_VERSION}); upgrade chatgpt-scratch or point CHATGPT_SCRATCH_HOME elsewhere"
        )
    for version in range(before + 1, SCHEMA_VERSION + 1):
        # executescript would commit on its own; an explicit BEGIN keeps each step all-or-nothing.
        statements = [s.strip() for s in MIGRATIONS[version].split(";") if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before


class ChatStoreError(ScratchError):
    """A write or read of the chat database failed (locked, read-only, damaged, disk full). What is
    already stored is untouched: a failed write is rolled back by SQLite."""


def clean_text(text: str) -> str:
    """Text SQLite can store: lone surrogates (bytes that were not UTF-8, read with surrogateescape
    from a pipe) become U+FFFD, as `errors="replace"` would have made them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def store_error(e: sqlite3.Error, path: Path, doing: str) -> ChatStoreError:
    """One line that says what happened to the database and what to do."""
    text = str(e)
    if "locked" in text or "busy" in text:
        why = (f"the chat database {path} is busy (another chatgpt-scratch held it for over 10 s); close the "
               "other chat or app and try again")
    elif "readonly" in text or "read-only" in text:
        why = f"the chat database {path} is read-only; make it writable (chmod u+w) or chat with --no-save"
    elif "disk is full" in text or "full" in text:
        why = f"the disk that holds {path} is full; free some space"
    elif "malformed" in text or "not a database" in text or "corrupt" in text:
        why = (f"{path} is not a usable chat database ({text}); rescue what it holds with "
               f"`sqlite3 {path} .recover > chat.sql`, then move it aside and a new one will be made")
    else:
        why = f"the chat database {path} failed ({text})"
    return ChatStoreError(f"{doing} failed: {why}; saved conversations are left as they were")


class ChatStore:
    """Conversations and their messages. Safe to share between threads (one lock around the connection).

    Every failure of the database raises ChatStoreError (a ScratchError) that says what to do."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ScratchError(f"cannot create the folder for the chat database {self.path.parent}: {e.strerror}") from None
        self._lock = threading.RLock()
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
            # TUI writes from worker threads; the lock serialises access instead.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn, self.path)
        except sqlite3.Error as e:
            raise store_error(e, self.path, "opening the chat database") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._transaction(lambda conn: conn.execute(sql, params), "saving to the chat database")

    def _transaction(self, work, doing: str):
        """work(conn) inside BEGIN IMMEDIATE .. COMMIT; on any failure rolled back, sqlite errors as ChatStoreError."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise store_error(e, self.path, doing) from None
            try:
                result = work(self._conn)
                self._conn.execute("COMMIT")
                return result
            except BaseException as e:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction is already gone (SQLite rolled it back itself)
                if isinstance(e, sqlite3.Error):
                    raise store_error(e, self.path, doing) from None
                raise

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise store_error(e, self.path, "reading the chat database") from None

    # -- conversations ------------------------------------------------------------------------

    def create_conversation(self, title: str, checkpoint: str | None = None) -> int:
        now = _now()
        cursor = self._write("INSERT INTO conversations (title, checkpoint, created, updated) VALUES (?, ?, ?, ?)",
                             (clean_text(title), checkpoint and clean_text(checkpoint), now, now))
        return int(cursor.lastrowid)

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self._read(
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count "
            "FROM conversations c WHERE c.id = ?", (conversation_id,))
        if not rows:
            raise ScratchError(f"no saved conversation with id {conversation_id}; list them with /history or the TUI")
        return _conversation(rows[0])

    def list_conversations(self) -> list[Conversation]:
        """Newest activity first."""
        rows = self._read(
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count "
            "FROM conversations c ORDER BY c.updated DESC, c.id DESC")
        return [_conversation(r) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        if not title.strip():
            raise ScratchError("a conversation title cannot be empty")
        if self._write("UPDATE conversations SET title = ? WHERE id = ?", (clean_text(title.strip()), conversation_id)).rowcount == 0:
            raise ScratchError(f"no saved conversation with id {conversation_id}")

    def delete(self, conversation_id: int) -> None:
        """Delete the conversation and its messages."""
        if self._write("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
            raise ScratchError(f"no saved conversation with id {conversation_id}")

    # -- messages -----------------------------------------------------------------------------

    def add_message(self, conversation_id: int, role: str, content: str,
                    stats: dict[str, Any] | None = None) -> int:
        if role not in ROLES:
            raise ScratchError(f"unknown message role {role!r}; use one of {', '.join(ROLES)}")
        now = _now()
        content = clean_text(content)

        def work(conn: sqlite3.Connection) -> sqlite3.Cursor:
            updated = conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            if updated.rowcount == 0:
                raise ScratchError(f"no saved conversation with id {conversation_id}; it may have been deleted")
            return conn.execute(
                "INSERT INTO messages (conversation_id, role, content, created, stats) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, role, content, now, None if stats is None else json.dumps(stats)))

        cursor = self._transaction(work, "saving the message")
        return int(cursor.lastrowid)

    def delete_message(self, message_id: int) -> None:
        """Remove one message (a regenerated reply replaces the old one)."""
        self._write("DELETE FROM messages WHERE id = ?", (message_id,))

    def get_messages(self, conversation_id: int) -> list[Message]:
        """In the order they were written."""
        rows = self._read("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [Message(r["id"], r["conversation_id"], r["role"], r["content"], r["created"],
                        None if r["stats"] is None else json.loads(r["stats"])) for r in rows]

    def turns(self, conversation_id: int) -> list[tuple[str, str]]:
        """(user, assistant) pairs, for ChatSession.set_history when continuing a conversation."""
        pairs, pending = [], None
        for m in self.get_messages(conversation_id):
            if m.role == "user":
                pending = m.content
            elif m.role == "assistant" and pending is not None:
                pairs.append((pending, m.content))
                pending = None
        return pairs

    def export_markdown(self, conversation_id: int) -> str:
        return conversation_markdown(self.get_conversation(conversation_id), self.get_messages(conversation_id))


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(row["id"], row["title"], row["checkpoint"], row["created"], row["updated"],
                        row["message_count"])


ROLE_HEADINGS = {"user": "You", "assistant": "Model", "system": "System"}


def conversation_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """A readable Markdown transcript: title, where it came from, then each message under a heading."""
    lines = [f"# {conversation.title}", ""]
    if conversation.checkpoint:
        lines.append(f"- Checkpoint: `{conversation.checkpoint}`")
    lines += [f"- Started: {conversation.created}", ""]
    for m in messages:
        lines += [f"## {ROLE_HEADINGS.get(m.role, m.role)}", "", m.content, ""]
        if m.role == "assistant" and m.stats:
            note = f"*{m.stats.get('new_tokens', 0)} tokens, {m.stats.get('tokens_per_s', 0):.1f} tokens/s"
            if m.stats.get("finish") == "stopped":
                note += ", stopped early"
            lines += [note + "*", ""]
    return "\n".join(lines)
