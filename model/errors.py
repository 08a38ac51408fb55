"""The exceptions model/ raises. Everything a user can cause maps to one of these."""

__all__ = ["AllocviewError", "MemoryReadError", "LayoutError", "ModelError"]


class AllocviewError(Exception):
    """Base of every error allocview reports as one line."""


class MemoryReadError(AllocviewError):
    """A range of guest memory could not be read."""

    def __init__(self, addr: int, size: int, reason: str = "unreadable"):
        self.addr = addr
        self.size = size
        self.reason = reason
        super().__init__(f"cannot read {size} bytes at {addr:#x}: {reason}")


class LayoutError(AllocviewError):
    """No layout fits what was asked for (unknown arch, format, bad offsets)."""


class ModelError(AllocviewError):
    """The reference allocator was asked for something the design forbids
    (a caller bug in the guest's terms: freeing a non-allocated page, ...)."""
