// InterruptLine: how a device raises an interrupt. The device never knows what is behind it:
// the anchor backs it with KVM_IRQ_LINE on the in-kernel IOAPIC/PIC, an irqfd, or an MSI route;
// tests back it with a counter.
// Called from whichever thread runs the device (vCPU or I/O thread); implementations are
// thread-safe.
#pragma once

namespace vmm {

class InterruptLine {
public:
    virtual ~InterruptLine() = default;
    // Edge: one interrupt.
    virtual void trigger() = 0;
    // Level: asserted until deasserted (ISA/INTx devices such as the 16550).
    // Default for edge-only backends: a rising level is one edge.
    virtual void set_level(bool asserted) {
        if (asserted) trigger();
    }
};

}  // namespace vmm
