// Paths tests need: the source tree, the build tree, built test guests and binaries.
#pragma once

#include <string>

namespace vmm::test {

std::string source_dir();
std::string build_dir();
// A built test guest, e.g. guest_path("hello.bin") -> <build>/tests/guests/hello.bin
std::string guest_path(const std::string& file);
// The built vmm-anchor binary.
std::string anchor_path();
// A real distribution bzImage: $VMM_TEST_BZIMAGE, else the one scripts/fetch-test-kernel
// downloads (tests/fixtures/downloaded/vmlinuz). Empty if neither exists.
std::string real_bzimage_path();
// Empty if /dev/kvm is usable, else the reason it is not (for GTEST_SKIP).
std::string kvm_unavailable_reason();
// A fresh temporary directory, removed by the caller (or left in /tmp on failure).
std::string make_temp_dir(const std::string& prefix);
// The executable `name` in $PATH (or /usr/bin:/bin), "" when there is none.
std::string find_tool(const std::string& name);

}  // namespace vmm::test
