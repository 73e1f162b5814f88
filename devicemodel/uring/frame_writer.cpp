// FrameWriter: see frame_writer.h.
#include "devicemodel/uring/frame_writer.h"

#include "common/log.h"
#include "devicemodel/uring/restricted_ring.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace vmm::uring {

#if __has_include(<liburing.h>)

namespace {

constexpr int kFile = 0;  // the registered fd's index

class RingFrameWriter final : public FrameWriter {
public:
    RingFrameWriter(Kind kind, Backpressure backpressure, unsigned depth)
        : kind_(kind), depth_(depth), linked_(backpressure == Backpressure::Possible), msgs_(depth) {}
    ~RingFrameWriter() override {
        if (ready_) close_restricted_ring(ring_);
    }

    const char* why_spent() const noexcept override { return spent_ ? spent_ : "not spent"; }
    bool linked() const noexcept override { return linked_; }

    int init(int fd) {
        const int files[] = {fd};
        // WRITE beside WRITEV: a frame in one buffer (Linux's virtio-net puts the header in the
        // frame's headroom: one descriptor) goes without an iovec to import.
        const std::uint8_t file_ops[] = {IORING_OP_WRITEV, IORING_OP_WRITE};
        // SEND beside SENDMSG likewise: no message header and no iovec to copy in (~30 ns of a
        // 64-byte frame's ~800 on a socketpair here, issue #3).
        const std::uint8_t socket_ops[] = {IORING_OP_SENDMSG, IORING_OP_SEND};
        const int r = kind_ == Kind::Writev ? setup_restricted_ring(ring_, depth_, files, file_ops)
                                            : setup_restricted_ring(ring_, depth_, files, socket_ops);
        ready_ = r == 0;
        return r;
    }

    std::optional<std::size_t> write(std::span<const std::span<const iovec>> frames, std::span<ssize_t> results) override {
        if (spent_) return std::nullopt;
        std::size_t done = 0;
        while (done < frames.size()) {
            const std::size_t n = std::min<std::size_t>(frames.size() - done, depth_);
            for (std::size_t i = 0; i < n; ++i) prepare(i, frames[done + i], i + 1 < n);
            const int submitted = io_uring_submit(&ring_);
            if (submitted < 0 || static_cast<std::size_t>(submitted) < n) {
                // The kernel took fewer than it was given (never seen: no memory for a request,
                // say). What it did not take stays in its queue, pointing at buffers the caller
                // will reuse, so this ring is spent: the frames it took are reaped below, the
                // next write() says nullopt and is never submitted again (the backend writes
                // frame by frame; the leftovers go with the ring when the backend does).
                logger("net")->warn("io_uring_submit took {} of {} frames; writing frames one by one from now on",
                                    submitted, n);
                spent_ = "the ring failed";
                if (submitted <= 0) return done == 0 ? std::nullopt : std::optional<std::size_t>(done);
            }
            // Each submission was asked not to wait, so each completes inside io_uring_enter;
            // a kernel that parked one anyway is waited for (still correct, only slower).
            std::size_t reaped = 0, stop = n;
            bool refused_here = false;
            res_.assign(n, -ECANCELED);
            while (reaped < static_cast<std::size_t>(submitted)) {
                // Every completion there is, then one store of the ring's head for all of them
                // (one io_uring_cqe_seen each was a release store to the kernel's cache line per
                // frame).
                unsigned head, seen = 0;
                io_uring_cqe* cqe = nullptr;
                io_uring_for_each_cqe(&ring_, head, cqe) {
                    if (cqe->user_data < n) res_[cqe->user_data] = cqe->res;
                    ++seen;
                }
                if (seen > 0) {
                    io_uring_cq_advance(&ring_, seen);
                    reaped += seen;
                    continue;
                }
                if (const int w = io_uring_wait_cqe(&ring_, &cqe); w < 0) {
                    if (w == -EINTR) continue;
                    // Never seen. What has no result counts as not written (it may still go
                    // out: a frame twice is what a network may do, a lost used entry is not).
                    logger("net")->error("io_uring_wait_cqe: {}", std::strerror(-w));
                    break;
                }
            }
            for (std::size_t i = 0; i < n; ++i) {
                const int r = res_[i];
                if (r == -EAGAIN) {
                    if (!written_after(i, n)) {  // the fd is full: this frame and those behind wait
                        stop = i;
                        break;
                    }
                    // Unlinked, the fd refused this frame and took a later one: sent now, it
                    // would arrive after that one. It is lost instead; link from now on.
                    logger("net")->warn("an fd said to be never full refused a frame for now and took a later one: "
                                        "that frame is dropped, and frames are linked from now on");
                    linked_ = true;
                }
                if (r == -ECANCELED) {  // behind a refused frame: not written, submit again
                    stop = i;
                    refused_here = i > 0;
                    break;
                }
                if (r == -EOPNOTSUPP && done + i == 0 && kind_ == Kind::Writev) {  // no RWF_NOWAIT here
                    spent_ = "the fd refuses RWF_NOWAIT";
                    return std::nullopt;
                }
                results[done + i] = r;
            }
            done += stop;
            if (spent_) return done;
            if (stop < n && !refused_here) return done;  // the fd is full
        }
        return done;
    }

private:
    // Whether a submission after i (of n) wrote its frame: only possible without links.
    bool written_after(std::size_t i, std::size_t n) const {
        return std::any_of(res_.begin() + static_cast<std::ptrdiff_t>(i) + 1, res_.begin() + static_cast<std::ptrdiff_t>(n),
                           [](int r) { return r >= 0; });
    }

