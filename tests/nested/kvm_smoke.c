/* Minimal /dev/kvm smoke test: runs "mov al,'K'; mov dx,0x3f8; out dx,al; hlt"
 * in real mode and reports the exits. Exit status 0 on success. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define DIE(msg) do { fprintf(stderr, "kvm_smoke: %s: %s\n", msg, strerror(errno)); return 1; } while (0)

int main(void) {
    static const uint8_t code[] = {
        0xb0, 'K',          /* mov al, 'K'    */
        0xba, 0xf8, 0x03,   /* mov dx, 0x3f8  */
        0xee,               /* out dx, al     */
        0xf4,               /* hlt            */
    };
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) DIE("open /dev/kvm");
    int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    printf("KVM_GET_API_VERSION = %d\n", api);
    if (api != KVM_API_VERSION) { fprintf(stderr, "kvm_smoke: unexpected API version\n"); return 1; }

    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) DIE("KVM_CREATE_VM");

    uint8_t *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) DIE("mmap");
    memcpy(mem, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (uint64_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) DIE("KVM_SET_USER_MEMORY_REGION");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) DIE("KVM_CREATE_VCPU");
    int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) DIE("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) DIE("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) DIE("KVM_GET_SREGS");
    sregs.cs.base = 0; sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) DIE("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = 0x1000, .rflags = 0x2 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) DIE("KVM_SET_REGS");

    int got_io = 0;
    for (int i = 0; i < 16; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) DIE("KVM_RUN");
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            printf("KVM_EXIT_IO: dir=%s port=0x%x size=%u count=%u data=0x%02x ('%c')\n",
                   run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
                   run->io.size, run->io.count, data[0], data[0]);
            got_io = (run->io.port == 0x3f8 && data[0] == 'K');
            break;
        }
        case KVM_EXIT_HLT:
            printf("final exit reason: KVM_EXIT_HLT (%u)\n", run->exit_reason);
            if (!got_io) { fprintf(stderr, "kvm_smoke: missing expected IO exit\n"); return 1; }
            printf("kvm_smoke: OK\n");
            return 0;
        default:
            printf("final exit reason: %u (unexpected)\n", run->exit_reason);
            return 1;
        }
    }
    fprintf(stderr, "kvm_smoke: too many exits\n");
    return 1;
}
