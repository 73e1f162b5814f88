#include "devicemodel/legacy/cmos_rtc.h"

#include "common/error.h"
#include "common/log.h"

#include <algorithm>

namespace vmm::legacy {
namespace {

// MC146818A address map.
constexpr std::uint8_t kSeconds = 0x00;
constexpr std::uint8_t kMinutes = 0x02;
constexpr std::uint8_t kHours = 0x04;
constexpr std::uint8_t kWeekday = 0x06;
constexpr std::uint8_t kDay = 0x07;
constexpr std::uint8_t kMonth = 0x08;
constexpr std::uint8_t kYear = 0x09;
constexpr std::uint8_t kRegA = 0x0a;
constexpr std::uint8_t kRegB = 0x0b;
constexpr std::uint8_t kRegC = 0x0c;
constexpr std::uint8_t kRegD = 0x0d;
constexpr std::uint8_t kCentury = 0x32;  // IBM PC AT convention (ACPI FADT "CENTURY")

// Register A: UIP is bit 7 (read-only); DV2..0 and RS3..0 are writable.
constexpr std::uint8_t kRegAUip = 0x80;
constexpr std::uint8_t kRegADefault = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate
// Register B.
constexpr std::uint8_t kRegBSet = 0x80;
constexpr std::uint8_t kRegBUie = 0x10;
constexpr std::uint8_t kRegBBinary = 0x04;  // DM
constexpr std::uint8_t kRegB24h = 0x02;
// Register D: valid RAM and time.
constexpr std::uint8_t kRegDVrt = 0x80;

// Memory sizes (QEMU hw/i386/pc.c pc_cmos_init).
constexpr std::uint8_t kBaseMemLo = 0x15;
constexpr std::uint8_t kExtMemLo = 0x17;
constexpr std::uint8_t kExtMem2Lo = 0x30;
constexpr std::uint8_t kMemAbove16MLo = 0x34;
constexpr std::uint8_t kMemAbove4GLo = 0x5b;
constexpr std::uint8_t kCpuCount = 0x5f;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;

bool is_time_register(std::uint8_t index) {
    return index == kSeconds || index == kMinutes || index == kHours || index == kWeekday || index == kDay ||
           index == kMonth || index == kYear || index == kCentury;
}

std::uint8_t to_bcd(unsigned v) { return static_cast<std::uint8_t>(((v / 10) << 4) | (v % 10)); }
unsigned from_bcd(std::uint8_t v) { return (v >> 4) * 10u + (v & 0x0fu); }

}  // namespace

CmosRtc::CmosRtc(std::uint64_t low_ram_bytes, std::uint64_t high_ram_bytes, unsigned vcpus,
                 std::function<std::time_t()> clock)
    : clock_(std::move(clock)), log_(vmm::logger("rtc")) {
    if (vcpus == 0) throw Error("rtc: vcpus must be at least 1");
    if (!clock_) throw Error("rtc: no clock");
    nvram_[kRegA] = kRegADefault;
    nvram_[kRegB] = kRegB24h;
    nvram_[kRegD] = kRegDVrt;

    auto put16 = [this](std::uint8_t lo, std::uint64_t v) {
        nvram_[lo] = static_cast<std::uint8_t>(v);
        nvram_[lo + 1] = static_cast<std::uint8_t>(v >> 8);
    };
    put16(kBaseMemLo, std::min<std::uint64_t>(low_ram_bytes / kKiB, 640));
    const std::uint64_t ext = low_ram_bytes > kMiB ? std::min<std::uint64_t>((low_ram_bytes - kMiB) / kKiB, 0xffff) : 0;
    put16(kExtMemLo, ext);
    put16(kExtMem2Lo, ext);
    const std::uint64_t above16m =
        low_ram_bytes > 16 * kMiB ? std::min<std::uint64_t>((low_ram_bytes - 16 * kMiB) / (64 * kKiB), 0xffff) : 0;
    put16(kMemAbove16MLo, above16m);
    const std::uint64_t above4g = std::min<std::uint64_t>(high_ram_bytes / (64 * kKiB), 0xffffff);
    put16(kMemAbove4GLo, above4g);
    nvram_[kMemAbove4GLo + 2] = static_cast<std::uint8_t>(above4g >> 16);
    nvram_[kCpuCount] = static_cast<std::uint8_t>(std::min(vcpus - 1, 0xffu));
}

void CmosRtc::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        // The index port is write-only; reads float (QEMU returns 0xff too).
        data[i] = offset + i == 1 ? read_data_locked() : 0xff;
    }
}

void CmosRtc::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        if (offset + i == 0) {
            index_ = data[i] & 0x7f;  // bit 7 masks NMI on the PC: not modelled
        } else if (offset + i == 1) {
            write_data_locked(data[i]);
        }
    }
}

