#include "jail/mount_jail.h"

#include "common/error.h"
#include "common/small_file.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <set>

namespace vmm::jail {

namespace {

std::vector<std::string> components(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < path.size()) {
        const std::size_t j = path.find('/', i);
        const std::size_t end = j == std::string::npos ? path.size() : j;
        if (end > i) parts.push_back(path.substr(i, end - i));
        i = end + 1;
    }
    return parts;
}

std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string read_link(const std::string& path) {
    std::string target(4096, '\0');
    const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0) throw_errno("jail: readlink " + path);
    target.resize(static_cast<std::size_t>(n));
    return target;
}

// A new directory gets exactly `mode`: the caller's umask (vmmd.service has UMask=0077) must not
// close the jail's path to a bound file for the jail's own uid.
void make_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0) {
        if (errno == EEXIST) return;
        throw_errno("jail: mkdir " + path);
    }
    if (::chmod(path.c_str(), mode) != 0) throw_errno("jail: chmod " + path);
}

unsigned long mount_flags_of(const std::string& path) {
    struct statvfs st{};
    if (::statvfs(path.c_str(), &st) != 0) throw_errno("jail: statvfs " + path);
    unsigned long flags = 0;
    if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    if (st.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    return flags;
}

// Builds the jail's tree under `root` (the tmpfs, seen from the host's paths).
class JailTree {
public:
    explicit JailTree(std::string root) : root_(std::move(root)) {}

    // Makes `path` resolve inside the jail as it does on the host: each directory on the way
    // exists, each symlink on the way is recreated with the same target. Returns the host path
    // of the object it names (no symlinks left).
    std::string mirror(const std::string& path) {
        if (path.empty() || path[0] != '/') throw Error("jail: \"" + path + "\" is not an absolute path");
        std::deque<std::string> rest;
        for (auto& c : components(path)) rest.push_back(c);
        std::string done;  // resolved so far, "" = "/"
        int links = 0;
        while (!rest.empty()) {
            const std::string c = rest.front();
            rest.pop_front();
            if (c == ".") continue;
            if (c == "..") {
                done = parent_of(done);
                continue;
            }
            const std::string host = done + "/" + c;
            struct stat st{};
            if (::lstat(host.c_str(), &st) != 0) throw_errno("jail: " + host + (host == path ? "" : " (for " + path + ")"));
            if (S_ISLNK(st.st_mode)) {
                if (++links > 40) throw Error("jail: too many symbolic links in " + path);
                const std::string target = read_link(host);
                if (::symlink(target.c_str(), (root_ + host).c_str()) != 0 && errno != EEXIST)
                    throw_errno("jail: symlink " + host);
                const auto parts = components(target);
                rest.insert(rest.begin(), parts.begin(), parts.end());
                if (!target.empty() && target[0] == '/') done.clear();
                continue;
            }
            if (!rest.empty()) {
                if (!S_ISDIR(st.st_mode)) throw Error("jail: " + host + " (for " + path + ") is not a directory");
                make_dir(root_ + host, 0755);
            }
            done = host;
        }
        return done.empty() ? "/" : done;
    }

    void bind(const JailBind& b) {
        const std::string host = mirror(b.host_path);
        if (!bound_.insert(host).second) return;  // named twice (the first one's flags stay)
        const std::string target = root_ + host;
        struct stat st{};
        if (::stat(host.c_str(), &st) != 0) throw_errno("jail: " + host);
        if (S_ISDIR(st.st_mode)) {
            make_dir(target, 0755);
        } else {
            const int fd = ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
            if (fd < 0) throw_errno("jail: create " + target);
            ::close(fd);
        }
        if (::mount(host.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
            throw_errno("jail: bind mount " + host);
        // A bind mount takes the source mount's flags; the remount adds ours to them.
        unsigned long flags = mount_flags_of(target) | MS_BIND | MS_REMOUNT | MS_NOSUID;
        if (!b.writable) flags |= MS_RDONLY;
        if (!b.executable) flags |= MS_NOEXEC;
        if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0)
            throw_errno("jail: remount " + host + (b.writable ? "" : " read-only"));
    }

    // A character device node with the host's numbers and permission bits.
    void device(const std::string& path, const std::optional<JailIdentity>& who) {
        const std::string host = mirror(path);
        struct stat st{};
        if (::stat(host.c_str(), &st) != 0) throw_errno("jail: " + host);
        if (!S_ISCHR(st.st_mode)) throw Error("jail: " + host + " is not a character device");
        const std::string target = root_ + host;
        if (::mknod(target.c_str(), S_IFCHR | (st.st_mode & 0777), st.st_rdev) != 0 && errno != EEXIST)
            throw_errno("jail: mknod " + host);
        // The umask must not narrow it; the owner is the jail's identity (or the host's owner).
        if (::chmod(target.c_str(), st.st_mode & 0777) != 0) throw_errno("jail: chmod " + host);
        const uid_t uid = who ? who->uid : st.st_uid;
        const gid_t gid = who ? who->gid : st.st_gid;
        if (::chown(target.c_str(), uid, gid) != 0) throw_errno("jail: chown " + host);
    }

    // A directory at `path` (its host path resolved as mirror() does): the bound one, or an
    // empty one of the jail's own.
    std::string directory(const std::string& path) {
        const std::string host = mirror(path);
        make_dir(root_ + host, 0755);
        return host;
    }

    void marker() {
        static constexpr char kText[] = "vmm-anchor jail\n";
        Fd out(::open((root_ + kJailMarker).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!out || ::write(out.get(), kText, sizeof kText - 1) != static_cast<ssize_t>(sizeof kText - 1))
            throw_errno(std::string("jail: cannot write ") + kJailMarker);
    }

private:
    std::string root_;
    std::set<std::string> bound_;
};

int thread_count() {
    const auto status = read_small_file("/proc/self/status", 16384);
    if (!status) return -1;
    const auto at = status->find("\nThreads:");
    if (at == std::string::npos) return -1;
    return std::atoi(status->c_str() + at + 9);
}

void create_host_dir(const std::string& path, const std::optional<JailIdentity>& who) {
    const auto parts = components(path);
    std::string partial;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        partial += "/" + parts[i];
        make_dir(partial, i + 1 == parts.size() ? 0700 : 0755);
    }
    if (who && ::chown(path.c_str(), who->uid, who->gid) != 0) throw_errno("jail: chown " + path);
}

// Single-threaded, so plain per-thread calls reach the whole process.
void lower_privileges(const JailSpec& spec) {
    const int last = last_capability();
    // The bounding set first, while CAP_SETPCAP is still effective.
    for (int cap = 0; cap <= last; ++cap) {
        if (spec.keep & cap_bit(cap)) continue;
        if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) throw_errno("jail: dropping capability " + std::to_string(cap) + " from the bounding set");
    }
    if (spec.identity) {
        // Permitted capabilities survive the uid change (KEEPCAPS); effective ones are set below.
        if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) throw_errno("jail: PR_SET_KEEPCAPS");
        if (::setgroups(0, nullptr) != 0) throw_errno("jail: setgroups");
        if (::setresgid(spec.identity->gid, spec.identity->gid, spec.identity->gid) != 0)
            throw_errno("jail: setresgid " + std::to_string(spec.identity->gid));
        if (::setresuid(spec.identity->uid, spec.identity->uid, spec.identity->uid) != 0)
            throw_errno("jail: setresuid " + std::to_string(spec.identity->uid));
        if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) throw_errno("jail: PR_SET_KEEPCAPS");
    }
    const CapMask kept = current_capabilities().permitted & spec.keep;
    // A non-root identity loses its capabilities at execve unless they are ambient: the kept
    // ones are (inheritable + ambient), so a restarted anchor has what the first one had.
    const bool ambient = spec.identity && spec.identity->uid != 0;
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    for (int i = 0; i < 2; ++i) {
        const auto word = static_cast<__u32>(kept >> (32 * i));
        data[i].effective = word;
        data[i].permitted = word;
        data[i].inheritable = ambient ? word : 0;
    }
    if (::syscall(SYS_capset, &header, data) != 0) throw_errno("jail: capset");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        throw_errno("jail: clearing ambient capabilities");
    if (ambient) {
        for (int cap = 0; cap <= last; ++cap)
            if ((kept & cap_bit(cap)) && ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0)
                throw_errno("jail: raising ambient capability " + std::to_string(cap));
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("jail: PR_SET_NO_NEW_PRIVS");
}

}  // namespace

