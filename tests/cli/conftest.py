"""A fixture guest with every source at hand: gdb, QMP (its own socket,
free for allocview), and RAM in a shared file."""

import pytest


@pytest.fixture
def guest_with_sources(make_guest, tmp_path):
    def start(variant, checkpoint):
        sock = tmp_path / "av.sock"
        g = make_guest(variant, shared_memory=True,
                       qemu_args=["-qmp", f"unix:{sock},server=on,wait=off"])
        g.stop_at_checkpoint(checkpoint)
        return g, sock
    return start
