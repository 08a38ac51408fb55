"""allocview-qemu under a runner that probes and judges as each arch's
kvm-unit-tests run script does: the same verdicts with and without it on
s390x, aarch64, ppc64 and riscv64, a checked report for a test that ends,
nothing left running."""

from __future__ import annotations

import pytest

from harness import NEW_ARCHES, Variant

from .helpers import guest_args

# Each arch's probes (its run script's, as KUT_PROBES "args:what it must
# list"; ; separated) and where its runner takes the test's status from:
# the console's EXIT: STATUS= line (run_test_status), or QEMU's own.
RUNNERS = {
    "s390x": ("", "line"),
    "aarch64": ("-machine ?:ARM Virtual Machine;-machine virt -device ?:virtio-serial", "qemu"),
    "ppc64": ("-machine ?:pseries", "line"),
    "riscv64": ("-machine ?:virt", "line"),
}
ENDINGS = {"pass": ("seed=1 exit=1", 60), "abort": ("seed=1 exit=1 mode=abort", 60),
           "timeout": ("seed=1 exit=1 mode=hang", 5),
           "never initialised": ("exit=1 mode=noalloc", 60)}


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_verdicts_are_the_same_on_every_arch(work, arch):
    v = Variant.parse(f"{arch}-2021")
    probes, status = RUNNERS[arch]
    runner = {"KUT_PROBES": probes or "--help:QEMU", "KUT_STATUS": status,
              "KUT_ARCH": v.info.boot.runner_arch,
              "ALLOCVIEW_GDB": work.gdb_shim("gdb-multiarch", binary=v.gdb)}
    for ending, (append, timeout) in ENDINGS.items():
        args = guest_args(v, append, work.marker)
        plain = work.run(v.qemu, args, timeout=timeout, env=work.env(**runner))
        assert plain.verdict, (ending, "the runner's probes failed on plain QEMU")
        wrapped = work.run(work.wrapper, args, timeout=timeout,
                           env=work.env(ALLOCVIEW_TEST_NAME=f"{arch}-{ending}", **runner))
        assert wrapped.verdict == plain.verdict, (ending, plain.verdict, wrapped.verdict)
        assert wrapped.stdout == plain.stdout, ending
        doc = work.report(f"{arch}-{ending}")
        if ending == "pass":
            assert plain.verdict == "PASS"
            assert doc["test"]["checked"] and doc["test"]["ended"] == "exit(0)", (doc["test"]["ended"], doc["test"].get("notes"))
            assert doc["arch"] == arch and doc["program"]["found"] is True
        if ending == "abort":
            assert doc["test"]["ended"] == "abort", doc["test"]
