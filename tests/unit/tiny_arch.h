/* tiny_arch.h — a small architecture that uses every op of the .arch format,
 * for the executor's tests (two branches, a residual add, SE, split
 * attention, concat, padding, pools, dropout, a vector head with l2norm). */
#ifndef MFR_TINY_ARCH_H
#define MFR_TINY_ARCH_H

#include <stdio.h>
#include <string.h>

#include "arch.h"
static const char *TINY =
"mfr-arch 1\n"
	"input x 3 9 8\n"
	"conv c1 x out=4 k=3 p=1\n"
	"bn b1 c1\n"
	"prelu p1 b1\n"
	"conv c2 p1 out=6 k=1x3 s=2 p=0x1 g=2 bias=1\n"
	"bn b2 c2 eps=2e-5 momentum=0.2\n"
	"conv sc p1 out=6 k=1 s=2\n"
	"add r1 b2 sc\n"
	"se s1 r1 r=2\n"
	"conv c3 s1 out=8 k=3 p=1 g=2\n"
	"splat sp c3 radix=2 inter=3\n"
	"relu a1 sp\n"
	"pad pd a1 t=1 b=0 l=0 r=1\n"
	"avgpool ap pd k=2 s=1\n"
	"maxpool mp pd k=2 s=1\n"
	"concat cc ap mp\n"
	"chpad ch cc out=10\n"
	"sigmoid sg ch\n"
	"dropout dr sg p=0.25\n"
	"gap g dr\n"
	"flatten f g\n"
	"linear fc f out=5\n"
	"bn1d e fc\n"
	"l2norm n e\n"
	"output n\n"
	"output e\n";

/* Parses text (an .arch), printing the error when it fails. */
static inline mfr_arch *parse(const char *text)
{
	mfr_error e;
	mfr_arch *a = mfr_arch_parse(text, strlen(text), "tiny.arch", &e);
	if (!a)
		fprintf(stderr, "parse: %s\n", e.msg);
	return a;
}

#endif
