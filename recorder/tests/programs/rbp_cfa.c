// An assembly function whose frame's CFA is rbp + 32, with rbp saved at
// CFA - 16 (the rule of libffi's _ffi_call_unix64): framehop cannot cache
// that as a rule and evaluates the DWARF at every unwind. It is called from
// three sites of main with the same stack pointer, so the recorder's memo
// sees one key with three stacks (the pruning check walks run at the second
// one's miss, the third one's miss unwinds after them). The two words the
// frame pointer points at are zero: a frame-pointer rule applied to this
// frame would find no caller.
#include <stdlib.h>

void *alloc_via_rbp32(size_t n);
__asm__(".text\n"
        ".globl alloc_via_rbp32\n"
        ".type alloc_via_rbp32, @function\n"
        "alloc_via_rbp32:\n"
        ".cfi_startproc\n"
        "    push %rbp\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbp, -16\n"
        "    sub $16, %rsp\n"
        ".cfi_def_cfa_offset 32\n"
        "    movq $0, (%rsp)\n"
        "    movq $0, 8(%rsp)\n"
        "    mov %rsp, %rbp\n"
        ".cfi_def_cfa %rbp, 32\n"
        "    call malloc@PLT\n"
        "    lea 16(%rbp), %rsp\n"
        ".cfi_def_cfa %rsp, 16\n"
        "    pop %rbp\n"
        ".cfi_restore %rbp\n"
        ".cfi_def_cfa_offset 8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size alloc_via_rbp32, .-alloc_via_rbp32\n");

int main(void) {
    for (int i = 0; i < 3000; i++) {
        void *p = i % 3 == 0   ? alloc_via_rbp32(24)
                  : i % 3 == 1 ? alloc_via_rbp32(40)
                               : alloc_via_rbp32(56);
        free(p);
    }
    return 0;
}
