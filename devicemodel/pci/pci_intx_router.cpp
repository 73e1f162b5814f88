#include "devicemodel/pci/pci_intx_router.h"

#include "common/error.h"
#include "x86/memory_layout.h"

#include <mutex>

namespace vmm::pci {

struct PciIntxRouter::SharedGsi {
    std::mutex mutex;
    unsigned asserted = 0;
    std::shared_ptr<InterruptLine> backing;
};

namespace {

class DeviceIntxLine : public InterruptLine {
public:
    explicit DeviceIntxLine(std::shared_ptr<PciIntxRouter::SharedGsi> gsi) : gsi_(std::move(gsi)) {}

    void set_level(bool asserted) override {
        std::lock_guard lock(gsi_->mutex);
        set_level_locked(asserted);
    }
    // INTx is level-triggered; an edge request is a pulse unless the line is already held.
    void trigger() override {
        std::lock_guard lock(gsi_->mutex);
        if (asserted_) return;
        set_level_locked(true);
        set_level_locked(false);
    }

private:
    void set_level_locked(bool asserted) {
        if (asserted == asserted_) return;
        asserted_ = asserted;
        if (asserted) {
            if (gsi_->asserted++ == 0) gsi_->backing->set_level(true);
        } else {
            if (--gsi_->asserted == 0) gsi_->backing->set_level(false);
        }
    }

    std::shared_ptr<PciIntxRouter::SharedGsi> gsi_;
    bool asserted_ = false;  // guarded by gsi_->mutex
};

}  // namespace

std::shared_ptr<InterruptLine> PciIntxRouter::line(unsigned slot, unsigned pin) {
    if (slot >= 32 || pin < 1 || pin > 4) throw Error("PCI INTx: bad slot or pin");
    const std::uint32_t gsi = x86::pci_intx_gsi(slot, pin - 1);
    auto& shared = gsis_[gsi];
    if (!shared) {
        auto backing = factory_ ? factory_(gsi) : nullptr;
        if (!backing) throw Error("PCI INTx: no line for GSI " + std::to_string(gsi));
        shared = std::make_shared<SharedGsi>();
        shared->backing = std::move(backing);
    }
    return std::make_shared<DeviceIntxLine>(shared);
}

}  // namespace vmm::pci
