#include "tests/support/test_paths.h"

#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace vmm::test {

std::string source_dir() { return VMM_SOURCE_DIR; }
std::string build_dir() { return VMM_BUILD_DIR; }
std::string guest_path(const std::string& file) { return build_dir() + "/tests/guests/" + file; }
std::string anchor_path() { return build_dir() + "/anchor/vmm-anchor"; }

std::string real_bzimage_path() {
    std::string p = std::getenv("VMM_TEST_BZIMAGE") ? std::getenv("VMM_TEST_BZIMAGE")
                                                     : source_dir() + "/tests/fixtures/downloaded/vmlinuz";
    return ::access(p.c_str(), R_OK) == 0 ? p : "";
}

std::string kvm_unavailable_reason() {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) return std::string("/dev/kvm is not usable here (") + std::strerror(errno) + "): this test needs KVM";
    ::close(fd);
    return {};
}

std::string make_temp_dir(const std::string& prefix) {
    std::string tmpl = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + std::string("/") + prefix + "XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
    return tmpl;
}

std::string find_tool(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        const std::string p = dir + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

}  // namespace vmm::test
