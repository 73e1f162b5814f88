// PciIntxRouter: legacy INTx wiring of the root bus. The device in slot `slot` asserting pin
// INTA#..INTD# drives GSI x86::pci_intx_gsi(slot, pin) (level, active-low, as the ACPI _PRT and
// the MP table announce). Several devices share a GSI (the swizzle folds 32 slots onto
// GSIs 16..19), so the GSI's level is the OR of its devices' levels: each device gets its own
// InterruptLine and the router drives the backing line (from the anchor's factory, e.g.
// KVM_IRQ_LINE) only on 0 <-> 1 transitions of the count of asserted devices.
// Threads: lines are set from any thread; one mutex per GSI.
#pragma once

#include "devicemodel/bus/interrupt_line.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

namespace vmm::pci {

class PciIntxRouter {
public:
    // Returns the backing line for a GSI; called at most once per GSI, at setup.
    using LineFactory = std::function<std::shared_ptr<InterruptLine>(std::uint32_t gsi)>;

    explicit PciIntxRouter(LineFactory factory) : factory_(std::move(factory)) {}

    // A new line for the device in `slot` (0..31) on `pin` (1 = INTA# .. 4 = INTD#).
    // Throws vmm::Error on a bad slot/pin or if the factory returns nothing.
    std::shared_ptr<InterruptLine> line(unsigned slot, unsigned pin);

    struct SharedGsi;

private:
    LineFactory factory_;
    std::map<std::uint32_t, std::shared_ptr<SharedGsi>> gsis_;
};

}  // namespace vmm::pci
