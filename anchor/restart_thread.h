// The anchor's restart thread: the one thread that may execve.
//
// on_reboot=restart (or system_reset with a restart) re-executes the anchor with the same
// arguments. The pid stays the same (pillar and vmmd watch it), the state directory's lock is
// released by exec (O_CLOEXEC) and taken again by the new image, and KVM state, devices and
// guest RAM are created afresh.
//
// A seccomp filter survives execve, so the new image runs under the filters of the thread that
// called it. That thread must keep the process filter alone (which lists the setup syscalls),
// while the main thread, which serves QMP and so faces outside input, stacks the strict list on
// itself (jail::install_main_thread_seccomp). This thread is made before the process filter
// is installed (TSYNC gives it that filter) and does nothing but wait until restart() asks it
// to execve. execve from a thread other than the leader is fine: the kernel ends every other
// thread and the caller takes over the leader's pid.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vmm::anchor {

class RestartThread {
public:
    // `executable`: the image's host path, for when /proc/self/exe is not there (inside the
    // jail); may be empty otherwise. `argv`: the arguments to execute it with, argv[0] first.
    RestartThread(std::string executable, std::vector<std::string> argv);
    ~RestartThread();  // not restarting: the thread ends
    RestartThread(const RestartThread&) = delete;
    RestartThread& operator=(const RestartThread&) = delete;

    // Asks the thread to execve and waits: it does not return. When execve fails, the thread
    // reports it on stderr and ends the process with kExitHostSetup.
    [[noreturn]] void restart();

private:
    void run();

    std::string executable_;
    std::vector<std::string> args_;
    std::mutex mutex_;
    std::condition_variable wake_;
    enum class Request { None, Restart, Quit } request_ = Request::None;
    std::thread thread_;
};

}  // namespace vmm::anchor
