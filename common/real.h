/* real.h — the element type of the reference layers (common/layers_*.c).
 *
 * libmfr compiles the reference layers for float: mfr_<layer>_ref. The
 * gradient-check tests compile the same sources again with MFR_REAL_DOUBLE
 * (the Makefile's build/.../common64/ objects): mfr_<layer>_ref64 in double,
 * so finite differences are taken in float64 and the tolerances can be tight.
 * A file that includes a layer header after defining MFR_REAL_DOUBLE sees the
 * double prototypes. */
#ifndef MFR_REAL_H
#define MFR_REAL_H

#ifdef MFR_REAL_DOUBLE
typedef double mfr_real;
#define MFR_REF(name) mfr_##name##_ref64
#else
typedef float mfr_real;
#define MFR_REF(name) mfr_##name##_ref
#endif

#endif
