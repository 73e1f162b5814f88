// The virtio test guests (tests/guests/virtio_*.c, pci_probe.c: polled drivers that probe PCI
// and run real virtio-pci init sequences) under real KVM through the vmm-anchor binary, with
// the device model behind them: the PCI bus, the virtio-pci transport, virtio-blk on a host
// file, virtio-console on a pty driven through QMP. Needs /dev/kvm (label kvm).
#include "qmp/qmp_client.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include "common/fd.h"
#include "devicemodel/virtio-net/mac_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kFlat32 = R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";

// What run_port_guest() saw.
struct PortRun {
    ProcessResult r;
    std::string line;
    std::optional<qmp::Json> port_event;
};

class AnchorVirtioTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        dir_ = make_temp_dir("anchor-virtio");
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    // What arrives on fd up to and including the first newline, waiting up to 30 s.
    static std::string read_line(int fd) {
        std::string out;
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 200) <= 0) continue;
            char buf[256];
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }
    // A client of the unix stream socket at path (invalid, errno set, if it cannot connect).
    static Fd connect_unix(const std::string& path) {
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            const int e = errno;
            fd.reset();
            errno = e;
        }
        return fd;
    }

    std::string manifest(const std::string& name, const std::string& guest, const std::string& extra) {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest)
                            << "\", \"memory_mb\": 16, " << kFlat32 << (extra.empty() ? "" : ", ") << extra << "}";
        return path;
    }
    ProcessResult run(const std::string& manifest_path, const std::string& log_level = "info") {
        auto r = run_process(
            {anchor_path(), "--manifest", manifest_path, "--run-dir", dir_ + "/run", "--log-level", log_level}, 60s);
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

    // virtio_port.bin, paused, with `consoles` (JSON): a client connects to the socket at
    // sock_path and sends "ping", the domain resumes, and the guest's line on that socket and QMP's
    // first VSERPORT_CHANGE are collected.
    PortRun run_port_guest(const std::string& domain, const std::string& consoles, const std::string& sock_path) {
        const std::string m = manifest(domain, "virtio_port.bin", R"("start_paused": true, "consoles": )" + consoles);
        PortRun p;
        std::thread anchor([&] { p.r = run(m); });
        try {
            qmp::QmpClient qmp(dir_ + "/run/kvm/" + domain + "/qmp", 20s);
            Fd fd = connect_unix(sock_path);
            if (!fd.valid()) throw std::runtime_error(sock_path + ": " + std::strerror(errno));
            if (::write(fd.get(), "ping", 4) != 4) throw std::runtime_error("write to " + sock_path + ": " + std::strerror(errno));
            qmp.execute("cont");
            p.line = read_line(fd.get());
            // The guest opened the port: QEMU's VSERPORT_CHANGE, the chardev's label as the id.
            const auto deadline = std::chrono::steady_clock::now() + 20s;
            while (!p.port_event && std::chrono::steady_clock::now() < deadline) {
                const auto e = qmp.next_event(1000ms);
                if (e && (*e)["event"] == "VSERPORT_CHANGE") p.port_event = (*e)["data"];
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
        }
        anchor.join();
        return p;
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
    auto r = run(manifest("blk", "virtio_blk.bin", "\"disks\": [{\"path\": \"" + disk + "\"}]"), "debug");
    // Every kick went through KVM's ioeventfd, straight to the dispatcher's eventfd: none trapped.
    EXPECT_THAT(r.err, HasSubstr("queue 0 notifications go straight to the device's eventfd")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(": 0 queue notifications trapped")) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("notifications trap instead"))) << r.err;
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

// Data safety: once the guest's flush has completed, kill -9 of the anchor loses nothing: the
// written sector is in the file. The killed anchor's state directory is stale; the next start
// of the same name cleans it and runs.
TEST_F(AnchorVirtioTest, FlushedDataSurvivesKill9AndTheNameStartsAgain) {
    const std::string disk = make_disk();
    std::string img = read_file(guest_path("virtio_blk.bin"));
    const auto tag = img.find("VMM-BLK-HOLD:xxx");
    ASSERT_NE(tag, std::string::npos) << "virtio_blk.bin has no hold tag";
    img[tag + 16] = 1;
    const std::string held = dir_ + "/virtio_blk-hold.bin";
    std::ofstream(held, std::ios::binary) << img;
    const std::string m = dir_ + "/blkkill.json";
    std::ofstream(m) << R"({"name": "blkkill", "kernel": ")" << held << R"(", "memory_mb": 16, )" << kFlat32
                     << R"(, "disks": [{"path": ")" << disk << R"("}]})";
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    const std::string anchor = anchor_path(), run_dir = dir_ + "/run";
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        ::execl(anchor.c_str(), anchor.c_str(), "--manifest", m.c_str(), "--run-dir", run_dir.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (text.find("virtio-blk: holding") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        pollfd p{out[0], POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        char buf[512];
        const ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_THAT(text, HasSubstr("virtio-blk: flush ok")) << text;
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the anchor must have been running until the kill (wait status " << st << "): " << text;
    const std::string after = read_file(disk);
    ASSERT_EQ(after.size(), original_.size());
    for (int i = 0; i < 512; ++i) ASSERT_EQ(static_cast<std::uint8_t>(after[512 + i]), std::uint8_t(i * 7 + 3)) << i;
    EXPECT_EQ(after.substr(1024), original_.substr(1024));
    EXPECT_TRUE(fs::exists(run_dir + "/kvm/blkkill/pid")) << "a SIGKILLed anchor leaves its state behind";

    const std::string again = dir_ + "/blkkill2.json";
    std::ofstream(again) << R"({"name": "blkkill", "kernel": ")" << guest_path("virtio_blk.bin") << R"(", "memory_mb": 16, )"
                         << kFlat32 << R"(, "disks": [{"path": ")" << disk << R"("}]})";
    auto r = run(again);
    EXPECT_EQ(r.exit_status, (0x42 << 1) | 1) << r.out << r.err;
    // The directory itself predates this anchor (it never deletes what it did not create, as
    // pillar needs); the files a live anchor keeps there are gone.
    for (const char* leaf : {"pid", "qmp", "listener.qmp", "cons"})
        EXPECT_FALSE(fs::exists(run_dir + "/kvm/blkkill/" + leaf)) << leaf;
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
        out = read_line(fd);
        ::close(fd);
    } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
    }
    anchor.join();
    EXPECT_EQ(out, "virtio-console: hello\n") << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x43 << 1) | 1) << r.out << r.err;
}

