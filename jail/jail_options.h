// The jail options' rules, shared by vmmd's CLI11 parser (jail/jail_cli.h) and vmm-anchor's own
// (anchor/anchor_cli.h). Header-only, no CLI11.
#pragma once

#include <string>

namespace vmm::jail {

// Whether --jail, --jail-uid, --jail-gid, --jail-pid-ns (and, `ranged`: vmmd's --jail-uids) go
// together: "" when they do, else what is wrong.
inline std::string jail_option_problem(bool jail, bool uid, bool gid, bool uids, bool ranged, bool pid_ns = false) {
    if (pid_ns && !jail) return "--jail-pid-ns needs --jail";
    if ((uid || gid || uids) && !jail)
        return ranged ? "--jail-uid, --jail-gid and --jail-uids need --jail" : "--jail-uid and --jail-gid need --jail";
    if (uid && uids) return "--jail-uid and --jail-uids exclude each other";
    if (gid && !uid && !uids) return ranged ? "--jail-gid needs --jail-uid or --jail-uids" : "--jail-gid needs --jail-uid";
    return "";
}

}  // namespace vmm::jail
