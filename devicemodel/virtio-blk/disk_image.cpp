// DiskImage: see disk_image.h.
#include "devicemodel/virtio-blk/disk_image.h"

#include "common/error.h"
#include "common/log.h"
#include "devicemodel/virtio-blk/gpt.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vmm::virtio_blk {

DiskImage DiskImage::open(const DiskSpec& spec) {
    DiskImage d;
    d.path_ = spec.path;
    d.read_only_ = spec.read_only;
    d.fd_ = open_fd(spec.path.c_str(), spec.read_only ? O_RDONLY : O_RDWR);
    struct stat st {};
    if (::fstat(d.fd_.get(), &st) != 0) throw_errno("fstat " + spec.path);
    std::uint64_t bytes = 0;
    if (S_ISBLK(st.st_mode)) {
        d.block_device_ = true;
        // BLKGETSIZE64 writes a u64, BLKSSZGET an int: both sized right below.
        if (::ioctl(d.fd_.get(), BLKGETSIZE64, &bytes) != 0) throw_errno("BLKGETSIZE64 " + spec.path);
        int lbs = 512;
        if (::ioctl(d.fd_.get(), BLKSSZGET, &lbs) != 0) throw_errno("BLKSSZGET " + spec.path);
        d.lbs_ = static_cast<std::uint32_t>(lbs);
    } else if (S_ISREG(st.st_mode)) {
        bytes = static_cast<std::uint64_t>(st.st_size);
    } else {
        throw Error(spec.path + ": not a regular file or block device");
    }
    d.size_ = bytes;
    if (spec.partuuid) {
        const int fd = d.fd_.get();
        DiskReader reader = [fd](std::uint64_t off, std::span<std::uint8_t> dst) {
            std::size_t done = 0;
            while (done < dst.size()) {
                const ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(off + done));
                if (n <= 0) return false;
                done += static_cast<std::size_t>(n);
            }
            return true;
        };
        // A file has no block size of its own: take the one whose LBA 1 holds a GPT.
        GptTable table;
        std::string first_error;
        bool found = false;
        for (std::uint32_t lbs : {d.lbs_, 4096u}) {
            try {
                table = read_gpt(reader, bytes, lbs, spec.path);
                found = true;
                break;
            } catch (const Error& e) {
                if (first_error.empty()) first_error = e.what();
                if (d.block_device_) break;
            }
        }
        if (!found) throw Error(first_error);
        auto part = find_partition(table, *spec.partuuid);
        if (!part) throw Error(spec.path + ": no GPT partition with partuuid " + *spec.partuuid);
        const std::uint64_t first = part->first_lba * table.lba_size;
        const std::uint64_t end = (part->last_lba + 1) * table.lba_size;
        if (end > bytes) throw Error(spec.path + ": partition " + *spec.partuuid + " extends past the end of the disk");
        d.offset_ = first;
        d.size_ = end - first;
        logger("blk")->info("{}: partition {} ({}) is LBAs {}-{} of {} bytes{}", spec.path, part->index + 1,
                            part->unique_guid, part->first_lba, part->last_lba, table.lba_size,
                            table.from_backup ? ", from the backup GPT" : "");
    }
    d.size_ -= d.size_ % 512;  // the guest sees whole 512-byte sectors only
    return d;
}

}  // namespace vmm::virtio_blk
