#include "tests/support/proc_status.h"

#include <chrono>
#include <fstream>
#include <sstream>
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

std::vector<SmapsMapping> proc_smaps(const std::string& pid) {
    std::ifstream f("/proc/" + pid + "/smaps");
    std::vector<SmapsMapping> maps;
    std::string line;
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string first;
        ls >> first;
        if (const auto dash = first.find('-'); dash != std::string::npos && first.back() != ':') {
            SmapsMapping& m = maps.emplace_back();
            m.start = std::stoull(first.substr(0, dash), nullptr, 16);
            m.end = std::stoull(first.substr(dash + 1), nullptr, 16);
            ls >> m.perms;
        } else if (!maps.empty() && first == "AnonHugePages:") {
            ls >> maps.back().anon_huge_kib;
        } else if (!maps.empty() && first == "VmFlags:") {
            maps.back().vm_flags = line.substr(line.find(':') + 1) + " ";
        }
    }
    return maps;
}

std::string thp_setting() {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string s;
    std::getline(f, s);
    return s;
}

}  // namespace vmm::test
