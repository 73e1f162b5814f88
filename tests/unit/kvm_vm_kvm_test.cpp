// KvmVm against the real KVM: what the VM's own teardown asks of the kernel.
#include "kvm/kvm_system.h"
#include "kvm/kvm_vm.h"
#include "tests/support/test_paths.h"

#include <gtest/gtest.h>

namespace vmm {
namespace {

class KvmVmTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (const std::string why = test::kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        kvm = std::make_unique<KvmSystem>();
    }
    std::unique_ptr<KvmSystem> kvm;
};

// ~KvmVm turns the PIT's reinjection off before the fd closes (the kernel's own teardown of
// it waits out an SRCU grace period): the request must be one the kernel takes with a PIT,
// and one it refuses without (so a wrong request number or layout cannot pass unnoticed).
TEST_F(KvmVmTest, PitReinjectionTurnsOffWithAPitAndOnlyWithOne) {
    KvmVm without(*kvm);
    without.create_irqchip();
    EXPECT_FALSE(without.stop_pit_reinjection());

    KvmVm with(*kvm);
    with.create_irqchip();
    with.create_pit();
    EXPECT_TRUE(with.stop_pit_reinjection());
    EXPECT_TRUE(with.stop_pit_reinjection()) << "turning it off twice is still fine";
}

}  // namespace
}  // namespace vmm
