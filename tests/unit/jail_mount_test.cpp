// jail::enter_jail (jail/mount_jail.h) for real: each test forks a child that enters a jail
// built from files the test made, looks around from inside and reports what it saw, line by
// line, through a pipe; the parent checks the report and the host side. Needs root (mount and
// user-less namespaces); skips with the reason elsewhere. No KVM needed.
#include "jail/capabilities.h"
#include "jail/mount_jail.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// What the child saw: key -> value.
using Report = std::map<std::string, std::string>;

std::string errno_name(int err) {
    switch (err) {
        case 0: return "ok";
        case ENOENT: return "ENOENT";
        case EROFS: return "EROFS";
        case EACCES: return "EACCES";
        case EPERM: return "EPERM";
        default: return std::strerror(err);
    }
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) return "<" + errno_name(errno) + ">";
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// open(path, flags) in the child: "ok" or the errno's name.
std::string try_open(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0) return errno_name(errno);
    ::close(fd);
    return "ok";
}

// Runs `body` in a forked child; its report comes back as "key=value" lines.
Report in_child(const std::function<void(Report&)>& body) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return {{"error", "pipe"}};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        Report r;
        try {
            body(r);
        } catch (const std::exception& e) {
            r["error"] = e.what();
        }
        std::string out;
        for (const auto& [k, v] : r) out += k + "=" + v + "\n";
        const char* data = out.data();
        std::size_t left = out.size();
        while (left > 0) {
            const ssize_t n = ::write(p[1], data, left);
            if (n <= 0) break;
            data += n;
            left -= static_cast<std::size_t>(n);
        }
        ::_exit(0);
    }
    ::close(p[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    Report r;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) r[line.substr(0, eq)] = line.substr(eq + 1);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) r["child"] = "died";
    return r;
}

class MountJailTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root (mount namespaces, pivot_root, mknod)";
        // Can this process make a mount namespace at all (a container may forbid it)?
        const Report probe = in_child([](Report& r) {
            r["unshare"] = ::unshare(CLONE_NEWNS) == 0 ? "ok" : errno_name(errno);
        });
        if (probe.at("unshare") != "ok")
            GTEST_SKIP() << "this host refuses a new mount namespace (" << probe.at("unshare") << ")";
        dir_ = make_temp_dir("jail-mount");
        fs::create_directories(dir_ + "/data");
        std::ofstream(dir_ + "/data/disk.img") << "disk";
        std::ofstream(dir_ + "/data/ro.img") << "readonly";
        std::ofstream(dir_ + "/secret.txt") << "secret";
        fs::create_symlink("data/disk.img", dir_ + "/link.img");
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    jail::JailSpec spec() const {
        jail::JailSpec s;
        s.mountpoint = dir_ + "/jail-root";
        s.binds = {{dir_ + "/link.img", true, false, false},
                   {dir_ + "/data/ro.img", false, false, false},
                   {dir_ + "/state", true, false, true}};
        s.devices = {"/dev/null"};
        s.workdir = dir_ + "/data";
        s.new_network_namespace = true;
        s.keep = jail::cap_bit(CAP_NET_ADMIN);
        return s;
    }
    std::string dir_;
};

