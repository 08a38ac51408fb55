"""Every injector, on every arch and format: the checker reports exactly
that breach, at the right address, and nothing else at error severity."""

import pytest

from allocview.model.check import check
from allocview.model.findings import Severity
from allocview.model.inject import INJECTORS, inject, scenario
from allocview.model.layout import layout_for
from allocview.model.snapshot import decode

COMBOS = [(a, f) for a in ("x86_64", "i386", "s390x", "aarch64") for f in ("2020", "2021")]

# Where a breach cannot exist: 2020 has no max_order; one-area trees have no
# second area to misplace a node into or to overlap.
NOT_APPLICABLE = {
    ("max-order-low", "2020"), ("max-order-invalid", "2020"),
    ("list-node-wrong-area", "i386-2020"), ("list-node-wrong-area", "aarch64-2020"),
    ("list-node-wrong-area", "aarch64-2021"), ("area-overlap", "aarch64-2021"),
}


def applicable(code, arch, fmt):
    return (code, fmt) not in NOT_APPLICABLE and (code, f"{arch}-{fmt}") not in NOT_APPLICABLE


@pytest.mark.parametrize("arch,fmt", COMBOS)
def test_scenario_is_healthy(arch, fmt):
    al = scenario(layout_for(arch, fmt))
    found = check(decode(al.memory, al.layout, al.areas_addr, al.mask_addr))
    assert [f for f in found if f.severity is Severity.ERROR] == []


@pytest.mark.parametrize("code", sorted(INJECTORS))
@pytest.mark.parametrize("arch,fmt", COMBOS)
def test_injected_breach_is_reported_alone(code, arch, fmt):
    lay = layout_for(arch, fmt)
    al = scenario(lay)
    planted = inject(al, code)
    if not applicable(code, arch, fmt):
        assert planted is None
        return
    assert planted is not None, f"the scenario has no place for {code}"
    found = check(decode(al.memory, lay, al.areas_addr, al.mask_addr))
    hits = [f for f in found if f.code == code and f.address == planted.address]
    assert len(hits) == 1, [(f.code, f.address, f.message) for f in found]
    expected_severity = Severity.WARNING if code == "max-order-low" else Severity.ERROR
    assert hits[0].severity is expected_severity
    others = [f for f in found if f.severity is Severity.ERROR and f is not hits[0]]
    assert others == [], [(f.code, hex(f.address or 0), f.message) for f in others]