// The same guest with its console on a unix socket the anchor listens on: the guest's output
// reaches a client connected while the domain is paused; query-chardev names the socket as QEMU
// does. (The guest exits right after writing and the socket goes with the anchor, so output
// written before anybody connects, kept and replayed, is socket_console_test's case.)
TEST_F(AnchorVirtioTest, VirtioConsoleOnAUnixSocket) {
    const std::string sock_path = dir_ + "/vcon.sock";
    const std::string m = manifest("vcons", "virtio_console.bin",
                                   R"("start_paused": true, "consoles": [{"kind": "socket", "path": ")" + sock_path + "\"}]");
    ProcessResult r;
    std::thread anchor([&] { r = run(m); });
    std::string out;
    try {
        qmp::QmpClient qmp(dir_ + "/run/kvm/vcons/qmp", 20s);
        bool listed = false;
        for (const auto& dev : qmp.execute("query-chardev"))
            if (dev["label"] == "virtcon0") listed = dev["filename"] == "unix:" + sock_path + ",server=on";
        EXPECT_TRUE(listed);
        Fd fd = connect_unix(sock_path);
        ASSERT_TRUE(fd.valid()) << sock_path << ": " << std::strerror(errno);
        qmp.execute("cont");
        out = read_line(fd.get());
    } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
    }
    anchor.join();
    EXPECT_EQ(out, "virtio-console: hello\n") << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x43 << 1) | 1) << r.out << r.err;
    EXPECT_FALSE(fs::exists(sock_path)) << "the anchor removes the socket it created";
}