TEST_F(MountJailTest, TheJailHoldsOnlyWhatItWasGiven) {
    const std::string d = dir_;
    const Report r = in_child([&](Report& out) {
        out["inside.before"] = jail::inside_jail() ? "yes" : "no";
        jail::enter_jail(spec());
        out["inside"] = jail::inside_jail() ? "yes" : "no";
        // given: through the symlink (recreated), writable; and a read-only one
        out["link"] = read_file(d + "/link.img");
        out["disk.write"] = try_open(d + "/data/disk.img", O_WRONLY);
        out["ro.read"] = read_file(d + "/data/ro.img");
        out["ro.write"] = try_open(d + "/data/ro.img", O_WRONLY);
        // the same working directory: relative paths resolve as before
        out["relative"] = read_file("ro.img");
        // not given: a file next to them, the host's /etc, /proc, /sys
        out["secret"] = try_open(d + "/secret.txt", O_RDONLY);
        out["passwd"] = try_open("/etc/passwd", O_RDONLY);
        out["proc"] = try_open("/proc/self/status", O_RDONLY);
        out["sys"] = try_open("/sys/class", O_RDONLY | O_DIRECTORY);
        // the jail's own tree is read-only; the state directory is not
        out["root.create"] = try_open("/new-file", O_WRONLY | O_CREAT);
        out["state.create"] = try_open(d + "/state/pid", O_WRONLY | O_CREAT);
        // bind mounts are nosuid and (unless executable) noexec
        struct statvfs st{};
        ::statvfs((d + "/data/disk.img").c_str(), &st);
        out["disk.noexec"] = (st.f_flag & ST_NOEXEC) ? "yes" : "no";
        out["disk.nosuid"] = (st.f_flag & ST_NOSUID) ? "yes" : "no";
        // /dev/null: a node of the jail's own with the host's numbers
        struct stat null{};
        ::stat("/dev/null", &null);
        out["null"] = S_ISCHR(null.st_mode) ? std::to_string(major(null.st_rdev)) + ":" + std::to_string(minor(null.st_rdev)) : "missing";
        out["null.write"] = try_open("/dev/null", O_WRONLY);
        out["dev.kvm"] = try_open("/dev/kvm", O_RDWR);
        // namespaces: no network but loopback
        std::string ifs;
        if (auto* list = ::if_nameindex()) {
            for (auto* i = list; i->if_index != 0; ++i) ifs += std::string(ifs.empty() ? "" : ",") + i->if_name;
            ::if_freenameindex(list);
        }
        out["ifs"] = ifs;
        // privileges: the kept capability only, in every set; no new privileges
        const auto caps = jail::current_capabilities();
        out["cap.permitted"] = std::to_string(caps.permitted);
        out["cap.effective"] = std::to_string(caps.effective);
        out["bounding.sys_admin"] = jail::in_bounding_set(CAP_SYS_ADMIN) ? "yes" : "no";
        out["bounding.net_admin"] = jail::in_bounding_set(CAP_NET_ADMIN) ? "yes" : "no";
        out["nnp"] = std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
        out["uid"] = std::to_string(::getuid());
        // a later drop_capabilities (Machine::run's) finds nothing to do, without /proc
        std::thread t([] { ::pause(); });
        t.detach();
        jail::drop_capabilities(jail::cap_bit(CAP_NET_ADMIN));
        out["drop"] = "ok";
    });
    ASSERT_EQ(r.count("error"), 0u) << r.at("error");
    EXPECT_EQ(r.at("inside.before"), "no");
    EXPECT_EQ(r.at("inside"), "yes");
    EXPECT_EQ(r.at("link"), "disk");
    EXPECT_EQ(r.at("disk.write"), "ok");
    EXPECT_EQ(r.at("ro.read"), "readonly");
    EXPECT_EQ(r.at("ro.write"), "EROFS");
    EXPECT_EQ(r.at("relative"), "readonly");
    EXPECT_EQ(r.at("secret"), "ENOENT");
    EXPECT_EQ(r.at("passwd"), "ENOENT");
    EXPECT_EQ(r.at("proc"), "ENOENT");
    EXPECT_EQ(r.at("sys"), "ENOENT");
    EXPECT_EQ(r.at("root.create"), "EROFS");
    EXPECT_EQ(r.at("state.create"), "ok");
    EXPECT_EQ(r.at("disk.noexec"), "yes");
    EXPECT_EQ(r.at("disk.nosuid"), "yes");
    EXPECT_EQ(r.at("null"), "1:3");
    EXPECT_EQ(r.at("null.write"), "ok");
    EXPECT_EQ(r.at("dev.kvm"), "ENOENT");
    EXPECT_EQ(r.at("ifs"), "lo");
    EXPECT_EQ(r.at("cap.permitted"), std::to_string(jail::cap_bit(CAP_NET_ADMIN)));
    EXPECT_EQ(r.at("cap.effective"), std::to_string(jail::cap_bit(CAP_NET_ADMIN)));
    EXPECT_EQ(r.at("bounding.sys_admin"), "no");
    EXPECT_EQ(r.at("bounding.net_admin"), "yes");
    EXPECT_EQ(r.at("nnp"), "1");
    EXPECT_EQ(r.at("uid"), "0");
    EXPECT_EQ(r.at("drop"), "ok");
    // The host saw none of it: the mount point is an empty directory, the state directory
    // holds what the child made in it, the host's own files are untouched.
    EXPECT_TRUE(fs::is_empty(dir_ + "/jail-root"));
    EXPECT_TRUE(fs::exists(dir_ + "/state/pid"));
    EXPECT_EQ(fs::status(dir_ + "/state").permissions() & fs::perms::all, fs::perms::owner_all);
    EXPECT_EQ(read_file(dir_ + "/secret.txt"), "secret");
    EXPECT_FALSE(fs::exists("/new-file"));
}

