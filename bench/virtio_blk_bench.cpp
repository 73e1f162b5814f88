// virtio_blk_bench: throughput of the virtio-blk device model against the raw syscalls, in one run.
//
// Both sides use the same backing file (page cache, no O_DIRECT), so the ratio is the cost of the
// device model itself: the virtqueue, the dispatcher thread, the I/O engine and the completion
// path, driven by tests/support/virtqueue_driver.h playing the guest driver.
//   - 4 KiB random reads: pread() vs VIRTIO_BLK_T_IN, at queue depth 1 and 16.
//   - 64 KiB sequential writes: pwrite() vs VIRTIO_BLK_T_OUT, at queue depth 1 and 16.
// Usage: virtio_blk_bench [--file PATH] [--size-mb N] [--seconds S] [--engine threads|io_uring]
// (both engines by default).
#include "common/log.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace vmm;
using Clock = std::chrono::steady_clock;
using Drv = test::VirtqueueDriver;

struct Args {
    std::string file;
    std::uint64_t size_mb = 64;
    double seconds = 2.0;
    std::vector<bool> engines{false, true};  // thread pool, io_uring
    std::size_t inline_max = virtio_blk::VirtioBlkOptions{}.inline_max_bytes;
};

struct Result {
    std::uint64_t ops = 0;
    double secs = 0;
    double iops() const { return ops / secs; }
};

template <typename Fn>
Result time_loop(double seconds, Fn&& one) {
    Result r;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
        for (int i = 0; i < 64; ++i) one(r.ops++);
    }
    r.secs = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
}

Result raw(int fd, bool write, std::uint32_t len, std::uint64_t disk_bytes, double seconds) {
    std::vector<std::uint8_t> buf(len, 0x5a);
    std::mt19937_64 rng(1);
    const std::uint64_t slots = disk_bytes / len;
    return time_loop(seconds, [&](std::uint64_t i) {
        const std::uint64_t off = write ? (i % slots) * len : (rng() % slots) * len;
        const ssize_t n = write ? ::pwrite(fd, buf.data(), len, static_cast<off_t>(off))
                                : ::pread(fd, buf.data(), len, static_cast<off_t>(off));
        if (n != static_cast<ssize_t>(len)) {
            std::perror("raw I/O");
            std::exit(1);
        }
    });
}

Result device(virtio_blk::VirtioBlk& blk, bool write, std::uint32_t len, std::uint64_t disk_bytes, double seconds,
              unsigned depth) {
    // Guest RAM: rings at 0x1000, per-slot header/status at 0x10000, data from 1 MiB.
    test::FakeGuestMemory fake({{0, (1 << 20) + std::uint64_t{depth} * len}});
    const GuestMemory& mem = fake;
    Drv drv(mem, 0x1000, 256);
    auto irq = std::make_shared<test::FakeVirtioInterrupt>();
    blk.activate(mem, virtio::feature_bit(virtio::kFeatureVersion1) | virtio::feature_bit(virtio::kFeatureIndirectDesc),
                 {drv.config()}, irq);
    std::mt19937_64 rng(1);
    const std::uint64_t slots = disk_bytes / len;
    std::uint64_t seq = 0, errors = 0;
    std::vector<unsigned> slot_of_head(256);
    auto submit = [&](unsigned slot) {
        const std::uint64_t off = write ? (seq++ % slots) * len : (rng() % slots) * len;
        const virtio_blk_outhdr hdr{write ? 1u * VIRTIO_BLK_T_OUT : 1u * VIRTIO_BLK_T_IN, 0, off / 512};
        const std::uint64_t h = 0x10000 + 32ull * slot, st = h + 16, data = (1 << 20) + std::uint64_t{slot} * len;
        mem.write(h, &hdr, sizeof hdr);
        mem.write_obj<std::uint8_t>(st, 0xff);
        const std::uint16_t head = drv.add_chain({Drv::rd(h, 16), write ? Drv::rd(data, len) : Drv::wr(data, len), Drv::wr(st, 1)});
        slot_of_head[head] = slot;
    };
    for (unsigned s = 0; s < depth; ++s) submit(s);
    blk.queue_notify(0);
    Result r;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    std::uint16_t seen = 0;
    bool draining = false;
    unsigned outstanding = depth;
    while (outstanding) {
        irq->wait_for([&] { return drv.used_idx() != seen; });
        const auto used = drv.reclaim();
        seen = static_cast<std::uint16_t>(seen + used.size());
        if (!draining && Clock::now() >= end) draining = true;
        for (const auto& u : used) {
            ++r.ops;
            --outstanding;
            if (*mem.read_obj<std::uint8_t>(0x10000 + 32ull * slot_of_head[u.id] + 16) != VIRTIO_BLK_S_OK) ++errors;
            if (!draining) {
                submit(slot_of_head[u.id]);
                ++outstanding;
            }
        }
        if (!draining) blk.queue_notify(0);
    }
    r.secs = std::chrono::duration<double>(Clock::now() - start).count();
    blk.reset();
    if (errors) {
        std::fprintf(stderr, "device reported %llu errors\n", static_cast<unsigned long long>(errors));
        std::exit(1);
    }
    return r;
}

