#include "run/state_dir.h"

#include "common/error.h"
#include "common/small_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace vmm::run {

namespace {

void mkdir_p(const std::string& dir, mode_t mode) {
    std::string partial;
    for (std::size_t i = 0; i <= dir.size(); ++i) {
        if (i == dir.size() || (dir[i] == '/' && i > 0)) {
            partial = dir.substr(0, i);
            if (::mkdir(partial.c_str(), mode) < 0 && errno != EEXIST) throw_errno("mkdir " + partial);
        }
    }
}

}  // namespace

const std::vector<std::string>& StateDir::known_files() {
    static const std::vector<std::string> files = {"pid", "pid.tmp", "cons", "qmp", "listener.qmp", "console.log", "console.log.0"};
    return files;
}

int read_pid_file(const std::string& dir) {
    const auto pid = read_small_number(dir + "/pid");
    return pid && *pid <= 0x7fffffff ? static_cast<int>(*pid) : -1;
}

StateDir::StateDir(const std::string& run_dir, const std::string& hypervisor, const std::string& name) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw Error("invalid domain name '" + name + "' for a state directory");
    const std::string parent = run_dir + "/" + hypervisor;
    mkdir_p(parent, 0755);
    path_ = parent + "/" + name;
    if (::mkdir(path_.c_str(), 0700) == 0) {
        created_dir_ = true;
    } else if (errno != EEXIST) {
        throw_errno("mkdir " + path_);
    }
    dir_fd_ = open_fd(path_.c_str(), O_RDONLY | O_DIRECTORY);
    if (::flock(dir_fd_.get(), LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            const int pid = read_pid_file(path_);
            throw Error("domain '" + name + "' is already running" +
                        (pid > 0 ? " (anchor pid " + std::to_string(pid) + ")" : "") + "; its state directory is " +
                        path_);
        }
        throw_errno("flock " + path_);
    }
    if (!created_dir_) {
        // The lock was free: whatever an earlier anchor left here is stale.
        for (const auto& f : known_files()) ::unlink((path_ + "/" + f).c_str());
        ::chmod(path_.c_str(), 0700);
    }
}

StateDir::~StateDir() {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) ::unlink(file(*it).c_str());
    if (created_dir_) ::rmdir(path_.c_str());  // fails harmlessly if someone else put files here
}

void StateDir::adopt(const std::string& leaf) {
    if (std::find(created_.begin(), created_.end(), leaf) == created_.end()) created_.push_back(leaf);
}

void StateDir::write_pid(int pid) {
    const std::string tmp = file("pid.tmp");
    {
        Fd fd = open_fd(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const std::string text = std::to_string(pid) + "\n";
        if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) throw_errno("write " + tmp);
    }
    if (::rename(tmp.c_str(), file("pid").c_str()) < 0) throw_errno("rename " + tmp);
    adopt("pid");
}

void StateDir::link_console(const std::string& pty_path) {
    const std::string link = file("cons");
    ::unlink(link.c_str());
    if (::symlink(pty_path.c_str(), link.c_str()) < 0) throw_errno("symlink " + link);
    adopt("cons");
}

}  // namespace vmm::run
