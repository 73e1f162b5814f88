#!/bin/bash
# EVE pillar's crash path (go-qemu, as pkg/pillar/hypervisor/qmp_crash.go drives it: GUEST_PANICKED,
# dump-guest-memory, query-dump) against vmm-anchor under KVM,
# running tests/guests/panic.bin. See tests/qmp-go/pillar_flow.sh. Exit 77 (skip) with the reason.
exec bash "$(dirname "$0")/../qmp-go/pillar_flow.sh" anchor panic
