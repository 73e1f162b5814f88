// Passing file descriptors over unix sockets (SCM_RIGHTS, unix(7)): QMP's getfd (qmp/), in both
// directions. Header-only.
#pragma once

#include "common/fd.h"

#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace vmm {

// Attaches `fds` to `msg` as one SCM_RIGHTS control message whose bytes live in `control`
// (which must outlive the sendmsg). Nothing for an empty list.
inline void attach_fds(msghdr& msg, std::vector<char>& control, const std::vector<int>& fds) {
    if (fds.empty()) return;
    control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
}

// The descriptors a received message carried (SCM_RIGHTS), each owned at once so none leaks.
inline std::vector<Fd> take_fds(const msghdr& msg) {
    std::vector<Fd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    return fds;
}

}  // namespace vmm