TEST_F(MountJailTest, ADedicatedIdentityOwnsTheStateDirectoryAndTheDevicesAndKeepsItsCapabilityAcrossExec) {
    const std::string d = dir_;
    const Report r = in_child([&](Report& out) {
        auto s = spec();
        s.identity = jail::JailIdentity{65534, 65533};
        jail::enter_jail(s);
        out["uid"] = std::to_string(::getuid()) + "/" + std::to_string(::geteuid());
        out["gid"] = std::to_string(::getgid()) + "/" + std::to_string(::getegid());
        out["groups"] = std::to_string(::getgroups(0, nullptr));
        struct stat null{};
        ::stat("/dev/null", &null);
        out["null.owner"] = std::to_string(null.st_uid) + ":" + std::to_string(null.st_gid);
        out["state.create"] = try_open(d + "/state/qmp", O_WRONLY | O_CREAT);
        out["ro.read"] = read_file(d + "/data/ro.img");
        out["ro.write"] = try_open(d + "/data/ro.img", O_WRONLY);
        const auto caps = jail::current_capabilities();
        out["cap.permitted"] = std::to_string(caps.permitted);
        out["ambient.net_admin"] = std::to_string(::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_ADMIN, 0, 0));
        out["ambient.sys_admin"] = std::to_string(::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SYS_ADMIN, 0, 0));
    });
    ASSERT_EQ(r.count("error"), 0u) << r.at("error");
    EXPECT_EQ(r.at("uid"), "65534/65534");
    EXPECT_EQ(r.at("gid"), "65533/65533");
    EXPECT_EQ(r.at("groups"), "0");
    EXPECT_EQ(r.at("null.owner"), "65534:65533");
    EXPECT_EQ(r.at("state.create"), "ok");
    EXPECT_EQ(r.at("ro.read"), "readonly");
    EXPECT_NE(r.at("ro.write"), "ok") << "a root file, read-only mounted";
    EXPECT_EQ(r.at("cap.permitted"), std::to_string(jail::cap_bit(CAP_NET_ADMIN)));
    EXPECT_EQ(r.at("ambient.net_admin"), "1") << "kept across the restart's execve";
    EXPECT_EQ(r.at("ambient.sys_admin"), "0");
    struct stat st{};
    ASSERT_EQ(::stat((dir_ + "/state").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_gid, 65533u);
    struct stat host_null{};
    ASSERT_EQ(::stat("/dev/null", &host_null), 0);
    EXPECT_EQ(host_null.st_uid, 0u) << "the host's node is not touched";
}

