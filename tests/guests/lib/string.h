// The few <string.h> functions gcc may call even in freestanding code (struct copies, zeroing).
#pragma once

#include <stddef.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
