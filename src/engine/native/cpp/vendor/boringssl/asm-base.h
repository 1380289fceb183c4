// Stands in for BoringSSL's <openssl/asm_base.h> for the two .S files here: the target macro they
// test, a non-executable stack, and CET landing pads when the compiler asks for them.
#ifndef OXY_VENDOR_BORINGSSL_ASM_BASE_H
#define OXY_VENDOR_BORINGSSL_ASM_BASE_H
#if defined(__x86_64__)
#define OPENSSL_X86_64 1
#endif
#if defined(__ELF__)
.pushsection .note.GNU-stack, "", %progbits
.popsection
#endif
#if defined(__CET__) && defined(OPENSSL_X86_64)
#include <cet.h>
#else
#define _CET_ENDBR
#endif
#endif
