"""The exceptions allocview's client raises; each message is one line that
names the file, socket or port at fault."""

from allocview.model.errors import AllocviewError

__all__ = ["AllocviewError", "SourceError", "SymbolError", "first_line"]


class SourceError(AllocviewError):
    """Guest memory cannot be inspected at all: a dump that is not one, a
    socket that does not answer, a gdb that cannot attach."""


class SymbolError(AllocviewError):
    """The guest program's ELF cannot say where the allocator lives: not an
    ELF, no `areas` symbol, an arch other than the one asked for."""


def first_line(e: BaseException) -> str:
    """An exception as one line: its message's first line, else its type
    (libraries like pyelftools raise many kinds, some multi-line)."""
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__
