#include "tests/support/proc_status.h"

#include <chrono>
#include <fstream>
#include <thread>

namespace vmm::test {

using namespace std::chrono_literals;

int wait_pid_file(const std::string& state_dir) {
    for (int i = 0; i < 200; ++i) {
        std::ifstream f(state_dir + "/pid");
        int p = 0;
        if (f >> p && p > 0) return p;
        std::this_thread::sleep_for(50ms);
    }
    return -1;
}

std::string proc_status_line(int pid, const std::string& key) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key + ":", 0) == 0) return line;
    return "";
}

std::string wait_proc_status(int pid, const std::string& key, const std::string& want) {
    std::string line;
    for (int i = 0; i < 100; ++i) {
        line = proc_status_line(pid, key);
        if (line == key + ":\t" + want) break;
        std::this_thread::sleep_for(50ms);
    }
    return line;
}

}  // namespace vmm::test
