// vmctl: the command line of vmmd (vmctl/commands.h says what it does).
#include "vmctl/commands.h"

#include <iostream>

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    return vmm::vmctl::run_vmctl(args, std::cout, std::cerr);
}
