"""Flag and slot-number values of the allocator API (lib/alloc_page.h)."""

__all__ = ["AREA_ANY_NUMBER", "AREA_MASK", "FLAG_DONTZERO", "FLAG_FRESH", "AREA_ANY_2020"]

AREA_ANY_NUMBER = 0xFF     # page_alloc_init_area: cut the range at slot boundaries
AREA_MASK = 0xFFFF         # low bits of the flags select slots
FLAG_DONTZERO = 0x10000    # skip zeroing the returned block
FLAG_FRESH = 0x20000       # 2021: a block never touched since boot
AREA_ANY_2020 = -1         # 2020: the `areas` argument that means every slot
