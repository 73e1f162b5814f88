// seccomp_refused: whether this kernel (or the sandbox the tests run in) refuses to load the
// anchor's seccomp filter, for tests to skip with the reason. Tests that load filters run them
// in a forked child (child_process.h); so does this probe.
#pragma once

#include "jail/seccomp_policy.h"
#include "tests/support/child_process.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace vmm::test {

// "" when the anchor's filter loads; else why not (skip). Any other failure of the probe is a
// test failure (and "" is returned so that the test runs and shows it too).
inline std::string seccomp_refused() {
    const ChildResult probe = run_in_child([] {
        ::unsetenv(jail::kSeccompEnvMarker);
        jail::install_anchor_seccomp(jail::SeccompMode::Enforce);
        return 0;
    });
    if (probe.status == 101 && probe.out.find("seccomp_load") != std::string::npos)
        return "this kernel or sandbox refuses seccomp filters: " + probe.out;
    EXPECT_TRUE(probe.exited && probe.status == 0) << probe.out;
    return "";
}

}  // namespace vmm::test
