"""The terminal: `gptsbot chat`, one more platform through the same core and storage.

Answers stream to stdout as they arrive; the bot's own lines (command answers, notices) go to
stderr, so a piped run's stdout holds only the answers. One line of stdin is one turn or one
`/command` of the core's registry; EOF or /quit ends the chat, and so does Ctrl-C (or SIGTERM) at
the prompt. During an answer, Ctrl-C stops the answer: what arrived is shown and stored.
"""

from bots.console.chat import PLATFORM

__all__ = ["PLATFORM"]