// A named port (consoles[].name: virtio MULTIPORT, QEMU's virtserialport) on a unix socket: the
// guest finds port 0 by its name, and "ping", sent by a client while the domain is paused, is held
// until the guest opens the port (Linux drops what reaches a port nobody has open); the guest's
// line reaches the client, and QMP reports the guest's open (VSERPORT_CHANGE).
// tests/integration/guests_virtio_qemu.sh runs the same guest on QEMU.
TEST_F(AnchorVirtioTest, NamedPortOnAUnixSocketHoldsInputUntilTheGuestOpensIt) {
    const std::string sock_path = dir_ + "/vport.sock";
    const PortRun p = run_port_guest("vport", R"([{"kind": "socket", "path": ")" + sock_path + R"(", "name": "vmm.test.port"}])",
                                     sock_path);
    const ProcessResult& r = p.r;
    EXPECT_EQ(p.line, "virtio-port: hello\n") << r.out << r.err;
    ASSERT_TRUE(p.port_event.has_value()) << "no VSERPORT_CHANGE event";
    EXPECT_EQ(*p.port_event, (qmp::Json{{"id", "virtcon0"}, {"open", true}}));
    EXPECT_THAT(r.out, HasSubstr("virtio-port: max_nr_ports 1\nvirtio-port: port 0 added\n"
                                 "virtio-port: port 0 is \"vmm.test.port\"\nvirtio-port: port 0 opened by the host\n"))
        << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("virtio-port: received 4 bytes: ping\nvirtio-port: ok\n")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x44 << 1) | 1) << r.out << r.err;
}

// Two named consoles are two ports of one device, as QEMU's virtserialports on one
// virtio-serial: the guest's port is port 1 (queues 4/5) here, where QEMU puts a lone
// virtserialport too; port 0's socket has no client, so only port 1's host side is open.
TEST_F(AnchorVirtioTest, TwoNamedPortsShareOneDevice) {
    const std::string other_path = dir_ + "/other.sock", sock_path = dir_ + "/vport2.sock";
    const PortRun p = run_port_guest("vport2",
                                     R"([{"kind": "socket", "path": ")" + other_path + R"(", "name": "vmm.other"}, )"
                                     R"({"kind": "socket", "path": ")" + sock_path + R"(", "name": "vmm.test.port"}])",
                                     sock_path);
    const ProcessResult& r = p.r;
    EXPECT_EQ(p.line, "virtio-port: hello\n") << r.out << r.err;
    ASSERT_TRUE(p.port_event.has_value()) << "no VSERPORT_CHANGE event";
    EXPECT_EQ(*p.port_event, (qmp::Json{{"id", "virtcon1"}, {"open", true}})) << "the second console's label";
    for (const char* line : {"virtio-port: max_nr_ports 2\n", "virtio-port: port 0 added\n", "virtio-port: port 1 added\n",
                             "virtio-port: port 0 is \"vmm.other\"\n", "virtio-port: port 1 is \"vmm.test.port\"\n",
                             "virtio-port: port 1 opened by the host\n", "virtio-port: received 4 bytes: ping\nvirtio-port: ok\n"})
        EXPECT_THAT(r.out, HasSubstr(line)) << r.out << r.err;
    EXPECT_THAT(r.out, Not(HasSubstr("port 0 opened by the host"))) << "nobody is connected to port 0's socket";
    EXPECT_EQ(r.exit_status, (0x44 << 1) | 1) << r.out << r.err;
}

