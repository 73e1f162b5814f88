// The device models' threads under their kind's seccomp filter (jail/seccomp_policy.h), as the
// anchor runs them: in a forked child the process filter is installed first (TSYNC), then each
// device thread stacks its kind's filter from the device's start hook, in Enforce mode. Every
// request type then has to pass: a syscall missing from a list ends the child with exit 12 and
// names it. This is where the lists are checked against what the code really calls, with both
// virtio-blk engines (the anchor's guests in L1 only drive the thread pool, and no discard or
// write-zeroes), virtio-net's loop on a readv/writev backend (a tap's calls) and the notify
// loop with a socket console.
#include "anchor/notify_loop.h"
#include "anchor/socket_console.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "devicemodel/virtio-net/virtio_net.h"
#include "common/log.h"
#include "jail/seccomp_policy.h"
#include "tests/support/child_process.h"
#include "tests/support/seccomp_probe.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <linux/virtio_blk.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace vmm::jail {
namespace {

using test::ChildResult;
using Drv = test::VirtqueueDriver;
using namespace std::chrono_literals;

class SeccompIoThreadsTest : public ::testing::Test {
protected:
    void SetUp() override {
        // A kernel without seccomp filters (or a sandbox refusing them) cannot run these.
        if (const std::string why = test::seccomp_refused(); !why.empty()) GTEST_SKIP() << why;
    }
};

// The anchor's order: the process filter, then each device thread stacks its kind's.
// The anchor logs before it jails itself, which makes the one stderr sink (common/log.h).
void jail_process() {
    ::unsetenv(kSeccompEnvMarker);
    logger("seccomp-test")->info("jailing the process");
    install_anchor_seccomp(SeccompMode::Enforce);
}
// Each thread then logs, as a device thread may at any time (an I/O error, a bad request):
// spdlog's first message on a thread asks the kernel for its id (gettid).
std::function<void()> stack(IoThreadKind kind) {
    return [kind] {
        install_io_thread_seccomp(SeccompMode::Enforce, kind);
        logger("seccomp-test")->warn("a {} thread under its filter", to_string(kind));
    };
}

// Every virtio-blk request type on one engine ("threads", "io_uring" or "split": reads on a
// ring, the rest on the pool); returns 0 or the step that failed.
int blk_session(const std::string& path, const std::string& engine) {
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    const GuestMemory& mem = fake.memory();
    virtio_blk::VirtioBlkOptions opts;
    opts.name = "blksec";
    opts.queue_size = 64;
    opts.use_io_uring = engine == "io_uring";
    opts.reads_on_io_uring = engine == "split";
    opts.io_threads = 2;
    opts.on_thread_start = stack(IoThreadKind::Block);
    jail_process();
    auto blk = std::make_unique<virtio_blk::VirtioBlk>(virtio_blk::DiskImage::open({path, std::nullopt, false}), opts);
    auto irq = std::make_shared<test::FakeVirtioInterrupt>();
    Drv drv(mem, 0x1000, 64);
    const std::uint64_t features = virtio::feature_bit(virtio::kFeatureVersion1) |
                                   virtio::feature_bit(VIRTIO_BLK_F_DISCARD) | virtio::feature_bit(VIRTIO_BLK_F_WRITE_ZEROES) |
                                   virtio::feature_bit(VIRTIO_BLK_F_FLUSH);
    blk->activate(mem, features, {drv.config()}, irq);
    std::uint16_t expected = 0;
    // Publishes requests (header at 0x8000 + 0x40*i, status after it, data at 0x10000 + 0x10000*i)
    // with one kick; several at once go to the engine, a lone small one runs on the dispatcher.
    struct Req {
        std::uint32_t type;
        std::uint64_t sector;
        std::uint32_t len;
    };
    auto submit = [&](const std::vector<Req>& reqs) {
        for (std::size_t i = 0; i < reqs.size(); ++i) {
            const std::uint64_t hdr = 0x8000 + 0x40 * i, status = hdr + 0x20, data = 0x10000 + 0x10000 * i;
            virtio_blk_outhdr h{reqs[i].type, 0, reqs[i].sector};
            mem.write(hdr, &h, sizeof h);
            mem.write_obj<std::uint8_t>(status, 0xee);
            std::vector<Drv::Buf> bufs{Drv::rd(hdr, 16)};
            if (reqs[i].len)
                bufs.push_back(reqs[i].type == VIRTIO_BLK_T_IN ? Drv::wr(data, reqs[i].len) : Drv::rd(data, reqs[i].len));
            bufs.push_back(Drv::wr(status, 1));
            drv.add_chain(bufs);
        }
        expected = static_cast<std::uint16_t>(expected + reqs.size());
        blk->queue_notify(0);
        if (!irq->wait_for([&] { return drv.used_idx() == expected && blk->in_flight() == 0; })) return false;
        drv.reclaim();
        for (std::size_t i = 0; i < reqs.size(); ++i)
            if (*mem.read_obj<std::uint8_t>(0x8000 + 0x40 * i + 0x20) != VIRTIO_BLK_S_OK) return false;
        return true;
    };
    if (!submit({{VIRTIO_BLK_T_OUT, 8, 4096}, {VIRTIO_BLK_T_OUT, 16, 4096}, {VIRTIO_BLK_T_OUT, 24, 128 * 1024}})) return 1;
    if (!submit({{VIRTIO_BLK_T_IN, 8, 4096}, {VIRTIO_BLK_T_IN, 16, 4096}, {VIRTIO_BLK_T_IN, 0, 128 * 1024}})) return 2;
    if (!submit({{VIRTIO_BLK_T_IN, 0, 512}})) return 3;  // inline, on the dispatcher
    if (!submit({{VIRTIO_BLK_T_OUT, 0, 512}})) return 4;
    if (!submit({{VIRTIO_BLK_T_FLUSH, 0, 0}, {VIRTIO_BLK_T_FLUSH, 0, 0}})) return 5;
    virtio_blk_discard_write_zeroes d[3] = {{200, 4, 0}, {300, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}, {400, 8, 0}};
    mem.write(0x10000, &d[0], sizeof d[0]);
    mem.write(0x20000, &d[1], sizeof d[1]);
    mem.write(0x30000, &d[2], sizeof d[2]);
    if (!submit({{VIRTIO_BLK_T_WRITE_ZEROES, 0, 16}, {VIRTIO_BLK_T_WRITE_ZEROES, 0, 16}, {VIRTIO_BLK_T_DISCARD, 0, 16}}))
        return 6;
    if (!submit({{VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES}})) return 7;
    blk->reset();
    blk.reset();  // the threads exit under their filters
    return 0;
}

TEST_F(SeccompIoThreadsTest, VirtioBlkServesEveryRequestTypeUnderTheBlockFilter) {
    for (const std::string engine : {"threads", "io_uring", "split"}) {
        char tmpl[] = "/tmp/vmm-blk-seccomp-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
        ::close(fd);
        const std::string path = tmpl;
        const ChildResult r = test::run_in_child([&] { return blk_session(path, engine); });
        ::unlink(tmpl);
        EXPECT_TRUE(r.exited) << engine << ": signal " << r.status << " " << r.out;
        EXPECT_EQ(r.status, 0) << engine << ": " << r.out;
        EXPECT_THAT(r.out, ::testing::Not(::testing::HasSubstr("denied syscall")));
    }
}

// A tap's calls on a SOCK_SEQPACKET socketpair: readv, and transmit batches through an io_uring
// restricted to WRITEV (writev where io_uring is refused), as Tap does.
class ReadvBackend : public virtio_net::NetBackend {
public:
    explicit ReadvBackend(Fd fd) : fd_(std::move(fd)) { write_batches_with_io_uring(fd_.get(), false); }
    std::string description() const override { return "readv socketpair"; }
    int fd() const override { return fd_.get(); }
    ssize_t read(std::span<const iovec> iov) override {
        const ssize_t n = ::readv(fd_.get(), iov.data(), static_cast<int>(iov.size()));
        return n < 0 ? -errno : n;
    }
    ssize_t write(std::span<const iovec> iov) override {
        const ssize_t n = ::writev(fd_.get(), iov.data(), static_cast<int>(iov.size()));
        return n < 0 ? -errno : n;
    }

private:
    Fd fd_;
};

TEST_F(SeccompIoThreadsTest, VirtioNetLoopServesBothQueuesUnderTheNetFilter) {
    const ChildResult r = test::run_in_child([] {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return 80;
        Fd peer(sv[1]);
        test::FakeGuestMemory fake{{{0, 0x100000}}};
        const GuestMemory& mem = fake.memory();
        virtio_net::VirtioNetOptions o;
        o.name = "netsec";
        o.queue_size = 16;
        o.on_thread_start = stack(IoThreadKind::Net);
        // Made before the jail, as the anchor opens its taps (io_uring_setup is not allowed after).
        auto backend = std::make_unique<ReadvBackend>(Fd(sv[0]));
        const bool batches = backend->writes_in_batches();
        jail_process();
        const virtio_net::NetBackend* net_backend = backend.get();
        auto net = std::make_unique<virtio_net::VirtioNet>(std::move(backend), o);
        auto irq = std::make_shared<test::FakeVirtioInterrupt>();
        Drv rxq(mem, 0x1000, 16), txq(mem, 0x2000, 16);
        net->activate(mem, virtio::feature_bit(virtio::kFeatureVersion1), {rxq.config(), txq.config()}, irq);
        // TX: header + frame from the guest reach the "tap"
        std::vector<std::uint8_t> frame(12 + 60, 0x5a);
        std::memset(frame.data(), 0, 12);
        mem.write(0x10000, frame.data(), frame.size());
        txq.add_chain({Drv::rd(0x10000, static_cast<std::uint32_t>(frame.size()))});
        net->queue_notify(virtio_net::VirtioNet::kTxQueue);
        pollfd p{peer.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return 1;
        std::vector<std::uint8_t> got(2048);
        if (::recv(peer.get(), got.data(), got.size(), 0) != static_cast<ssize_t>(frame.size())) return 2;
        // RX: a frame from the "tap" lands in a posted buffer
        rxq.add_chain({Drv::wr(0x20000, 2048)});
        net->queue_notify(virtio_net::VirtioNet::kRxQueue);
        if (::send(peer.get(), frame.data(), frame.size(), 0) != static_cast<ssize_t>(frame.size())) return 3;
        if (!irq->wait_for([&] { return rxq.used_idx() == 1 && txq.used_idx() == 1; })) return 4;
        const char* why = net_backend->why_not_in_batches();
        std::printf("transmit %s%s\n", batches && !why ? "through io_uring (io_uring_enter under the filter)" : "by writev: ",
                    why ? why : "");
        // the peer goes away: the loop stops polling it (link down), and logs it
        peer.reset();
        std::this_thread::sleep_for(50ms);
        net->reset();
        net.reset();
        return 0;
    });
    EXPECT_TRUE(r.exited) << "signal " << r.status << " " << r.out;
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, ::testing::Not(::testing::HasSubstr("denied syscall")));
    EXPECT_THAT(r.out, ::testing::HasSubstr("transmit "));
    std::printf("net thread: %s\n", r.out.find("through io_uring") != std::string::npos
                                         ? "transmitted through io_uring under the Net filter"
                                         : "transmitted by writev under the Net filter (io_uring batches not available here)");
}

TEST_F(SeccompIoThreadsTest, NotifyLoopServesEventfdsAndASocketConsoleUnderTheNotifyFilter) {
    const std::string path = ::testing::TempDir() + "/notify-seccomp-" + std::to_string(::getpid()) + ".sock";
    const ChildResult r = test::run_in_child([&path] {
        anchor::NotifyLoop loop;
        Fd ioeventfd = make_eventfd();
        std::atomic<int> notifies{0};
        loop.watch(ioeventfd.get(), [&] { ++notifies; });
        std::mutex mu;
        std::string fed;
        auto console = anchor::SocketConsole::create(loop.io(), path, [&](std::span<const std::uint8_t> b) {
            std::lock_guard lock(mu);
            fed.append(b.begin(), b.end());
        });
        console->start();
        // The client connects before the filters (the process filter has no connect); the
        // notify thread accepts it under its own.
        Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 80;
        jail_process();
        loop.start(stack(IoThreadKind::Notify));
        const std::uint64_t one = 1;
        if (::write(ioeventfd.get(), &one, 8) != 8) return 1;
        for (int i = 0; i < 2500 && notifies == 0; ++i) std::this_thread::sleep_for(2ms);
        if (notifies == 0) return 2;
        // guest output to the client, client input to the device
        console->write(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>("guest"), 5));
        pollfd p{client.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return 3;
        char buf[16];
        if (::read(client.get(), buf, sizeof buf) != 5 || std::memcmp(buf, "guest", 5) != 0) return 4;
        if (::write(client.get(), "typed", 5) != 5) return 5;
        for (int i = 0; i < 2500; ++i) {
            {
                std::lock_guard lock(mu);
                if (fed == "typed") break;
            }
            std::this_thread::sleep_for(2ms);
        }
        {
            std::lock_guard lock(mu);
            if (fed != "typed") return 6;
        }
        // the client leaves (the notify thread closes its end), the console closes, the loop stops
        client.reset();
        std::this_thread::sleep_for(50ms);
        console->close();
        loop.stop();
        return 0;
    });
    EXPECT_TRUE(r.exited) << "signal " << r.status << " " << r.out;
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_THAT(r.out, ::testing::Not(::testing::HasSubstr("denied syscall")));
}

}  // namespace
}  // namespace vmm::jail
