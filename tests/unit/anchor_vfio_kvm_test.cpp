// VFIO passthrough end to end: a real PCI function (QEMU's "edu" device, which the nested-KVM
// VM of tests/nested/run-in-l1.sh provides behind an emulated Intel IOMMU) is bound to vfio-pci
// by the project's own PciDriverBinder and handed to tests/guests/vfio_edu.bin through the
// manifest's `pci` field. The guest reads the function's registers through the BAR mapped into
// it, runs DMA both ways through the IOMMU into guest RAM, takes an MSI and two INTx
// interrupts (the second only arrives if the resample/unmask path re-armed the line).
// Needs /dev/kvm, /dev/vfio/vfio and the edu device; skips naming what is missing.
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include "vfio/pci_driver_binder.h"
#include "vfio/pci_topology.h"
#include "vfio/vfio_container.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>
#include <fstream>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr const char* kFlat32 = R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";

std::string find_function(std::uint16_t vendor, std::uint16_t device) {
    try {
        const auto topology = vfio::PciTopology::scan("/sys");
        for (const auto& d : topology.devices())
            if (d.vendor == vendor && d.device == device) return d.bdf;
    } catch (const std::exception&) {
    }
    return {};
}

class AnchorVfioTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        if (auto why = vfio::VfioContainer::unavailable_reason(); !why.empty())
            GTEST_SKIP() << "no VFIO here (" << why
                         << "): this test needs an IOMMU; tests/nested/run-in-l1.sh provides one with an edu device";
        edu_ = find_function(0x1234, 0x11e8);
        if (edu_.empty()) GTEST_SKIP() << "no QEMU edu device (1234:11e8) on this machine's PCI bus";
        binder_.reserve(edu_);
        dir_ = make_temp_dir("anchor-vfio");
    }
    void TearDown() override {
        if (!edu_.empty() && binder_.reservations().count(edu_)) binder_.release(edu_);
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::string manifest(const std::string& name, const std::string& pci, const std::string& guest = "vfio_edu.bin") {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest)
                            << "\", \"memory_mb\": 16, " << kFlat32 << ", \"pci\": " << pci << "}";
        return path;
    }
    ProcessResult run(const std::string& manifest_path, const std::vector<std::string>& extra = {}) {
        std::vector<std::string> argv{anchor_path(), "--manifest", manifest_path, "--run-dir", dir_ + "/run"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        auto r = run_process(argv, 120s);
        EXPECT_FALSE(r.timed_out) << r.out << r.err;
        return r;
    }

    vfio::PciDriverBinder binder_;
    std::string edu_, dir_;
};

TEST_F(AnchorVfioTest, EduGuestDrivesThePassedThroughFunction) {
    auto r = run(manifest("edu", "[{\"bdf\": \"" + edu_ + "\"}]"));
    EXPECT_THAT(r.out, HasSubstr("vfio_edu: id 010000ed")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("liveness 12345678 -> edcba987"));
    EXPECT_THAT(r.out, HasSubstr("factorial 5 -> 120"));
    EXPECT_THAT(r.out, HasSubstr("dma ok"));
    EXPECT_THAT(r.out, HasSubstr("msi ok"));
    EXPECT_THAT(r.out, HasSubstr("intx ok 2"));
    EXPECT_THAT(r.out, HasSubstr("vfio_edu: PASS"));
    EXPECT_EQ(r.exit_status, (0x5e << 1) | 1) << r.out << r.err;
}

TEST_F(AnchorVfioTest, SelectedByVendorAndDeviceId) {
    auto r = run(manifest("edu-ids", R"([{"vendor": "1234", "device": "11e8", "index": 0}])"));
    EXPECT_THAT(r.out, HasSubstr("vfio_edu: PASS")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x5e << 1) | 1) << r.out << r.err;
}

// In the mount jail (--jail): the function chosen by IDs is resolved in the jail's read-only
// /sys, and only its IOMMU group's node is made there; the guest drives it as outside.
TEST_F(AnchorVfioTest, AJailedDomainDrivesTheFunctionItChoseByIds) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    auto r = run(manifest("edu-jail", R"([{"vendor": "1234", "device": "11e8", "index": 0}])"), {"--jail"});
    EXPECT_THAT(r.out, HasSubstr("dma ok")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("msi ok"));
    EXPECT_THAT(r.out, HasSubstr("vfio_edu: PASS")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x5e << 1) | 1) << r.out << r.err;
}

TEST_F(AnchorVfioTest, ADeviceNotBoundToVfioPciIsAClearSetupError) {
    binder_.release(edu_);
    auto r = run(manifest("edu-unbound", "[{\"bdf\": \"" + edu_ + "\"}]"));
    EXPECT_NE(r.exit_status, (0x5e << 1) | 1);
    EXPECT_THAT(r.err, HasSubstr("pci[0]"));
    EXPECT_THAT(r.err, HasSubstr("not vfio-pci"));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("vfio_edu:"))) << "the guest must not run";
}

TEST_F(AnchorVfioTest, NoSuchDeviceIsAClearSetupError) {
    auto r = run(manifest("edu-missing", R"([{"vendor": "1234", "device": "11e8", "index": 5}])"));
    EXPECT_THAT(r.err, HasSubstr("pci[0]")) << r.err;
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("vfio_edu:")));
}

// A modern virtio-blk-pci function of the L1 VM (1af4:1042, a 1 MiB disk) driven by the same
// polled virtio driver guest that runs against our own virtio-blk: config space capabilities
// read through the model, the 64-bit BAR with the virtio structures mapped into the guest, the
// MSI-X table BAR trapped, the virtqueues in guest RAM reached by the function through the
// IOMMU.
TEST_F(AnchorVfioTest, VirtioBlkGuestDrivesAPassedThroughVirtioFunction) {
    const std::string blk = find_function(0x1af4, 0x1042);
    if (blk.empty()) GTEST_SKIP() << "no modern virtio-blk-pci function (1af4:1042) to pass through here";
    binder_.reserve(blk);
    auto r = run(manifest("vblk", "[{\"bdf\": \"" + blk + "\"}]", "virtio_blk.bin"));
    binder_.release(blk);
    EXPECT_THAT(r.out, HasSubstr("capacity 2048 sectors")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("sector 1 read back ok"));
    EXPECT_EQ(r.exit_status, (0x42 << 1) | 1) << r.out << r.err;
}

}  // namespace
}  // namespace vmm::test
