#include "devicemodel/bus/io_bus.h"

#include "common/error.h"

#include <cstdio>
#include <mutex>

namespace vmm {

void IoBus::insert(std::uint64_t base, std::uint64_t len, std::shared_ptr<BusDevice> device) {
    char where[64];
    std::snprintf(where, sizeof where, "[0x%llx, +0x%llx)", static_cast<unsigned long long>(base),
                  static_cast<unsigned long long>(len));
    if (len == 0 || base + len < base) throw Error(name_ + ": bad range " + where);
    std::unique_lock lock(mutex_);
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->first < base + len) throw Error(name_ + ": range " + where + " overlaps another device");
    if (next != ranges_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.len > base) throw Error(name_ + ": range " + where + " overlaps another device");
    }
    ranges_.emplace(base, Range{len, std::move(device)});
}

bool IoBus::remove(std::uint64_t base) {
    std::unique_lock lock(mutex_);
    return ranges_.erase(base) > 0;
}

std::shared_ptr<BusDevice> IoBus::find(std::uint64_t addr, std::uint64_t size, std::uint64_t& offset) const {
    std::shared_lock lock(mutex_);
    auto it = ranges_.upper_bound(addr);
    if (it == ranges_.begin()) return nullptr;
    --it;
    offset = addr - it->first;
    if (offset >= it->second.len || size > it->second.len - offset) return nullptr;
    return it->second.device;  // shared_ptr copy keeps the device alive across a concurrent remove
}

bool IoBus::read(std::uint64_t addr, std::span<std::uint8_t> data) const {
    std::uint64_t offset = 0;
    auto dev = find(addr, data.size(), offset);
    if (!dev) {
        for (auto& b : data) b = 0xff;
        return false;
    }
    dev->read(offset, data);
    return true;
}

bool IoBus::write(std::uint64_t addr, std::span<const std::uint8_t> data) const {
    std::uint64_t offset = 0;
    auto dev = find(addr, data.size(), offset);
    if (!dev) return false;
    dev->write(offset, data);
    return true;
}

}  // namespace vmm