std::uint8_t CmosRtc::read_data_locked() {
    switch (index_) {
    case kRegA:
        return nvram_[kRegA] & static_cast<std::uint8_t>(~kRegAUip);
    case kRegC: {
        // Reading C clears its flags. No interrupt source is modelled, so this is 0.
        const std::uint8_t v = nvram_[kRegC];
        nvram_[kRegC] = 0;
        return v;
    }
    case kRegD:
        return kRegDVrt;
    default:
        break;
    }
    if (is_time_register(index_) && !(nvram_[kRegB] & kRegBSet)) latch_time_locked();
    return nvram_[index_];
}

void CmosRtc::write_data_locked(std::uint8_t value) {
    const bool running = !(nvram_[kRegB] & kRegBSet);
    if (is_time_register(index_)) {
        if (running) {
            // A write to a running clock takes effect at once (QEMU does the same): bring the
            // other time bytes up to date, then restart from all of them.
            latch_time_locked();
            nvram_[index_] = value;
            start_from_registers_locked();
        } else {
            nvram_[index_] = value;
        }
        return;
    }
    switch (index_) {
    case kRegA:
        nvram_[kRegA] = value & static_cast<std::uint8_t>(~kRegAUip);
        return;
    case kRegB:
        // SET stops updates and clears UIE (MC146818A, register B bits 7 and 4). Freeze the
        // time as of now in the format in force; on release, run on from what the guest wrote.
        if (value & kRegBSet) {
            value &= static_cast<std::uint8_t>(~kRegBUie);
            if (running) latch_time_locked();
            nvram_[kRegB] = value;
        } else {
            nvram_[kRegB] = value;
            if (!running) start_from_registers_locked();
        }
        return;
    case kRegC:
    case kRegD:
        return;  // read-only
    default:
        nvram_[index_] = value;
        return;
    }
}

void CmosRtc::latch_time_locked() {
    const std::time_t now = static_cast<std::time_t>(clock_() + offset_seconds_);
    std::tm tm{};
    if (!gmtime_r(&now, &tm)) return;
    const bool binary = nvram_[kRegB] & kRegBBinary;
    auto enc = [binary](unsigned v) { return binary ? static_cast<std::uint8_t>(v) : to_bcd(v); };

    nvram_[kSeconds] = enc(static_cast<unsigned>(tm.tm_sec));
    nvram_[kMinutes] = enc(static_cast<unsigned>(tm.tm_min));
    if (nvram_[kRegB] & kRegB24h) {
        nvram_[kHours] = enc(static_cast<unsigned>(tm.tm_hour));
    } else {
        // 12-hour mode: 1..12, bit 7 = PM.
        const unsigned h = static_cast<unsigned>(tm.tm_hour) % 12;
        nvram_[kHours] = static_cast<std::uint8_t>(enc(h == 0 ? 12 : h) | (tm.tm_hour >= 12 ? 0x80 : 0));
    }
    nvram_[kWeekday] = enc(static_cast<unsigned>(tm.tm_wday) + 1);  // 1 = Sunday
    nvram_[kDay] = enc(static_cast<unsigned>(tm.tm_mday));
    nvram_[kMonth] = enc(static_cast<unsigned>(tm.tm_mon) + 1);
    const unsigned year = static_cast<unsigned>(tm.tm_year + 1900);
    nvram_[kYear] = enc(year % 100);
    nvram_[kCentury] = enc(year / 100);
}

void CmosRtc::start_from_registers_locked() {
    const bool binary = nvram_[kRegB] & kRegBBinary;
    auto dec = [binary](std::uint8_t v) { return binary ? unsigned{v} : from_bcd(v); };

    std::tm tm{};
    tm.tm_sec = static_cast<int>(dec(nvram_[kSeconds]));
    tm.tm_min = static_cast<int>(dec(nvram_[kMinutes]));
    const std::uint8_t hours = nvram_[kHours];
    if (nvram_[kRegB] & kRegB24h) {
        tm.tm_hour = static_cast<int>(dec(hours));
    } else {
        tm.tm_hour = static_cast<int>(dec(hours & 0x7f) % 12 + ((hours & 0x80) ? 12 : 0));
    }
    tm.tm_mday = static_cast<int>(dec(nvram_[kDay]));
    tm.tm_mon = static_cast<int>(dec(nvram_[kMonth])) - 1;
    tm.tm_year = static_cast<int>(dec(nvram_[kCentury]) * 100 + dec(nvram_[kYear])) - 1900;
    const std::time_t guest = timegm(&tm);
    if (guest == static_cast<std::time_t>(-1)) {
        log_->debug("guest set an invalid time; clock unchanged");
        return;
    }
    offset_seconds_ = static_cast<std::int64_t>(guest) - static_cast<std::int64_t>(clock_());
    log_->debug("guest set the clock, offset {} s from the host", offset_seconds_);
}

}  // namespace vmm::legacy