// An unnamed console beside a named one: one device, the unnamed console its port 0, the console
// port (CONSOLE_PORT, its pty's host side open), the named one port 1, as QEMU's virtconsole and
// virtserialport on one virtio-serial (guests_virtio_qemu.sh, virtio_port-console: the same lines).
TEST_F(AnchorVirtioTest, AnUnnamedConsoleIsTheConsolePortBesideTheNamedOnes) {
    const std::string sock_path = dir_ + "/port.sock";
    const PortRun p = run_port_guest("vportcon",
                                     R"([{"kind": "pty"}, {"kind": "socket", "path": ")" + sock_path + R"(", "name": "vmm.test.port"}])",
                                     sock_path);
    const ProcessResult& r = p.r;
    EXPECT_EQ(p.line, "virtio-port: hello\n") << r.out << r.err;
    ASSERT_TRUE(p.port_event.has_value()) << "no VSERPORT_CHANGE event";
    EXPECT_EQ(*p.port_event, (qmp::Json{{"id", "virtcon1"}, {"open", true}})) << "the named console's label";
    EXPECT_THAT(r.out, HasSubstr("virtio-port: max_nr_ports 2\nvirtio-port: port 0 added\nvirtio-port: port 1 added\n"
                                 "virtio-port: port 0 is a console\nvirtio-port: port 0 opened by the host\n"
                                 "virtio-port: port 1 is \"vmm.test.port\"\nvirtio-port: port 1 opened by the host\n"))
        << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("virtio-port: received 4 bytes: ping\nvirtio-port: ok\n")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x44 << 1) | 1) << r.out << r.err;
}

// A persistent host tap for the anchor to attach to, with 10.0.2.2/24 on it so the host
// kernel answers the guest's ARP request, and a packet socket that sees what the guest sends.
class HostTap {
public:
    explicit HostTap(std::string name) : name_(std::move(name)) {
        Fd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
        if (!tun) {
            why_ = "/dev/net/tun: " + std::string(std::strerror(errno));
            return;
        }
        ifreq ifr{};
        std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name_.c_str());
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (::ioctl(tun.get(), TUNSETIFF, &ifr) != 0 || ::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) {
            why_ = "creating tap " + name_ + ": " + std::strerror(errno);
            return;
        }
        created_ = true;
        std::string ip;
        for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
            if (ip.empty() && ::access(p, X_OK) == 0) ip = p;
        if (ip.empty()) {
            why_ = "no ip(8) (apt-get install iproute2)";
            return;
        }
        // No IPv6 on the link: its router solicitations would be the guest's first frame.
        std::ofstream("/proc/sys/net/ipv6/conf/" + name_ + "/disable_ipv6") << "1\n";
        for (const auto& cmd : {std::vector<std::string>{ip, "addr", "add", "10.0.2.2/24", "dev", name_},
                                std::vector<std::string>{ip, "link", "set", name_, "up"}}) {
            auto r = run_process(cmd, std::chrono::seconds(10));
            if (r.exit_status != 0) {
                why_ = "configuring " + name_ + ": " + r.err;
                return;
            }
        }
        packet_ = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = static_cast<int>(::if_nametoindex(name_.c_str()));
        if (!packet_ || ::bind(packet_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
            why_ = "packet socket on " + name_ + ": " + std::strerror(errno);
    }
    // Attaching again and clearing TUNSETPERSIST removes the tap when the fd closes.
    ~HostTap() {
        if (!created_) return;
        Fd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
        ifreq ifr{};
        std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name_.c_str());
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (tun && ::ioctl(tun.get(), TUNSETIFF, &ifr) == 0) ::ioctl(tun.get(), TUNSETPERSIST, 0);
    }
    const std::string& unavailable_reason() const { return why_; }
    // Every frame the packet socket has seen so far (what went out of the guest and the replies).
    std::vector<std::string> frames() {
        std::vector<std::string> out;
        char buf[2048];
        for (ssize_t n; (n = ::recv(packet_.get(), buf, sizeof buf, 0)) > 0;) out.emplace_back(buf, static_cast<std::size_t>(n));
        return out;
    }

private:
    std::string name_, why_;
    bool created_ = false;
    Fd packet_;
};