bool inside_jail() {
    struct stat st{};
    return std::getenv(kJailEnvMarker) != nullptr && ::lstat(kJailMarker, &st) == 0 && S_ISREG(st.st_mode) &&
           ::lstat("/proc/self", &st) != 0;
}

void enter_jail(const JailSpec& spec) {
    if (const int n = thread_count(); n != 1)
        throw Error("jail: the process must be single-threaded to enter the jail (" +
                    (n < 0 ? std::string("/proc/self/status is unreadable") : "it has " + std::to_string(n) + " threads") +
                    ")");
    if (spec.mountpoint.empty() || spec.mountpoint[0] != '/')
        throw Error("jail: the mount point \"" + spec.mountpoint + "\" is not an absolute path");
    for (const auto& b : spec.binds)
        if (b.create_dir) create_host_dir(b.host_path, spec.identity);
    create_host_dir(spec.mountpoint, std::nullopt);

    int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (spec.new_network_namespace) flags |= CLONE_NEWNET;
    if (::unshare(flags) != 0) throw_errno("jail: unshare (new mount/IPC/UTS" + std::string(spec.new_network_namespace ? "/network" : "") + " namespaces)");
    // Nothing done here propagates back to the host, and nothing from it comes in.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) throw_errno("jail: making / private");

    const std::string& root = spec.mountpoint;
    if (::mount("vmm-jail", root.c_str(), "tmpfs", MS_NOSUID, "size=1m,nr_inodes=4096,mode=0755") != 0)
        throw_errno("jail: mounting the jail's tmpfs on " + root);
    JailTree tree(root);
    for (const auto& b : spec.binds) tree.bind(b);
    make_dir(root + "/dev", 0755);
    for (const auto& d : spec.devices) tree.device(d, spec.identity);
    tree.marker();
    const std::string workdir = spec.workdir.empty() ? "/" : tree.directory(spec.workdir);

    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the jail.
    if (::chdir(root.c_str()) != 0) throw_errno("jail: chdir " + root);
    if (::syscall(SYS_pivot_root, ".", ".") != 0) throw_errno("jail: pivot_root " + root);
    if (::umount2(".", MNT_DETACH) != 0) throw_errno("jail: detaching the old root");
    if (::chdir("/") != 0) throw_errno("jail: chdir /");
    if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, nullptr) != 0)
        throw_errno("jail: remounting the jail's root read-only");
    if (::chdir(workdir.c_str()) != 0) throw_errno("jail: chdir " + workdir);

    lower_privileges(spec);
    if (::setenv(kJailEnvMarker, "1", 1) != 0) throw_errno("jail: setenv");
}

}  // namespace vmm::jail