    void prepare(std::size_t i, std::span<const iovec> frame, bool link) {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);  // never null: at most depth_ per submission
        const unsigned count = static_cast<unsigned>(std::min<std::size_t>(frame.size(), IOV_MAX));
        if (kind_ == Kind::Writev) {
            if (count == 1)
                io_uring_prep_write(s, kFile, frame[0].iov_base, static_cast<unsigned>(frame[0].iov_len), 0);
            else
                io_uring_prep_writev(s, kFile, frame.data(), count, 0);
            s->rw_flags = RWF_NOWAIT;
        } else if (count == 1) {
            io_uring_prep_send(s, kFile, frame[0].iov_base, frame[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            msgs_[i] = {};
            msgs_[i].msg_iov = const_cast<iovec*>(frame.data());  // sendmsg only reads it
            msgs_[i].msg_iovlen = count;
            io_uring_prep_sendmsg(s, kFile, &msgs_[i], MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE | (link && linked_ ? IOSQE_IO_LINK : 0));
        s->user_data = i;
    }

    const Kind kind_;
    const unsigned depth_;
    bool linked_;
    io_uring ring_{};
    bool ready_ = false;
    // Why no more writes go through this ring (the fd refused RWF_NOWAIT, or a short
    // submission left entries in it); nullptr while it is in use.
    const char* spent_ = nullptr;
    std::vector<msghdr> msgs_;  // SENDMSG: one header per submission of a batch
    std::vector<int> res_;      // a batch's results by submission, reused
};

}  // namespace

std::unique_ptr<FrameWriter> FrameWriter::create(int fd, Kind kind, Backpressure backpressure, unsigned depth) {
    auto w = std::make_unique<RingFrameWriter>(kind, backpressure, std::max(1u, depth));
    if (const int r = w->init(fd); r < 0) {
        logger("net")->info("io_uring unavailable for frame writes ({}): one system call per frame", std::strerror(-r));
        return nullptr;
    }
    return w;
}

#else

std::unique_ptr<FrameWriter> FrameWriter::create(int, Kind, Backpressure, unsigned) { return nullptr; }

#endif

}  // namespace vmm::uring
