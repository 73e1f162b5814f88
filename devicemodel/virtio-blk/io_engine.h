// IoEngine: runs a virtio-blk device's disk I/O off the vCPU threads.
//
// Two engines with the same interface: an io_uring ring served by one thread (when the build
// found liburing and the kernel allows io_uring), or a small pool of threads doing
// preadv/pwritev/fdatasync/fallocate. The device hands over whole operations whose iovecs point
// into guest memory (already bounds-checked by the virtqueue), and learns the result through the
// op's `done` callback, called exactly once on an engine thread.
//
// Threads: submit() from any thread; the destructor waits for every submitted op to finish.
// Every engine thread (the ring thread, each pool worker) calls `on_thread_start` (when set)
// first thing, before it does any I/O; see VirtioBlkOptions::on_thread_start.
#pragma once

#include "devicemodel/virtio/virtqueue.h"

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vmm::virtio_blk {

struct IoOp {
    enum class Kind { Read, Write, Flush, Discard, WriteZeroes };
    Kind kind = Kind::Read;
    std::uint64_t offset = 0;  // host byte offset (Read, Write)
    virtio::IoVecs iov;        // Read, Write
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // Discard, WriteZeroes: host (offset, length)
    bool unmap = false;        // WriteZeroes: may deallocate
    // 0 on success (the whole length transferred), -errno on failure.
    std::function<void(int result)> done;
};

class IoEngine {
public:
    virtual ~IoEngine() = default;
    virtual void submit(std::vector<IoOp> ops) = 0;
    virtual const char* name() const = 0;
};

// io_uring engine ("io_uring"), or nullptr when liburing was not built in or the kernel refuses.
std::unique_ptr<IoEngine> make_uring_engine(int fd, unsigned depth, const std::string& thread_name,
                                            std::function<void()> on_thread_start = {});
// Thread-pool engine ("threads"): `threads` workers named thread_name + index.
std::unique_ptr<IoEngine> make_thread_pool_engine(int fd, unsigned threads, const std::string& thread_name,
                                                  std::function<void()> on_thread_start = {});

// Runs one op synchronously on the calling thread; returns 0 or -errno (does not call done).
int run_io_sync(int fd, IoOp& op);

}  // namespace vmm::virtio_blk
