// Error policy (docs/ARCHITECTURE.md): setup failures throw; std::system_error carries errno,
// vmm::Error carries a plain message. Guest mistakes are never exceptions.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace vmm {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_errno(const std::string& what, int err = errno) {
    throw std::system_error(err, std::generic_category(), what);
}

}  // namespace vmm
