// ScriptedVcpu: a Vcpu that replays the port/MMIO accesses a driver makes, so the anchor's
// exit handling, buses and devices run without KVM (STYLE.md). Reads are completed the way
// KVM completes an IN/MMIO load: the handler fills the exit's data, and the value is recorded
// when the vCPU "resumes" (the next run()).
#pragma once

#include "kvm/vcpu.h"

#include <array>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace vmm::test {

struct Step {
    VcpuExit::Kind kind = VcpuExit::Kind::Io;
    std::uint64_t addr = 0;
    std::uint32_t size = 1;
    bool is_write = false;
    std::vector<std::uint8_t> bytes;  // write data (size*count bytes)
    std::uint32_t count = 1;
    std::uint64_t detail = 0;
    bool block_until_kicked = false;  // a vCPU spinning in the guest until the host kicks it
    bool throw_host_error = false;    // run() fails like a broken KVM_RUN

    static Step out(std::uint16_t port, std::uint64_t value, std::uint32_t size = 1) {
        Step s;
        s.addr = port;
        s.size = size;
        s.is_write = true;
        for (std::uint32_t i = 0; i < size; ++i) s.bytes.push_back(std::uint8_t(value >> (8 * i)));
        return s;
    }
    static Step in(std::uint16_t port, std::uint32_t size = 1) {
        Step s;
        s.addr = port;
        s.size = size;
        return s;
    }
    static Step outs(std::uint16_t port, const std::string& text) {
        Step s;
        s.addr = port;
        s.size = 1;
        s.count = static_cast<std::uint32_t>(text.size());
        s.is_write = true;
        s.bytes.assign(text.begin(), text.end());
        return s;
    }
    static Step mmio_read(std::uint64_t gpa, std::uint32_t size) {
        Step s = in(0, size);
        s.kind = VcpuExit::Kind::Mmio;
        s.addr = gpa;
        return s;
    }
    static Step exit(VcpuExit::Kind kind, std::uint64_t detail = 0) {
        Step s;
        s.kind = kind;
        s.detail = detail;
        return s;
    }
    static Step spin() {
        Step s;
        s.block_until_kicked = true;
        return s;
    }
    static Step host_failure() {
        Step s;
        s.throw_host_error = true;
        return s;
    }
};

class ScriptedVcpu : public Vcpu {
public:
    ScriptedVcpu(unsigned index, std::vector<Step> steps) : index_(index), steps_(std::move(steps)) {}

    unsigned index() const override { return index_; }

    VcpuExit run() override {
        complete_pending_read();
        std::unique_lock lock(mutex_);
        if (kicked_) {
            kicked_ = false;
            return interrupted();
        }
        if (next_ >= steps_.size()) throw std::runtime_error("scripted vcpu ran past the end of its script");
        const Step& s = steps_[next_++];
        if (s.throw_host_error) throw std::system_error(EFAULT, std::generic_category(), "KVM_RUN (scripted)");
        if (s.block_until_kicked) {
            spinning_ = true;
            cv_.notify_all();
            cv_.wait(lock, [this] { return kicked_; });
            spinning_ = false;
            kicked_ = false;
            return interrupted();
        }
        VcpuExit e;
        e.kind = s.kind;
        e.detail = s.detail;
        if (s.kind == VcpuExit::Kind::Io || s.kind == VcpuExit::Kind::Mmio) {
            e.addr = s.addr;
            e.size = s.size;
            e.count = s.count;
            e.is_write = s.is_write;
            buf_.assign(std::size_t(s.size) * s.count, 0);
            if (s.is_write) buf_ = s.bytes;
            e.data = std::span<std::uint8_t>(buf_.data(), buf_.size());
            pending_read_ = !s.is_write;
        }
        return e;
    }

    void kick() override {
        std::lock_guard lock(mutex_);
        kicked_ = true;
        cv_.notify_all();
    }

    std::string describe_state() override { return "scripted vcpu" + std::to_string(index_) + " rip=step" + std::to_string(next_); }

    // Values the guest read, in order (little-endian, up to 8 bytes each).
    const std::vector<std::uint64_t>& reads() {
        complete_pending_read();
        return reads_;
    }
    std::size_t steps_run() {
        std::lock_guard lock(mutex_);
        return next_;
    }
    // Blocks until the vCPU spins in the guest on the spin() that is step `steps` of its script
    // (1-based, as steps_run() counts), so a test can act on a vCPU known to be inside "KVM_RUN".
    void wait_spinning_after(std::size_t steps) {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return spinning_ && next_ == steps; });
    }

private:
    VcpuExit interrupted() {
        VcpuExit e;
        e.kind = VcpuExit::Kind::Interrupted;
        return e;
    }
    void complete_pending_read() {
        std::lock_guard lock(mutex_);
        if (!pending_read_) return;
        pending_read_ = false;
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < buf_.size() && i < 8; ++i) v |= std::uint64_t(buf_[i]) << (8 * i);
        reads_.push_back(v);
    }

    unsigned index_;
    std::vector<Step> steps_;
    std::size_t next_ = 0;
    std::vector<std::uint8_t> buf_;
    bool pending_read_ = false;
    std::vector<std::uint64_t> reads_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool kicked_ = false;
    bool spinning_ = false;
};

}  // namespace vmm::test
