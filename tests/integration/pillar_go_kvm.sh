#!/bin/bash
# EVE pillar's QMP flow (go-qemu, as pkg/pillar/hypervisor/qmp.go drives it) against vmm-anchor running tests/guests/powerdown.bin under KVM.
# See tests/qmp-go/pillar_flow.sh. Exit 77 (skip) with the reason when a tool is missing.
exec bash "$(dirname "$0")/../qmp-go/pillar_flow.sh" anchor
