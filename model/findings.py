"""What the checker (and the decoder, for what it cannot read) reports.

Codes are stable: tests, JSON reports, `--known` files and CI filters key on
them. Each code has a one-line explanation for `alloc check` to show.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Severity", "Finding", "CODES"]


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    slot: int | None         # area slot, None for global findings
    address: int | None      # guest address of the broken thing
    message: str             # what is wrong and what was expected
    evidence: tuple[tuple[str, object], ...] = field(default=())  # bytes, pointers
    # a run of like breaches at consecutive blocks, as one finding: how
    # many, and the address of the last (`address` is the first's)
    count: int = 1
    last: int | None = None

    def to_json(self) -> dict:
        doc: dict[str, object] = {"code": self.code, "severity": str(self.severity),
                                  "slot": self.slot,
               "address": self.address, "message": self.message}
        if self.count > 1:
            doc["count"] = self.count
            doc["last"] = self.last
        if self.evidence:
            doc["evidence"] = {k: (v.hex() if isinstance(v, (bytes, bytearray)) else v)
                               for k, v in self.evidence}
        return doc


# code: why it matters (shown under the findings of that code)
CODES: dict[str, str] = {
    "areas-unreadable": "the areas[] array or areas_mask could not be read: nothing else can be checked",
    "area-beyond-ram": "an area's pages lie in guest RAM (it was decoded only as far as RAM goes)",
    "format-uncertain": "the metadata bytes do not settle the byte encoding (2020 or 2021) beyond doubt",
    "metadata-unreadable": "an area's metadata bytes could not be read",
    "area-implausible": "an area's descriptor holds values no allocator would write",
    "area-bounds": "an area must have base < top",
    "metadata-misplaced": "the metadata bytes must lie in the pages just below base",
    "area-overlap": "two areas claim the same pages",
    "area-slot-range": "an area lies outside the pfn range its slot stands for",
    "mask-mismatch": "areas_mask must have exactly the bits of the initialised slots",
    "bad-byte": "a metadata byte has no valid status or an order >= NLISTS",
    "block-inconsistent": "all pages of a block carry the same byte",
    "block-misaligned": "a block of order k starts on a multiple of 2^k pages",
    "block-outside-area": "a block lies inside its area",
    "special-order": "special (reserved) pages are order 0",
    "list-broken-link": "in a circular list, the prev of each node's next is the node itself",
    "list-cycle": "a list walk must come back to its head, not loop among its nodes",
    "list-foreign-pointer": "list pointers point at list heads or at free pages of an area",
    "list-crossed": "a list's last node leads back to its own head, not another list's",
    "list-unreadable": "a list node inside an area could not be read",
    "list-too-long": "a list cannot hold more nodes than its area has pages",
    "list-node-not-free": "only free blocks are on free lists",
    "list-node-not-block": "a list node is the first page of a free block",
    "list-node-wrong-order": "list k holds free blocks of order k only",
    "list-node-wrong-area": "an area's lists hold that area's blocks only",
    "free-not-listed": "every free block is on the list of its order",
    "free-multiply-listed": "a free block is on exactly one list",
    "max-order-low": "2021: every list above max_order is empty (the design itself breaks this: free() of a block above a max_order that split lowered does not raise it)",
    "max-order-invalid": "2021: max_order is below NLISTS",
    "max-order-unreached": "max_order is an upper bound; split lowers it, alloc does not",
    "unmerged-buddies": "free buddies of the same order are merged on free",
}

