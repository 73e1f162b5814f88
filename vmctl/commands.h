// vmctl's command line as a function, so tests run it without a process:
//   vmctl [--socket PATH] start MANIFEST.json [--restart P] | stop NAME [--force] [--timeout S]
//         | list [--json] | info NAME [--json] | console NAME | pause NAME | resume NAME
//         | delete NAME | host [--json] | pci ...
// Returns the exit status: 0 ok, 1 the request failed (the message names the manifest field
// or the domain), 64 usage, 69 vmmd unreachable. Runs on the caller's thread.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace vmm::vmctl {

// `args` without the program name. The socket defaults to $VMMD_SOCKET, else
// /run/hypervisor/vmmd.sock.
int run_vmctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace vmm::vmctl
