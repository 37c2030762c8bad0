//go:build linux && cgo

package seccomp

// Debian's static libseccomp is built against glibc with _FORTIFY_SOURCE,
// so it calls __fprintf_chk, which musl lacks. The runtime links musl (a
// static musl binary reaches main() sooner than a glibc one, on every
// container start); this is the one glibc entry point it needs.

/*
#if !defined(__GLIBC__)
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	(void)flag;
	va_list ap;
	va_start(ap, fmt);
	int n = vfprintf(f, fmt, ap);
	va_end(ap);
	return n;
}
#endif
*/
import "C"
