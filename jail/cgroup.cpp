#include "jail/cgroup.h"

#include "common/error.h"
#include "common/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <thread>
#include <fstream>
#include <sstream>

namespace vmm::jail {

namespace {

// One write(2) per value: cgroupfs takes a value per write call.
void write_file(const std::string& path, const std::string& value) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw_errno("cgroup: open " + path);
    const ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) throw_errno("cgroup: write \"" + value + "\" to " + path);
    if (static_cast<std::size_t>(n) != value.size()) throw Error("cgroup: short write to " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw Error("cgroup: cannot read " + path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("cgroup: mkdir " + path);
}

bool lists_word(const std::string& text, const std::string& word) {
    std::istringstream s(text);
    std::string w;
    while (s >> w)
        if (w == word) return true;
    return false;
}

bool valid_component(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos;
}

}  // namespace

std::uint64_t anchor_memory_limit(std::uint64_t memory_mb, unsigned vcpus) {
    constexpr std::uint64_t kMiB = 1024 * 1024;
    // 64 MiB for the process (binary, libraries, heap, QMP, disk I/O buffers), 8 MiB per vCPU
    // (thread stack, kvm_run, exit buffers), and 2% of guest RAM (page tables of the RAM
    // mapping and KVM's own per-page structures).
    return memory_mb * kMiB + 64 * kMiB + std::uint64_t{vcpus} * 8 * kMiB + memory_mb * kMiB / 50;
}

std::string cpu_max_value(const CgroupLimits& limits) {
    const std::string period = std::to_string(limits.cpu_period_us);
    if (!limits.cpus) return "max " + period;
    if (!(*limits.cpus > 0) || !std::isfinite(*limits.cpus))
        throw Error("cgroup: cpu_quota must be a positive number of CPUs");
    // The kernel's minimum quota is 1 ms.
    const auto quota = std::max<std::uint64_t>(
        1000, static_cast<std::uint64_t>(std::llround(*limits.cpus * static_cast<double>(limits.cpu_period_us))));
    return std::to_string(quota) + " " + period;
}

std::string place_in_cgroup(const std::string& root, const std::string& parent, const std::string& name, pid_t pid,
                            const CgroupLimits& limits) {
    if (!valid_component(name)) throw Error("cgroup: bad domain cgroup name \"" + name + "\"");
    const std::string parent_path = root + "/" + parent;
    make_dir(parent_path);
    const std::string controllers = read_file(parent_path + "/cgroup.controllers");
    for (const char* c : {"cpu", "memory"})
        if (!lists_word(controllers, c))
            throw Error(std::string("cgroup: controller \"") + c + "\" is not available in " + parent_path +
                        " (cgroup.controllers: \"" + controllers.substr(0, controllers.find_last_not_of(" \n") + 1) +
                        "\"): the cgroup above it must enable it in cgroup.subtree_control, which cgroup v2 "
                        "allows only in a cgroup without processes (docs/SECURITY.md)");
    write_file(parent_path + "/cgroup.subtree_control", "+cpu +memory");

    const std::string path = parent_path + "/" + name;
    make_dir(path);
    write_file(path + "/cpu.max", cpu_max_value(limits));
    write_file(path + "/memory.max", limits.memory_max ? std::to_string(*limits.memory_max) : "max");
    write_file(path + "/cgroup.procs", std::to_string(pid));
    return path;
}

void remove_cgroup(const std::string& path) {
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) throw_errno("cgroup: rmdir " + path);
}

int move_children_along(pid_t pid, const std::string& root, const std::string& proc) {
    const std::string id = std::to_string(pid);
    std::ifstream children(proc + "/" + id + "/task/" + id + "/children");
    if (!children) return 0;
    const std::string target = cgroup_of(pid, proc);
    int moved = 0;
    for (pid_t child = 0; children >> child;) {
        std::string now;
        try {
            now = cgroup_of(child, proc);
        } catch (const std::exception&) {
            continue;  // it has exited meanwhile
        }
        if (now == target) continue;
        write_file(root + target + "/cgroup.procs", std::to_string(child));
        ++moved;
    }
    return moved;
}

int move_children_along_once_in(pid_t pid, const std::string& cgroup, const std::string& root,
                                std::chrono::milliseconds timeout, const std::string& proc) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (std::string now = cgroup_of(pid, proc); now != cgroup; now = cgroup_of(pid, proc)) {
        if (std::chrono::steady_clock::now() >= deadline)
            throw Error("cgroup: pid " + std::to_string(pid) + " is still in " + now + ", not " + cgroup + ", after " +
                        std::to_string(timeout.count()) + " ms");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return move_children_along(pid, root, proc);
}

std::string cgroup_of(pid_t pid, const std::string& proc) {
    const std::string file = proc + "/" + std::to_string(pid) + "/cgroup";
    std::istringstream lines(read_file(file));
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    throw Error("cgroup: no cgroup v2 entry (0::) in " + file);
}

}  // namespace vmm::jail
