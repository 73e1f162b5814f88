#include "devicemodel/legacy/i8042.h"

#include "common/log.h"

namespace vmm::legacy {
namespace {

// Status register (port 0x64 read).
constexpr std::uint8_t kStatusObf = 0x01;   // output buffer full
constexpr std::uint8_t kStatusSys = 0x04;   // system flag, mirrors CTR bit 2
constexpr std::uint8_t kStatusA2 = 0x08;    // last write was to port 0x64
constexpr std::uint8_t kStatusInh = 0x10;   // 1 = keyboard not inhibited (keylock open)
constexpr std::uint8_t kStatusAuxb = 0x20;  // output buffer holds aux data

// Controller command byte.
constexpr std::uint8_t kCtrKbdInt = 0x01;
constexpr std::uint8_t kCtrSys = 0x04;
constexpr std::uint8_t kCtrKbdDis = 0x10;
constexpr std::uint8_t kCtrAuxDis = 0x20;
constexpr std::uint8_t kCtrXlate = 0x40;

// Output port.
constexpr std::uint8_t kOutResetLine = 0x01;  // 0 = CPU held in reset
constexpr std::uint8_t kOutA20 = 0x02;

// Commands (port 0x64 write).
constexpr std::uint8_t kCmdReadCtr = 0x20;
constexpr std::uint8_t kCmdWriteCtr = 0x60;
constexpr std::uint8_t kCmdAuxDisable = 0xa7;
constexpr std::uint8_t kCmdAuxEnable = 0xa8;
constexpr std::uint8_t kCmdAuxTest = 0xa9;
constexpr std::uint8_t kCmdSelfTest = 0xaa;
constexpr std::uint8_t kCmdKbdTest = 0xab;
constexpr std::uint8_t kCmdKbdDisable = 0xad;
constexpr std::uint8_t kCmdKbdEnable = 0xae;
constexpr std::uint8_t kCmdReadOutputPort = 0xd0;
constexpr std::uint8_t kCmdWriteOutputPort = 0xd1;
constexpr std::uint8_t kCmdWriteKbdOutput = 0xd2;
constexpr std::uint8_t kCmdWriteAuxOutput = 0xd3;
constexpr std::uint8_t kCmdWriteAux = 0xd4;
constexpr std::uint8_t kCmdPulseFirst = 0xf0;  // 0xf0..0xff: pulse output port bits 3..0 low

constexpr std::uint8_t kSelfTestOk = 0x55;
constexpr std::uint8_t kInterfaceOk = 0x00;

}  // namespace

I8042::I8042(std::function<void()> reset_request)
    : reset_request_(std::move(reset_request)),
      log_(vmm::logger("i8042")),
      // What a BIOS leaves after POST: keyboard interrupt on, system flag set, translation on.
      ctr_(kCtrKbdInt | kCtrSys | kCtrXlate),
      output_port_(kOutResetLine | kOutA20) {}

void I8042::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t reg = offset + i;
        if (reg == kDataOffset) {
            // Reading the data port empties the output buffer; an empty buffer reads stale.
            data[i] = output_;
            output_full_ = false;
            output_aux_ = false;
        } else if (reg == kCommandOffset) {
            data[i] = status_locked();
        } else {
            data[i] = 0xff;
        }
    }
}

void I8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool reset = false;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            const std::uint64_t reg = offset + i;
            if (reg == kDataOffset) {
                last_write_command_ = false;
                reset |= data_locked(data[i]);
            } else if (reg == kCommandOffset) {
                last_write_command_ = true;
                reset |= command_locked(data[i]);
            }
        }
    }
    if (reset) {
        log_->info("guest requested a CPU reset");
        if (reset_request_) reset_request_();
    }
}

std::uint8_t I8042::status_locked() const {
    std::uint8_t s = kStatusInh;  // input buffer never full: commands complete at once
    if (output_full_) s |= kStatusObf;
    if (output_full_ && output_aux_) s |= kStatusAuxb;
    if (ctr_ & kCtrSys) s |= kStatusSys;
    if (last_write_command_) s |= kStatusA2;
    return s;
}

void I8042::put_output_locked(std::uint8_t value, bool aux) {
    output_ = value;
    output_full_ = true;
    output_aux_ = aux;
}

bool I8042::command_locked(std::uint8_t cmd) {
    pending_.reset();  // a new command aborts one still waiting for data
    switch (cmd) {
    case kCmdReadCtr:
        put_output_locked(ctr_, false);
        return false;
    case kCmdWriteCtr:
    case kCmdWriteOutputPort:
    case kCmdWriteKbdOutput:
    case kCmdWriteAuxOutput:
    case kCmdWriteAux:
        pending_ = cmd;
        return false;
    case kCmdAuxDisable:
        ctr_ |= kCtrAuxDis;
        return false;
    case kCmdAuxEnable:
        ctr_ &= static_cast<std::uint8_t>(~kCtrAuxDis);
        return false;
    case kCmdSelfTest:
        // A passed self-test sets the system flag (QEMU does the same).
        ctr_ |= kCtrSys;
        put_output_locked(kSelfTestOk, false);
        return false;
    case kCmdAuxTest:
    case kCmdKbdTest:
        // The controller's clock and data lines are fine even with nothing plugged in.
        put_output_locked(kInterfaceOk, false);
        return false;
    case kCmdKbdDisable:
        ctr_ |= kCtrKbdDis;
        return false;
    case kCmdKbdEnable:
        ctr_ &= static_cast<std::uint8_t>(~kCtrKbdDis);
        return false;
    case kCmdReadOutputPort:
        put_output_locked(output_port_, false);
        return false;
    default:
        break;
    }
    if (cmd >= kCmdPulseFirst) {
        // 0xf0..0xff pulse the output-port bits whose command bit is 0; bit 0 is the reset
        // line, so 0xfe (and any even value) resets the CPU.
        return !(cmd & kOutResetLine);
    }
    log_->debug("unsupported command {:#04x}", cmd);
    return false;
}

bool I8042::data_locked(std::uint8_t value) {
    if (!pending_) {
        // A byte for the keyboard: none is attached.
        log_->debug("data {:#04x} for the absent keyboard dropped", value);
        return false;
    }
    const std::uint8_t cmd = *pending_;
    pending_.reset();
    switch (cmd) {
    case kCmdWriteCtr:
        ctr_ = value;
        return false;
    case kCmdWriteOutputPort:
        // Writing 0 to bit 0 holds the CPU in reset. A20 cannot be masked under KVM; note it.
        if (!(value & kOutA20)) log_->debug("guest cleared A20 (ignored)");
        output_port_ = value;
        if (!(value & kOutResetLine)) {
            output_port_ |= kOutResetLine;  // the reset takes the controller back to normal
            return true;
        }
        return false;
    case kCmdWriteKbdOutput:
        put_output_locked(value, false);
        return false;
    case kCmdWriteAuxOutput:
        put_output_locked(value, true);
        return false;
    case kCmdWriteAux:
        log_->debug("data {:#04x} for the absent aux device dropped", value);
        return false;
    }
    return false;
}

}  // namespace vmm::legacy
