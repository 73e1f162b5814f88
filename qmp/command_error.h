// CommandError: a QMP error reply, {"error": {"class": C, "desc": D}} (qmp-spec, "Error").
// A QmpDomain implementation throws it from a command; the server turns it into the error
// reply, and QmpClient::execute throws it when the peer answers with one. Any thread.
#pragma once

#include <stdexcept>
#include <string>

namespace vmm::qmp {

// The error classes QEMU still uses (qapi/error.json, QapiErrorClass).
inline constexpr const char* kGenericError = "GenericError";
inline constexpr const char* kCommandNotFound = "CommandNotFound";
inline constexpr const char* kDeviceNotActive = "DeviceNotActive";
inline constexpr const char* kDeviceNotFound = "DeviceNotFound";
inline constexpr const char* kKvmMissingCap = "KVMMissingCap";

class CommandError : public std::runtime_error {
public:
    CommandError(std::string error_class, std::string desc)
        : std::runtime_error(error_class + ": " + desc),
          error_class_(std::move(error_class)),
          desc_(std::move(desc)) {}

    const std::string& error_class() const noexcept { return error_class_; }
    const std::string& desc() const noexcept { return desc_; }

private:
    std::string error_class_;
    std::string desc_;
};

}  // namespace vmm::qmp
