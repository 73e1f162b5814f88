// The virtio test guests (tests/guests/virtio_*.c, pci_probe.c: polled drivers that probe PCI
// and run real virtio-pci init sequences) under real KVM through the vmm-anchor binary, with
// the device model behind them: the PCI bus, the virtio-pci transport, virtio-blk on a host
// file, virtio-console on a pty driven through QMP. Needs /dev/kvm (label kvm).
#include "qmp/qmp_client.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr const char* kFlat32 = R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";

class AnchorVirtioTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        dir_ = make_temp_dir("anchor-virtio");
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    std::string manifest(const std::string& name, const std::string& guest, const std::string& extra) {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest)
                            << "\", \"memory_mb\": 16, " << kFlat32 << (extra.empty() ? "" : ", ") << extra << "}";
        return path;
    }
    ProcessResult run(const std::string& manifest_path) {
        auto r = run_process({anchor_path(), "--manifest", manifest_path, "--run-dir", dir_ + "/run"}, 60s);
        EXPECT_FALSE(r.timed_out) << r.out << r.err;
        return r;
    }

    // The layout tests/integration/guests_virtio_qemu.sh uses: sector 0 starts with a marker
    // the guest prints, sector 1 holds 0xee until the guest writes (i*7+3), the rest is a
    // pattern that must not change.
    std::string make_disk() {
        std::string img(64 * 1024, 'z');
        const std::string marker = "VMM-BLK-SECTOR-0";
        img.replace(0, marker.size(), marker);
        for (int i = 0; i < 512; ++i) img[512 + i] = static_cast<char>(0xee);
        for (int s = 2; s < 128; ++s) {
            char tag[16];
            std::snprintf(tag, sizeof tag, "sect%04d", s);
            img.replace(static_cast<std::size_t>(s) * 512, 8, tag);
        }
        EXPECT_EQ(img.size(), 128u * 512);
        const std::string path = dir_ + "/disk.img";
        std::ofstream(path, std::ios::binary) << img;
        original_ = img;
        return path;
    }
    std::string read_file(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }

    std::string dir_;
    std::string original_;
};

TEST_F(AnchorVirtioTest, PciProbeSeesTheHostBridgeAndEveryVirtioDevice) {
    const std::string disk = make_disk();
    auto r = run(manifest("probe", "pci_probe.bin",
                          "\"disks\": [{\"path\": \"" + disk + "\"}], \"consoles\": [{\"kind\": \"pty\"}]"));
    EXPECT_THAT(r.out, HasSubstr("pci 00:00.0 1b36:0008 class 060000")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("1af4:1042 class 010000"));
    EXPECT_THAT(r.out, HasSubstr("1af4:1043 class 078000"));
    EXPECT_EQ(r.exit_status, (3 << 1) | 1) << r.out << r.err;
}

TEST_F(AnchorVirtioTest, VirtioBlkGuestReadsWritesFlushesAndGetsIoErrPastTheEnd) {
    const std::string disk = make_disk();
    auto r = run(manifest("blk", "virtio_blk.bin", "\"disks\": [{\"path\": \"" + disk + "\"}]"));
    EXPECT_THAT(r.out, HasSubstr("capacity 128 sectors")) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("sector 0: 56 4d 4d 2d 42 4c 4b 2d"));  // "VMM-BLK-"
    EXPECT_THAT(r.out, HasSubstr("sector 1 read back ok"));
    EXPECT_EQ(r.exit_status, (0x42 << 1) | 1) << r.out << r.err;
    const std::string after = read_file(disk);
    ASSERT_EQ(after.size(), original_.size());
    for (int i = 0; i < 512; ++i) ASSERT_EQ(static_cast<std::uint8_t>(after[512 + i]), std::uint8_t(i * 7 + 3)) << i;
    EXPECT_EQ(after.substr(0, 512), original_.substr(0, 512));
    EXPECT_EQ(after.substr(1024), original_.substr(1024)) << "nothing outside sector 1 changed";
}

TEST_F(AnchorVirtioTest, ReadOnlyDiskRefusesTheGuestsWrite) {
    const std::string disk = make_disk();
    auto r = run(manifest("blk-ro", "virtio_blk.bin", "\"disks\": [{\"path\": \"" + disk + "\", \"readonly\": true}]"));
    EXPECT_EQ(r.exit_status, (0x22 << 1) | 1) << r.out << r.err;
    EXPECT_EQ(read_file(disk), original_);
}

// Started paused (QEMU's prelaunch), found and resumed through QMP, its virtio-console output
// read from the pty that query-chardev names.
TEST_F(AnchorVirtioTest, VirtioConsoleOnAPtyDrivenThroughQmp) {
    const std::string m = manifest("vcon", "virtio_console.bin", "\"start_paused\": true, \"consoles\": [{\"kind\": \"pty\"}]");
    ProcessResult r;
    std::thread anchor([&] { r = run(m); });
    std::string out;
    try {
        qmp::QmpClient qmp(dir_ + "/run/kvm/vcon/qmp", 20s);
        EXPECT_EQ(qmp.execute("query-status")["status"], "prelaunch");
        std::string pty;
        for (const auto& dev : qmp.execute("query-chardev"))
            if (dev["label"] == "virtcon0") pty = dev["filename"].get<std::string>().substr(4);  // "pty:"
        ASSERT_FALSE(pty.empty());
        const int fd = ::open(pty.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
        ASSERT_GE(fd, 0) << pty;
        qmp.execute("cont");
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 200) <= 0) continue;
            char buf[256];
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
    } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
    }
    anchor.join();
    EXPECT_EQ(out, "virtio-console: hello\n") << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x43 << 1) | 1) << r.out << r.err;
}

}  // namespace
}  // namespace vmm::test
