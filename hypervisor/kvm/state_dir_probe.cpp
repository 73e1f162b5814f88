#include "hypervisor/kvm/state_dir_probe.h"

#include "common/fd.h"
#include "run/state_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace vmm::hv::kvm {

namespace {

Fd open_dir(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return Fd(fd);
}

}  // namespace

StateDirProbe probe_state_dir(const std::string& path) {
    StateDirProbe p;
    Fd dir = open_dir(path);
    if (!dir) return p;
    p.exists = true;
    p.pid = run::read_pid_file(path);
    if (::flock(dir.get(), LOCK_EX | LOCK_NB) < 0) {
        p.live = errno == EWOULDBLOCK;
    } else {
        ::flock(dir.get(), LOCK_UN);
    }
    return p;
}

bool clean_stale_state_dir(const std::string& path) {
    Fd dir = open_dir(path);
    if (!dir) return true;
    if (::flock(dir.get(), LOCK_EX | LOCK_NB) < 0) return false;
    for (const auto& f : run::StateDir::known_files()) ::unlink((path + "/" + f).c_str());
    ::rmdir(path.c_str());  // fails harmlessly when foreign files remain
    return true;             // the lock goes with `dir`
}

}  // namespace vmm::hv::kvm