// A copy of virtio_net.bin with net_options.wait_rx set (the u32 after its 16-byte tag).
std::string net_guest_waiting_for_rx(const std::string& dir) {
    std::ifstream in(guest_path("virtio_net.bin"), std::ios::binary);
    std::string img((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = img.find("VMM-NET-RX-WAIT:");
    if (at == std::string::npos) return {};
    img[at + 16] = 1;
    const std::string path = dir + "/virtio_net-rx.bin";
    std::ofstream(path, std::ios::binary) << img;
    return path;
}

// The net guest on a real tap: it reads its MAC from the config space, sends a broadcast ARP
// request that the host sees on the tap, and receives the host kernel's ARP reply.
TEST_F(AnchorVirtioTest, VirtioNetGuestOnATapSendsArpAndGetsTheHostsReply) {
    HostTap tap("vmmtest0");
    if (!tap.unavailable_reason().empty()) GTEST_SKIP() << "needs a tap: " << tap.unavailable_reason();
    const std::string guest = net_guest_waiting_for_rx(dir_);
    ASSERT_FALSE(guest.empty()) << "virtio_net.bin has no VMM-NET-RX-WAIT: tag";
    const std::string path = dir_ + "/net.json";
    std::ofstream(path) << R"({"name": "net", "kernel": ")" << guest << R"(", "memory_mb": 16, )" << kFlat32
                        << R"(, "nics": [{"tap": "vmmtest0", "mac": "52:54:00:ab:cd:ef"}]})";
    auto r = run(path, "debug");
    EXPECT_THAT(r.out, HasSubstr("virtio-net: mac 52:54:00:ab:cd:ef")) << r.out << r.err;
    // Both queues' kicks went through KVM's ioeventfds straight to the NIC's loop.
    EXPECT_THAT(r.err, HasSubstr("queue 0 notifications go straight to the device's eventfd")) << r.err;
    EXPECT_THAT(r.err, HasSubstr("queue 1 notifications go straight to the device's eventfd")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(": 0 queue notifications trapped")) << r.err;
    EXPECT_THAT(r.out, HasSubstr("arp reply 10.0.2.2")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x4e << 1) | 1) << r.out << r.err;
    bool seen = false;
    for (const auto& f : tap.frames()) {
        if (f.size() < 60 || f.find("vmm-virtio-net-tx") == std::string::npos) continue;
        seen = true;
        EXPECT_EQ(f.substr(0, 6), std::string(6, '\xff')) << "broadcast";
        EXPECT_EQ(f.substr(6, 6), std::string("\x52\x54\x00\xab\xcd\xef", 6)) << "source MAC";
        EXPECT_EQ(f.substr(12, 2), std::string("\x08\x06", 2)) << "ARP";
    }
    EXPECT_TRUE(seen) << "the guest's ARP request never reached the tap";
}

// Without a mac in the manifest the NIC gets the address derived from the domain name.
TEST_F(AnchorVirtioTest, VirtioNetMacIsDerivedFromTheDomainName) {
    HostTap tap("vmmtest1");
    if (!tap.unavailable_reason().empty()) GTEST_SKIP() << "needs a tap: " << tap.unavailable_reason();
    auto r = run(manifest("net-derived", "virtio_net.bin", R"("nics": [{"tap": "vmmtest1"}])"));
    EXPECT_THAT(r.out, HasSubstr("virtio-net: mac " + virtio_net::format_mac(virtio_net::derive_mac("net-derived", 0))))
        << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x4e << 1) | 1) << r.out << r.err;
}

// A tap that cannot be opened is a setup error that names the manifest field.
TEST_F(AnchorVirtioTest, AnUnusableTapIsAClearSetupError) {
    auto r = run(manifest("net-bad", "virtio_net.bin", R"("nics": [{"tap": "lo"}])"));
    EXPECT_NE(r.exit_status, 0);
    EXPECT_THAT(r.err, HasSubstr("nics[0]")) << r.out << r.err;
}

}  // namespace
}  // namespace vmm::test
