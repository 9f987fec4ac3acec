"""Network namespaces for tests: a few "hosts", each its own namespace with its own address, joined by a
bridge. Made and removed by the test (root only; `hosts()` skips the test, saying why, where that is not
permitted). The addresses are in 198.18.0.0/15, the range set aside for network tests (RFC 2544), and are
reached only from inside these namespaces."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@contextlib.contextmanager
def hosts(count: int):
    """Yields [(namespace, address)] for `count` namespaces on one bridge; removes them all after."""
    tag = f"{os.getpid() % 100000:05d}"
    bridge, subnet = f"tfb{tag}", f"198.18.{os.getpid() % 250}"
    probe = _ip("netns", "add", f"tfp{tag}probe", check=False)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here ({probe.stderr.strip() or 'no reason given'})")
    _ip("netns", "del", f"tfp{tag}probe", check=False)
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        out = []
        for i in range(count):
            ns, outer, inner, address = f"tfp{tag}h{i}", f"tfv{tag}{i}", f"tfi{tag}{i}", f"{subnet}.{i + 1}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", bridge)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            out.append((ns, address))
        yield out
    finally:
        for ns in made:
            _ip("netns", "del", ns, check=False)  # its end of the veth pair goes with it, and so the other end
        _ip("link", "del", bridge, check=False)
