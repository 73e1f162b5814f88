#!/bin/bash
# The controller scenario of issue 5 (tests/integration/vmmd_controller.sh) with real
# vmm-anchors under KVM, and vmctl console under a pty. Skips (77) where /dev/kvm is missing.
VMM_CONTROLLER_ANCHOR=real exec bash "$(dirname "$0")/vmmd_controller.sh"
