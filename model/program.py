"""A guest program as allocview needs it, whoever read it (pyelftools in
the client, gdb in gdb): its arch, the allocator's struct layout, the
addresses of its globals and entry points, and what locates it in guest
memory."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .layout import Layout

__all__ = ["Program"]


@dataclass(frozen=True)
class Program:
    """`symbols` maps names to addresses: "areas", "areas_mask", the other
    allocators' statics found and the entry points present, all moved by
    `load_offset`. `layout` comes from DWARF's `struct mem_area` when
    `has_dwarf`, else from the built-in table for (arch, format).
    relocatable: linked at 0 to relocate itself where it is loaded;
    link_base: its lowest loaded link address; samples: pieces of its code
    at link addresses (model.placement finds it by them)."""
    path: str
    arch: str
    layout: Layout
    symbols: dict[str, int] = field(default_factory=dict)
    has_dwarf: bool = False
    format_hint: str = "2021"
    relocatable: bool = False
    link_base: int = 0
    samples: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)
    load_offset: int = 0
    layout_source: str = ""

    @property
    def areas_addr(self) -> int:
        return self.symbols["areas"]

    @property
    def mask_addr(self) -> int:
        return self.symbols["areas_mask"]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] or "the program"

    def relocated(self, offset: int) -> "Program":
        """The same program loaded `offset` bytes from its link addresses."""
        delta = offset - self.load_offset
        if not delta:
            return self
        return replace(self, load_offset=offset,
                       symbols={k: v + delta for k, v in self.symbols.items()})