void report(const char* what, std::uint32_t len, const Result& raw_r, const Result& dev_r, unsigned depth) {
    const double mib = 1024.0 * 1024.0;
    std::printf("%-26s depth %2u   raw %9.0f IOPS %8.1f MiB/s   device %9.0f IOPS %8.1f MiB/s   ratio %.3f\n", what,
                depth, raw_r.iops(), raw_r.iops() * len / mib, dev_r.iops(), dev_r.iops() * len / mib,
                dev_r.iops() / raw_r.iops());
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        auto next = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", k.c_str());
                std::exit(64);
            }
            return std::string(argv[++i]);
        };
        if (k == "--file") a.file = next();
        else if (k == "--size-mb") a.size_mb = std::stoull(next());
        else if (k == "--seconds") a.seconds = std::stod(next());
        else if (k == "--engine") a.engines = {next() == "io_uring"};
        else if (k == "--inline-max") a.inline_max = std::stoull(next());
        else {
            std::fprintf(stderr, "usage: %s [--file PATH] [--size-mb N] [--seconds S] [--engine threads|io_uring] [--inline-max BYTES]\n", argv[0]);
            return 64;
        }
    }
    bool temp = false;
    if (a.file.empty()) {
        char tmpl[] = "/tmp/vmm-blk-bench-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) return std::perror("mkstemp"), 1;
        ::close(fd);
        a.file = tmpl;
        temp = true;
    }
    const std::uint64_t bytes = a.size_mb << 20;
    {
        int fd = ::open(a.file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return std::perror(a.file.c_str()), 1;
        std::vector<std::uint8_t> chunk(1 << 20, 0xa5);  // fill it so reads hit real (cached) data
        for (std::uint64_t off = 0; off < bytes; off += chunk.size())
            if (::pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) < 0) return std::perror("fill"), 1;
        ::close(fd);
    }
    vmm::set_log_level("warn");
    for (bool io_uring : a.engines) {
        virtio_blk::VirtioBlkOptions opts;
        opts.name = "bench";
        opts.use_io_uring = io_uring;
        opts.inline_max_bytes = a.inline_max;
        virtio_blk::VirtioBlk blk(virtio_blk::DiskImage::open({a.file, std::nullopt, false}), opts);
        if (io_uring && std::string(blk.io_engine_name()) != "io_uring") {
            std::printf("io_uring engine unavailable, skipped\n");
            continue;
        }
        std::printf("virtio_blk_bench: %s, %llu MiB, %.1f s per run, device engine %s, inline up to %zu bytes\n",
                    a.file.c_str(), static_cast<unsigned long long>(a.size_mb), a.seconds, blk.io_engine_name(), a.inline_max);
        const int fd = blk.disk().fd();
        const Result rr = raw(fd, false, 4096, bytes, a.seconds);
        for (unsigned depth : {1u, 16u}) report("4 KiB random read", 4096, rr, device(blk, false, 4096, bytes, a.seconds, depth), depth);
        const Result rw = raw(fd, true, 65536, bytes, a.seconds);
        for (unsigned depth : {1u, 16u}) report("64 KiB sequential write", 65536, rw, device(blk, true, 65536, bytes, a.seconds, depth), depth);
    }
    std::printf("(ratio = device IOPS / raw single-thread pread/pwrite IOPS on the same file)\n");
    if (temp) ::unlink(a.file.c_str());
    return 0;
}
