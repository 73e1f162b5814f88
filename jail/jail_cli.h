// The --jail, --jail-uid and --jail-gid options vmm-anchor and vmmd share (jail/mount_jail.h,
// docs/SECURITY.md "The mount jail"), and vmmd's --jail-uids range. Header-only: CLI11 is
// header-only too, and jail/ itself does not parse command lines.
#pragma once

#include "jail/jail_options.h"
#include "jail/uid_range.h"

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace vmm::jail {

struct JailCliOptions {
    bool jail = false;
    bool pid_ns = false;  // --jail-pid-ns
    std::optional<unsigned> uid() const { return uid_opt_ && uid_opt_->count() ? std::optional(uid_) : std::nullopt; }
    std::optional<unsigned> gid() const { return gid_opt_ && gid_opt_->count() ? std::optional(gid_) : std::nullopt; }
    // --jail-uids FIRST-LAST (vmmd only): each anchor gets a uid of its own from the range.
    std::optional<UidRange> uids() const { return uids_opt_ && uids_opt_->count() ? range_ : std::nullopt; }

    // `what`: what --jail jails ("run in" for the anchor, "run each kvm anchor in" for vmmd).
    // `with_uid_range`: also offer --jail-uids (vmmd, which hands the uids out).
    void add_to(CLI::App& app, const std::string& what, bool with_uid_range = false) {
        app.add_flag("--jail", jail,
                     what + " a file-system jail holding only its domain's files (new mount/IPC/UTS namespaces, and "
                            "network without taps; docs/SECURITY.md)");
        // Plain values and the options' counts: CLI11 2.1 fills no std::optional.
        uid_opt_ = app.add_option("--jail-uid", uid_, "with --jail: the uid to run as (the domain's files must be open to it)");
        gid_opt_ = app.add_option("--jail-gid", gid_,
                                  with_uid_range ? "with --jail: the gid to run as (default: the uid)"
                                                 : "with --jail: the gid to run as (default: --jail-uid)");
        app.add_flag("--jail-pid-ns", pid_ns,
                     "with --jail: also a pid namespace of its own per anchor, under a small keeper process that "
                     "stays the pid the host knows (docs/SECURITY.md)");
        if (!with_uid_range) return;
        uids_opt_ = app.add_option("--jail-uids", uids_text_,
                                   "with --jail: FIRST-LAST, a range of uids vmmd gives out, one per running kvm domain "
                                   "(lowest free first; not with --jail-uid; give --jail-gid a group that can open the "
                                   "domains' files)");
        uids_opt_->check([this](const std::string& text) {
            try {
                range_ = parse_uid_range(text);
                return std::string();
            } catch (const std::exception& e) {
                return std::string(e.what());
            }
        });
    }
    // "" when the options go together, else what is wrong.
    std::string problem() const {
        return jail_option_problem(jail, uid().has_value(), gid().has_value(), uids().has_value(),
                                   uids_opt_ != nullptr /* vmmd's options */, pid_ns);
    }

private:
    unsigned uid_ = 0, gid_ = 0;
    std::string uids_text_;
    std::optional<UidRange> range_;
    CLI::Option* uid_opt_ = nullptr;
    CLI::Option* gid_opt_ = nullptr;
    CLI::Option* uids_opt_ = nullptr;
};

}  // namespace vmm::jail
