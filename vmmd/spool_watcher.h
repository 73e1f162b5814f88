// SpoolWatcher: the directory where a controller drops manifests. NAME.json appearing (closed
// after writing, or renamed in) starts domain NAME; changing restarts it (stop, then start the
// new manifest); disappearing stops it. The manifest's "name" must be NAME. Files starting with
// '.' or not ending in ".json" are ignored, so a controller can write ".x.json.tmp" and rename.
// Uses inotify through the io_context; runs on its thread.
#pragma once

#include "common/fd.h"
#include "vmmd/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <map>
#include <string>

namespace vmm::vmmd {

class SpoolWatcher {
public:
    SpoolWatcher(boost::asio::io_context& io, Daemon& daemon, std::string dir);

    // Reads the directory once: starts what is not running, restarts adopted domains whose
    // file changed while vmmd was away. Call after Daemon::adopt_all().
    void scan();

    // The last problem with a file (manifest error, start failure), by domain name; "" if none.
    std::string last_error(const std::string& name) const;

    // Handles NAME.json being written / removed (what the inotify events call).
    void file_changed(const std::string& name);
    void file_removed(const std::string& name);

private:
    void read_events();
    void start(const std::string& name, const DomainManifest& manifest);
    std::string path(const std::string& name) const { return dir_ + "/" + name + ".json"; }

    Daemon& daemon_;
    std::string dir_;
    boost::asio::posix::stream_descriptor inotify_;
    char buf_[16 * 1024];
    std::map<std::string, std::string> known_;  // name -> manifest text it was started from
    std::map<std::string, std::string> errors_;
};

// "NAME" for "NAME.json" when it is a spool manifest name (not hidden, not a temp file), else "".
std::string spool_domain_name(const std::string& file_name);

}  // namespace vmm::vmmd
