// The --jail, --jail-uid and --jail-gid options vmm-anchor and vmmd share (jail/mount_jail.h,
// docs/SECURITY.md "The mount jail"). Header-only: CLI11 is header-only too, and jail/ itself
// does not parse command lines.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace vmm::jail {

struct JailCliOptions {
    bool jail = false;
    std::optional<unsigned> uid() const { return uid_opt_ && uid_opt_->count() ? std::optional(uid_) : std::nullopt; }
    std::optional<unsigned> gid() const { return gid_opt_ && gid_opt_->count() ? std::optional(gid_) : std::nullopt; }

    // `what`: what --jail jails ("run in" for the anchor, "run each kvm anchor in" for vmmd).
    void add_to(CLI::App& app, const std::string& what) {
        app.add_flag("--jail", jail,
                     what + " a file-system jail holding only its domain's files (new mount/IPC/UTS namespaces, and "
                            "network without taps; docs/SECURITY.md)");
        // Plain values and the options' counts: CLI11 2.1 fills no std::optional.
        uid_opt_ = app.add_option("--jail-uid", uid_, "with --jail: the uid to run as (the domain's files must be open to it)");
        gid_opt_ = app.add_option("--jail-gid", gid_, "with --jail: the gid to run as (default: --jail-uid)");
    }
    // "" when the options go together, else what is wrong.
    std::string problem() const {
        if ((uid() || gid()) && !jail) return "--jail-uid and --jail-gid need --jail";
        if (gid() && !uid()) return "--jail-gid needs --jail-uid";
        return "";
    }

private:
    unsigned uid_ = 0, gid_ = 0;
    CLI::Option* uid_opt_ = nullptr;
    CLI::Option* gid_opt_ = nullptr;
};

}  // namespace vmm::jail
