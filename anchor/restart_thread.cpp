#include "anchor/restart_thread.h"

#include "anchor/stop_reason.h"
#include "common/thread_name.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vmm::anchor {

RestartThread::RestartThread(std::string executable, std::vector<std::string> argv)
    : executable_(std::move(executable)), args_(std::move(argv)) {
    thread_ = std::thread([this] { run(); });
}

RestartThread::~RestartThread() {
    {
        std::lock_guard lock(mutex_);
        request_ = Request::Quit;
    }
    wake_.notify_one();
    thread_.join();
}

void RestartThread::restart() {
    {
        std::lock_guard lock(mutex_);
        request_ = Request::Restart;
    }
    wake_.notify_one();
    // execve ends this thread; a failed one ends the process.
    thread_.join();
    std::_Exit(kExitHostSetup);
}

void RestartThread::run() {
    set_thread_name("restart");
    // argv for execv, built before any request: nothing is allocated once one came.
    std::vector<char*> argv;
    for (auto& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return request_ != Request::None; });
        if (request_ == Request::Quit) return;
    }
    // Inside the jail (no /proc there) the image is executed by its host path, which the jail holds.
    const char* path = ::access("/proc/self/exe", X_OK) == 0 ? "/proc/self/exe" : executable_.c_str();
    ::execv(path, argv.data());
    std::fprintf(stderr, "vmm-anchor: restart: execv %s: %s\n", path, std::strerror(errno));
    std::_Exit(kExitHostSetup);
}

}  // namespace vmm::anchor