// vmmd.service runs with UMask=0077, which the anchor inherits: the jail's directories on the
// way to a bound file must still let the jail's uid through (found under the packaged unit,
// tests/integration/package_systemd_l1.sh: "mkdir /run/hypervisor: Permission denied").
TEST_F(MountJailTest, ARestrictiveUmaskDoesNotLockTheJailsOwnUidOut) {
    const std::string d = dir_;
    const Report r = in_child([&](Report& out) {
        ::umask(077);
        auto s = spec();
        s.identity = jail::JailIdentity{65534, 65534};
        jail::enter_jail(s);
        struct stat parent{};
        out["parent.stat"] = ::stat(d.c_str(), &parent) == 0 ? "ok" : errno_name(errno);
        out["parent.mode"] = std::to_string(parent.st_mode & 07777);
        out["state.create"] = try_open(d + "/state/qmp", O_WRONLY | O_CREAT);
        out["ro.read"] = read_file(d + "/data/ro.img");
    });
    ASSERT_EQ(r.count("error"), 0u) << r.at("error");
    EXPECT_EQ(r.at("parent.stat"), "ok");
    EXPECT_EQ(r.at("parent.mode"), std::to_string(0755));
    EXPECT_EQ(r.at("state.create"), "ok");
    EXPECT_EQ(r.at("ro.read"), "readonly");
}

TEST_F(MountJailTest, AMultiThreadedProcessIsRefused) {
    const Report r = in_child([&](Report&) {
        std::thread t([] { ::pause(); });
        t.detach();
        jail::enter_jail(spec());
    });
    ASSERT_EQ(r.count("error"), 1u);
    EXPECT_THAT(r.at("error"), HasSubstr("single-threaded"));
    EXPECT_THAT(r.at("error"), HasSubstr("2 threads"));
}

TEST_F(MountJailTest, AMissingFileIsNamed) {
    const std::string d = dir_;
    const Report r = in_child([&](Report&) {
        auto s = spec();
        s.binds.push_back({d + "/data/missing.img", false, false, false});
        jail::enter_jail(s);
    });
    ASSERT_EQ(r.count("error"), 1u);
    EXPECT_THAT(r.at("error"), HasSubstr(dir_ + "/data/missing.img"));
    EXPECT_THAT(r.at("error"), HasSubstr("No such file"));
}

TEST_F(MountJailTest, ARelativeMountPointIsRefused) {
    const Report r = in_child([&](Report&) {
        auto s = spec();
        s.mountpoint = "jail-root";
        jail::enter_jail(s);
    });
    ASSERT_EQ(r.count("error"), 1u);
    EXPECT_THAT(r.at("error"), HasSubstr("not an absolute path"));
}

// vmm-anchor's jail options: wrong combinations are usage errors (64) that name the option;
// without /dev/kvm a jailed start fails naming it (70), before any guest exists.
TEST(AnchorJailOptionsTest, WrongCombinationsAreUsageErrors) {
    const std::string manifest = source_dir() + "/examples/hello.json";
    auto r = run_process({anchor_path(), "--manifest", manifest, "--jail-uid", "65534"}, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_status, 64);
    EXPECT_THAT(r.err, HasSubstr("--jail-uid and --jail-gid need --jail"));
    r = run_process({anchor_path(), "--manifest", manifest, "--jail", "--jail-gid", "65534"}, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_status, 64);
    EXPECT_THAT(r.err, HasSubstr("--jail-gid needs --jail-uid"));
}

TEST(AnchorJailOptionsTest, WithoutKvmTheJailedStartNamesTheMissingDevice) {
    if (::access("/dev/kvm", F_OK) == 0) GTEST_SKIP() << "/dev/kvm exists here: the domain would start";
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    const std::string dir = make_temp_dir("anchor-jail-nokvm");
    const std::string kernel = dir + "/k.bin";
    std::ofstream(kernel) << std::string(512, '\xf4');
    std::ofstream(dir + "/m.json") << R"({"name": "nokvm", "memory_mb": 16, "kernel": ")" << kernel
                                   << R"(", "flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"}})";
    const auto r = run_process({anchor_path(), "--manifest", dir + "/m.json", "--run-dir", dir + "/run", "--jail"},
                               std::chrono::seconds(30));
    EXPECT_EQ(r.exit_status, 70) << r.err;
    EXPECT_THAT(r.err, HasSubstr("jail: /dev/kvm: No such file or directory"));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace vmm::test
