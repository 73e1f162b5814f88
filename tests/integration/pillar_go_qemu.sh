#!/bin/bash
# EVE pillar's QMP flow (go-qemu, as pkg/pillar/hypervisor/qmp.go drives it) against qemu-system-x86_64 -S -no-shutdown running tests/guests/powerdown.bin, the peer the anchor must match.
# See tests/qmp-go/pillar_flow.sh. Exit 77 (skip) with the reason when a tool is missing.
exec bash "$(dirname "$0")/../qmp-go/pillar_flow.sh" qemu
