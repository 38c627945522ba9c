"""An issue thread as the pipeline's issue text: title, body, then the people's comments in order. The bot's own
comments and the `/codemonkeys` commands are left out: they are about runs, not about the bug."""

from __future__ import annotations

from codemonkeys.github.client import IssueThread
from codemonkeys.github.events import COMMAND, is_command


def issue_text(thread: IssueThread, command: str = COMMAND) -> str:
    parts = [f"# {thread.title.strip()}", thread.body.strip() or "(no description)"]
    comments = [c for c in thread.comments if not c.author_is_bot and not is_command(c.body, command)]
    if comments:
        parts.append("## Comments")
        parts += [f"{c.author} wrote:\n\n{c.body.strip()}" for c in comments if c.body.strip()]
    return "\n\n".join(parts) + "\n"
