// vmctl dump NAME FILE: a kvm domain's guest memory as an ELF core, written by its anchor
// (QMP dump-guest-memory, as `virsh dump` does for libvirt). vmctl opens FILE itself and passes
// the descriptor to the anchor (QMP getfd, SCM_RIGHTS), so a jailed anchor writes where it could
// not open a path, and FILE is made with the rights of whoever runs vmctl.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <ostream>
#include <string>

namespace vmm::vmctl {

struct DumpRequest {
    std::string file;
    bool overwrite = false;  // an existing regular FILE is refused without it
    std::chrono::seconds timeout{600};
};

// `domain` is vmmd's info for it (name, hypervisor, state, state_dir). Prints the outcome and
// returns vmctl's exit status (0, or 1 with the reason on `err`). A FILE vmctl created is removed
// again when the dump fails; an existing FIFO or device is written to as it is.
int dump_domain(const nlohmann::json& domain, const DumpRequest& request, std::ostream& out, std::ostream& err);

}  // namespace vmm::vmctl
